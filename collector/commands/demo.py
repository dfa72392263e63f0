"""`collector demo`: the whole product on built-in defaults, with no account and no headset.

Starts the sandbox server, plays the bundled real Muse recording as a live LSL stream, runs a
capture against the sandbox, then shows what arrived and the sandbox's report.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import TextIO

from collector.api.client import OpenLessonClient
from collector.api.models import PerformanceRequest, WorkspaceCreate
from collector.api.settings import ApiKey, ApiSettings, resolve_base_url
from collector.api.targets import pick_target
from collector.commands import summary
from collector.commands._capture import capture_live, find_block, make_output
from collector.commands._common import positive_seconds
from collector.commands._kept import open_capture, write_review_page
from collector.commands._outcome import ended_quietly_on_closed_stdout, run_reporting_errors
from collector.commands._replies import format_report
from collector.commands._sources import CAPTURE_FLAGS
from collector.devices.player import play_to_lsl
from collector.errors import CollectorError
from collector.profiles.profile import load_profile
from collector.sandbox import SandboxServer

BANDS = ("delta", "theta", "alpha", "beta", "gamma")
DEMO_DURATION_S = 30.0  # capture length; the whole demo takes about 40 s (start-up, delivery, report)
DEMO_FLUSH_TIMEOUT_S = 60.0  # delivery after the capture; at an idle sandbox it needs a second or two


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help=summary("demo"),  # says ~40 s: DEMO_DURATION_S plus start-up, delivery and report
        description="Start the local sandbox, play the bundled real Muse recording as a live LSL "
        f"stream, capture it for {DEMO_DURATION_S:g} s (and screenshots if a display exists), deliver it "
        f"(up to {DEMO_FLUSH_TIMEOUT_S:g} s), then show what this run's workspace received and its report.",
    )
    p.add_argument(
        "--duration",
        type=positive_seconds,
        default=DEMO_DURATION_S,
        metavar="S",
        help=f"capture length (default {DEMO_DURATION_S:g})",
    )
    p.add_argument(
        "--data",
        metavar="DIR",
        help="where the sandbox and the demo spool keep their files "
        "(default: a folder in the user data directory)",
    )
    p.add_argument("--screen", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.set_defaults(func=run)


def _bundled_recording() -> Path:
    return Path(str(resources.files("collector.data") / "muse-p300-subject1.xdf"))


def _data_dir(args: argparse.Namespace) -> Path:
    if args.data:
        return Path(args.data).expanduser()
    from platformdirs import user_data_path

    return user_data_path("openlesson-collector", appauthor=False) / "demo"


def _print_received(sandbox: SandboxServer, workspace_id: str, out: TextIO) -> None:
    rows = sandbox.evidence(workspace_id)
    counts = Counter(r["type"] for r in rows)
    print("\nWhat the sandbox received:", file=out)
    for kind, n in sorted(counts.items()):
        print(f"  {kind:<7} {n} evidence rows", file=out)
    sums = dict.fromkeys(BANDS, 0.0)
    n_eeg = n_powered = samples = markers = 0
    for row in rows:
        if row["type"] != "eeg" or (row.get("metadata") or {}).get("kind") == "session-summary":
            continue
        chunk = json.loads(sandbox.read_artifact(row["id"]))
        samples += len(chunk["samples"])
        markers += len(chunk["events"])
        n_eeg += 1
        if chunk["band_powers"]:  # the chunk's own mean over channels and windows ({} if none)
            n_powered += 1
            for band in BANDS:
                sums[band] += chunk["band_powers"].get(band) or 0.0
    if n_eeg:
        print(
            f"  EEG samples delivered: {samples} in {n_eeg} chunks, with {markers} stimulus markers", file=out
        )
    if n_powered:
        means = ", ".join(f"{b} {sums[b] / n_powered:.1%}" for b in BANDS)
        print(f"  mean relative band powers: {means}", file=out)
    print(f"  files: {sandbox.data_dir}", file=out)


def _print_report(sandbox: SandboxServer, workspace_id: str, block_id: str, out: TextIO) -> None:
    settings = ApiSettings(base_url=sandbox.base_url, api_key=ApiKey(sandbox.api_key))
    with OpenLessonClient(settings) as client:
        response = client.performance(workspace_id, PerformanceRequest(block_id=block_id))
    print("\nThe sandbox's report:", file=out)
    print(format_report(response), file=out)


def _own_workspace(sandbox: SandboxServer) -> tuple[str, str]:
    """A new workspace for this run, so what is shown is this run's evidence only, whatever the
    sandbox's data folder kept from earlier runs. Returns (workspace id, first block id)."""
    settings = ApiSettings(base_url=sandbox.base_url, api_key=ApiKey(sandbox.api_key))
    prompt = f"Collector demo, {time.strftime('%Y-%m-%d %H:%M:%S')}"
    with OpenLessonClient(settings) as client:
        created = client.create_workspace(WorkspaceCreate(initial_prompt=prompt))
    return created.workspace.id, created.blocks[0].id


def _print_next_steps(sandbox: SandboxServer, data: Path, out: TextIO) -> None:
    print(
        "\nNext steps:\n"
        "  Capture for real: get an API key (sk_…) from your OpenLesson organization (the agent API "
        "needs an active Teams subscription), then\n"
        "    export OPENLESSON_API_KEY=sk_…\n"
        "    collector blocks -w WORKSPACE_ID          # see your blocks\n"
        '    collector fit && collector run -w WORKSPACE_ID -b "Block title"\n'
        "  (--base-url or OPENLESSON_BASE_URL for a self-hosted API; the default is "
        "https://openlesson.academy.)\n"
        "  Keep the sandbox running to try commands against it (this demo stopped its own):\n"
        f"    collector sandbox --data {data / 'sandbox'}\n"
        "  and use the export lines it prints.",
        file=out,
    )


def run(args: argparse.Namespace) -> int:
    out = sys.stdout
    data = _data_dir(args)
    data.mkdir(parents=True, exist_ok=True)
    stream_name = f"collector-demo-{uuid.uuid4().hex[:8]}"
    stop_player = threading.Event()
    with SandboxServer(data / "sandbox") as sandbox:
        workspace_id, block_id = _own_workspace(sandbox)
        print(f"Sandbox running at {sandbox.base_url} (this run's workspace {workspace_id}).", file=out)
        player = threading.Thread(
            target=play_to_lsl,
            args=(str(_bundled_recording()),),
            kwargs={
                "stream_name": stream_name,
                "source_id": stream_name,
                "speed": 1.0,
                "loop": True,
                "stop_event": stop_player,
            },
            name="demo-player",
            daemon=True,
        )
        player.start()
        print(
            f"Playing the bundled Muse recording as LSL stream {stream_name!r}; capturing for "
            f"{args.duration:g} s…",
            file=out,
        )
        try:
            # As `collector run` would end: a failure is one line on stderr and an exit code, and the
            # demo goes on to show what arrived.
            code = ended_quietly_on_closed_stdout(
                lambda: run_reporting_errors(
                    lambda: _capture(args, sandbox, workspace_id, block_id, stream_name, data / "spool"),
                    args.log_format,
                )
            )
        finally:
            stop_player.set()
            player.join(5)
        _print_received(sandbox, workspace_id, out)
        _print_report(sandbox, workspace_id, block_id, out)
        _print_next_steps(sandbox, data, out)
    _write_review(data, out)
    return code


def _capture(
    args: argparse.Namespace,
    sandbox: SandboxServer,
    workspace_id: str,
    block_id: str,
    stream_name: str,
    spool_root: Path,
) -> int:
    """The capture of `collector run` on the stream the player publishes, delivered to the sandbox
    with its key, kept in the demo's own spool, and recorded as a demo in the local record."""
    profile = load_profile(None).with_overrides(
        flags=CAPTURE_FLAGS,
        delivery={"flush_timeout_s": DEMO_FLUSH_TIMEOUT_S},
        stream={"name": stream_name},
        screen={"mode": args.screen},
    )
    output = make_output(args.log_format)
    workspace_id, block = pick_target(workspace_id, block_id, profile)
    settings = ApiSettings(base_url=resolve_base_url(sandbox.base_url), api_key=ApiKey(sandbox.api_key))
    found = find_block(settings, workspace_id, block)
    return capture_live(
        profile,
        output,
        spool_root=spool_root,
        offline=False,
        settings=settings,
        workspace_id=workspace_id,
        block_id=found.id if found else None,
        block_title=found.title if found else None,
        duration_s=args.duration,
        log_format=args.log_format,
        kind="demo",
    )


def _write_review(data: Path, out: TextIO) -> None:
    """Last: the capture's review page, so the demo ends with something to open."""
    print("\nThe review page of this capture (one offline HTML file; open it in a browser):", file=out)
    try:
        spool, session = open_capture(data / "spool", None, True)
        print(write_review_page(spool, session, str(data / "review.html")))
    except CollectorError as err:  # the capture itself went fine; say why there is no page
        print(f"  (no review page: {err})", file=out)
