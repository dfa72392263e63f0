"""Collectors sharing one API key: refusals, each collector's share, and the total time.

    python scripts/bench_shared_key.py      # the review's case: 1 upload of 319 chunks + 2 replays
    python scripts/bench_shared_key.py --upload-chunks 120 --replay-minutes 10
    python scripts/bench_shared_key.py --four-replays   # issue 23's row: 4 replays, no Retry-After
    python scripts/bench_shared_key.py --four-replays --tree OLD_CHECKOUT

--four-replays (issue 23, row 3): four `collector replay --speed max --chunk-seconds 5` of
4-minute recordings (49 items each: 48 chunks and the session summary) start at once on one key,
against the sandbox at 120 requests per sliding 60 s, every request counted, refused ones too,
and 429 replies sent WITHOUT Retry-After: the sandbox has no option for that, so this script
wraps the sandbox's ASGI app in its own process with a middleware that drops the header (the
request log still notes the value it would have had). Prints the share of refused requests, the
counts, each replay's and the last 201 from the launch, and the ideal (the first 120 at once,
the rest when the window has room: 60 s for 196 items). `--retry-after send` keeps the header.

The real CLI in subprocesses against the sandbox enforcing 120 requests per minute per key
(sliding 60 s window, refused requests counted): first a `replay --offline --chunk-seconds 5`
fills a spool with a backlog, then `collector upload` of that spool and two `collector replay
--speed max --chunk-seconds 20` of 30-minute recordings start together (or `--replay-delay` s
later) on the same key. Prints
the share of refused requests, each collector's requests per minute while all three deliver,
when each one's last 201 came, and the ideal (every accepted request at 120/min from the launch;
and the best a lone collector can do after the others finish: its ceiling, 100/min).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import add_tree_args, collector_cmd, header, import_sandbox, load, number, tree_env  # noqa: E402
from make_xdf import synthetic_eeg, synthetic_markers, write_xdf  # noqa: E402


def _recording(path: Path, seconds: float, seed: int) -> Path:
    write_xdf(path, [synthetic_eeg(seconds, seed=seed), synthetic_markers(seconds)])
    return path


class _NoRetryAfter:
    """ASGI middleware around the sandbox's app: 429 (and every) reply without Retry-After."""

    def __init__(self, app) -> None:
        self.inner = app
        self.stripped = 0

    @property
    def requests(self):  # SandboxServer.requests() reads self.app.requests
        return self.inner.requests

    async def __call__(self, scope, receive, send) -> None:
        async def strip(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                kept = [(k, v) for k, v in headers if k.lower() != b"retry-after"]
                if len(kept) != len(headers):
                    self.stripped += 1
                    message = dict(message, headers=kept)
            await send(message)

        await self.inner(scope, receive, strip)


def four_replays(args: argparse.Namespace) -> None:
    """Issue 23, row 3: N replays of an M-minute recording at once on one key."""
    SandboxServer = import_sandbox(args.sandbox_tree)
    header(f"{args.replays} x collector replay of {args.replay_minutes:g} min, --chunk-seconds "
           f"{args.chunk_seconds:g}, at once on one key", args.tree)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-key-") as tmp_name:
        tmp = Path(tmp_name)
        sandbox = SandboxServer(tmp / "sb", rate_limit_per_min=120, rate_window_s=60.0)
        limiter = sandbox.limiter
        if getattr(limiter, "count_refused", None) is not True:
            sys.exit("the sandbox's limiter does not count refused requests: not the issue's server")
        wrapper = None
        if args.retry_after == "strip":
            wrapper = sandbox.app = _NoRetryAfter(sandbox.app)  # before start(): uvicorn serves self.app
        print(f"  sandbox: {limiter.limit} requests per sliding {limiter.window_s:g} s per key, refused "
              f"requests counted; "
              f"Retry-After {'stripped by this script' if wrapper else 'sent'}")  # fmt: skip
        with sandbox:
            env = tree_env(
                args.tree, OPENLESSON_API_KEY=sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url
            )
            recs = [
                _recording(tmp / f"r{i}.xdf", args.replay_minutes * 60, seed=10 + i)
                for i in range(args.replays)
            ]
            procs = []
            load_start = load()
            t0 = time.monotonic()
            for i, rec in enumerate(recs):
                cmd = collector_cmd(
                    "replay", str(rec), "--workspace", sandbox.workspace_id, "--block", sandbox.block_ids[0],
                    "--speed", "max", "--chunk-seconds", f"{args.chunk_seconds:g}",
                    "--spool", str(tmp / f"sp-{i}"), "--log-format", "json",
                )  # fmt: skip
                err = open(tmp / f"r{i}.err", "wb")
                procs.append((subprocess.Popen(cmd, env=env, cwd=tmp, stdin=subprocess.DEVNULL,
                                               stdout=subprocess.DEVNULL, stderr=err), err))  # fmt: skip
            exits = []
            stopped = []
            deadline = t0 + args.timeout
            for i, (proc, err) in enumerate(procs):
                try:
                    proc.wait(timeout=max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.terminate()
                    proc.wait()
                    print(f"  replay {i + 1} still running after {args.timeout:g} s: stopped")
                    stopped.append(i + 1)
                err.close()
                exits.append((proc.returncode, time.monotonic() - t0))
            load_end = load()
            requests = sandbox.requests()
            rows = sandbox.evidence(sandbox.workspace_id)
        failed = [
            (i + 1, code, (tmp / f"r{i}.err").read_text()[-1500:])
            for i, (code, _) in enumerate(exits)
            if code
        ]
    posts = [r for r in requests if r["method"] == "POST" and r["path"].endswith("/evidence")]
    refused = [r for r in requests if r["status"] == 429]
    ok = [r for r in posts if r["status"] == 201]
    other = [r for r in requests if r["status"] not in (201, 429)]
    n = len(requests)
    last = max((r["replied"] for r in ok), default=t0) - t0
    ideal = limiter.window_s * ((len(ok) - 1) // limiter.limit) if ok else 0.0
    stored = [r["metadata"]["capture_id"] for r in rows]
    caps = list(dict.fromkeys(stored))
    per_cap = [sum(c == x for x in stored) for c in caps]
    # the k-th 201 in arrival order is (nearly always) the k-th row stored
    ends = sorted(ok[max(i for i, x in enumerate(stored) if x == c)]["replied"] - t0 for c in caps)
    print(f"  command (x{args.replays}): {' '.join(cmd[1:])}")
    print(f"  requests {n}: {len(ok)} evidence items stored (201), {len(refused)} refused with 429 "
          f"= {100 * len(refused) / max(1, n):.1f} % refused; {len(other)} other replies; "
          f"{len(posts)} evidence POSTs")  # fmt: skip
    kinds: dict[str, int] = {}
    for r in other:
        k = f"{r['method']} {r['path'].rsplit('/', 1)[-1]} {r['status']}"
        kinds[k] = kinds.get(k, 0) + 1
    if any(k.startswith("POST evidence 400") for k in kinds):  # not a failure: see the note
        print("  (POST evidence 400: each collector's write-access check, an empty body refused on purpose)")
    print(f"  other replies: {kinds or 'none'}; items per replay {per_cap}"
          + (f"; {wrapper.stripped} Retry-After headers stripped" if wrapper else ""))  # fmt: skip
    print(f"  last 201 {last:.1f} s after the launch (each replay's last 201: "
          f"{', '.join(f'{e:.0f}' for e in ends)} s); ideal {ideal:.0f} s")  # fmt: skip
    print(
        f"  replays exited after {', '.join(f'{t:.0f}' for _, t in exits)} s, codes {[c for c, _ in exits]}"
    )
    print(f"  load: {load_start} at launch, {load_end} at the end")
    if failed:
        for i, code, tail in failed:
            print(f"replay {i} exited {code}:\n{tail}", file=sys.stderr)
        sys.exit(1)
    if stopped:  # a stopped replay flushes and exits 0: the figures above miss its rest
        sys.exit(f"replays {stopped} were stopped at --timeout {args.timeout:g} s: the figures above are "
                 f"incomplete; give a longer --timeout")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_tree_args(ap, sandbox=True)
    ap.add_argument("--four-replays", action="store_true", help="issue 23's row instead (see above)")
    count, positive = number(int, at_least=1), number(float, above=0)
    ap.add_argument("--replays", type=count, default=4, help="--four-replays: how many (default 4)")
    ap.add_argument("--chunk-seconds", type=positive, default=5.0, help="--four-replays: default 5")
    ap.add_argument("--retry-after", choices=("strip", "send"), default="strip", help="--four-replays")
    ap.add_argument("--timeout", type=positive, default=600.0, help="--four-replays: stop replays after S s")
    ap.add_argument("--upload-chunks", type=count, default=319, help="5 s chunks for `collector upload`")
    ap.add_argument("--replay-minutes", type=positive, default=None,
                    help="length of each replayed recording (default 30; --four-replays: 4)")  # fmt: skip
    ap.add_argument(
        "--replay-delay", type=number(float, at_least=0), default=0.0,
        help="start the replays S seconds later",
    )  # fmt: skip
    args = ap.parse_args()
    if args.four_replays:
        args.replay_minutes = 4.0 if args.replay_minutes is None else args.replay_minutes
        return four_replays(args)
    args.replay_minutes = 30.0 if args.replay_minutes is None else args.replay_minutes
    SandboxServer = import_sandbox(args.sandbox_tree)
    header("1 upload + 2 replays on one key", args.tree)
    with tempfile.TemporaryDirectory() as tmp_name, SandboxServer(Path(tmp_name) / "sb") as sandbox:
        tmp = Path(tmp_name)
        env = tree_env(args.tree, OPENLESSON_API_KEY=sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url)
        target = ["--workspace", sandbox.workspace_id, "--block", sandbox.block_ids[0], "--speed", "max"]
        backlog = _recording(tmp / "backlog.xdf", args.upload_chunks * 5.0, seed=1)
        filled = subprocess.run(
            [*collector_cmd("replay", str(backlog)), *target, "--offline",
             "--chunk-seconds", "5", "--spool", str(tmp / "sp-upload")],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )  # fmt: skip
        if filled.returncode != 0:
            sys.exit(f"filling the upload's spool failed: {filled.stderr[-2000:]}")
        recs = [_recording(tmp / f"r{i}.xdf", args.replay_minutes * 60, seed=2 + i) for i in range(2)]
        commands = {"upload": ["upload", "--spool", str(tmp / "sp-upload")]}
        for i, rec in enumerate(recs):
            commands[f"replay{i + 1}"] = ["replay", str(rec), *target, "--chunk-seconds", "20",
                                         "--spool", str(tmp / f"sp-{i}"), "--log-format", "json"]  # fmt: skip
        t0 = time.monotonic()
        procs = {}
        for name, cmd in commands.items():
            if name == "replay1" and args.replay_delay:
                time.sleep(args.replay_delay)  # the upload has the key to itself meanwhile
            if name == "replay1":
                t_replays = time.monotonic()
            procs[name] = subprocess.Popen(
                collector_cmd(*cmd), env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
        for name, proc in procs.items():
            _, err = proc.communicate()
            if proc.returncode != 0:
                sys.exit(f"{name} exited {proc.returncode}: {err[-2000:]}")
        requests = sandbox.requests()
        rows = sandbox.evidence(sandbox.workspace_id)
    posts = [r for r in requests if r["method"] == "POST" and r["path"].endswith("/evidence")]
    refused = [r for r in requests if r["status"] == 429]
    accepted = [r for r in requests if r["status"] is not None and r["status"] < 400]
    # Which capture is whose: the upload's capture is the one that was spooled first.
    caps = list(dict.fromkeys(r["metadata"]["capture_id"] for r in rows))
    order = sorted(caps, key=lambda c: -sum(r["metadata"]["capture_id"] == c for r in rows))
    names = dict(zip(order, ["upload", "replay", "replay"], strict=False))
    ok = [r for r in posts if r["status"] == 201]  # in arrival order, one per stored row
    stored = [r["metadata"]["capture_id"] for r in rows]
    ends = {c: max(i for i, x in enumerate(stored) if x == c) for c in caps}
    first_end = min(ends.values())
    # Shares from the replays' launch (before it, with --replay-delay, the upload was alone).
    span_s = ok[first_end]["replied"] - t_replays
    during = [
        c for c, r in zip(stored, ok, strict=False) if t_replays <= r["replied"] <= ok[first_end]["replied"]
    ]
    total_s = max(r["replied"] for r in accepted) - t0
    n_upload = sum(names[c] == "upload" for c in stored)
    n_replays = len(stored) - n_upload
    # Best case: 120/min while all deliver, with the upload at an even share; then the upload alone.
    upload_left = max(0.0, n_upload - n_replays / 2)
    best_s = 60.0 * (len(accepted) - upload_left) / 120.0 + 60.0 * upload_left / 100.0
    print(f"1 upload ({n_upload} items) + 2 replays ({n_replays} items) on one key, sandbox at 120/min")
    print(f"  requests {len(requests)}: {len(accepted)} accepted, {len(refused)} refused with 429 "
          f"({100 * len(refused) / len(requests):.1f} %)")  # fmt: skip
    print(f"  while all three delivered ({span_s:.0f} s from the replays' launch): " + ", ".join(
        f"{names[c]} {60.0 * during.count(c) / span_s:.0f}/min" for c in caps))  # fmt: skip
    print("  last 201 of each: " + ", ".join(f"{names[c]} {ok[ends[c]]['replied'] - t0:.0f} s" for c in caps))
    print(f"  total {total_s:.0f} s; ideal at 120/min {60.0 * len(accepted) / 120.0:.0f} s; "
          f"best with a lone collector's 100/min ceiling at the end {best_s:.0f} s")  # fmt: skip
    print(f"  {load()} at the end")


if __name__ == "__main__":
    main()
