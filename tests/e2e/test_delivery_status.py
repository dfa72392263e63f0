"""What `status`, the uploader's counters and a replay's lines say about delivery (review of issue 11).

Real `python -m collector` processes against the real sandbox over loopback; a killed process is
killed with a real SIGKILL. Findings 4, 5 and 6 of the review.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from cli_runs import REPO, cli_env, collector, start_collector
from docs_text import section

from collector.api.settings import ApiKey, ApiSettings
from collector.capture.session import _note_delivery
from collector.delivery.spool import Spool
from collector.delivery.uploader import Uploader

sys.path.insert(0, str(REPO / "scripts"))
from make_xdf import synthetic_eeg, synthetic_markers, write_xdf  # noqa: E402


def recording(tmp_path: Path, seconds: float) -> Path:
    path = tmp_path / "rec.xdf"
    write_xdf(path, [synthetic_eeg(seconds, seed=5), synthetic_markers(seconds)],
              start=datetime(2024, 5, 1, 10, tzinfo=timezone.utc))  # fmt: skip
    return path


def fill_spool(tmp_path: Path, sandbox, seconds: float = 60.0) -> Path:
    spool = tmp_path / "spool"
    proc = collector(["replay", str(recording(tmp_path, seconds)), "--workspace", sandbox.workspace_id,
                      "--block", sandbox.block_ids[0], "--speed", "max", "--chunk-seconds", "5",
                      "--offline", "--spool", str(spool)], cli_env(sandbox))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return spool


def status(spool: Path, sandbox) -> tuple[dict, str]:
    as_json = collector(["status", "--json", "--spool", str(spool)], cli_env(sandbox))
    text = collector(["status", "--spool", str(spool)], cli_env(sandbox))
    return json.loads(as_json.stdout), text.stdout


def test_status_says_delivering_only_while_a_live_process_delivers(sandbox, tmp_path):
    spool = fill_spool(tmp_path, sandbox)
    proc = start_collector(["upload", "--spool", str(spool), "--rate", "6"], cli_env(sandbox))  # 10 s each
    try:
        deadline = time.monotonic() + 30
        report, text = status(spool, sandbox)
        while report["delivery_rate"] is None and time.monotonic() < deadline:
            time.sleep(0.5)
            report, text = status(spool, sandbox)
        assert report["delivering"] is True and report["delivery_rate"]["rate_per_min"] == 6.0
        assert "Delivering now at 6 requests/min" in text
        assert "A collector process is delivering them now" in text
        assert "collector upload" not in text  # no advice to start a second one on the same spool
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    report, text = status(spool, sandbox)  # the killed process's figure is still in the spool
    assert report["delivering"] is False and report["delivery_rate"] is None
    assert "Delivering now" not in text and "is delivering them now" not in text
    assert f"Send the pending items with `collector upload --spool {spool}`." in text


def test_status_json_of_a_missing_spool_has_the_same_keys(sandbox, tmp_path):
    empty, _ = status(tmp_path / "none", sandbox)
    full, _ = status(fill_spool(tmp_path, sandbox, 10.0), sandbox)
    assert empty["exists"] is False and set(empty) == set(full)
    assert empty["delivery_rate"] is None and empty["delivering"] is False
    table = section("`collector status --json`")
    for key in full:  # the README's table names every key
        assert f"| `{key}`" in table or f"`{key}`" in table.split("| holds |")[1], key


def test_last_error_is_cleared_once_deliveries_succeed_again(sandbox, tmp_path):
    with Spool(tmp_path / "spool") as spool:
        for i in range(6):
            spool.add(workspace_id=sandbox.workspace_id,
                      evidence={"type": "tool", "mime_type": "text/plain", "chunk_index": i,
                                "metadata": {"capture_id": "c", "stream_id": "tool:t"}},
                      data=b"x")  # fmt: skip
        sandbox.set_faults(fail_503=1.0)
        settings = ApiSettings(base_url=sandbox.base_url, api_key=ApiKey(sandbox.api_key))
        uploader = Uploader(spool, settings, backoff_base_s=0.2, backoff_cap_s=0.5)
        uploader.start()
        try:
            deadline = time.monotonic() + 20
            while uploader.counters()["last_error"] is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "503" in uploader.counters()["last_error"] or uploader.counters()["last_error"]
            sandbox.set_faults(fail_503=0.0)
            assert uploader.wait_idle(30)
            c = uploader.counters()
        finally:
            uploader.stop(0)
    assert c["delivered"] == 6 and c["retries"] >= 1
    assert c["last_error"] is None  # the 503s are over: the status lines stop repeating them


def test_counters_give_the_hold_of_a_429_and_the_time_left_includes_it(sandbox, tmp_path):
    with Spool(tmp_path / "spool") as spool:
        for i in range(3):
            spool.add(workspace_id=sandbox.workspace_id,
                      evidence={"type": "tool", "mime_type": "text/plain", "chunk_index": i,
                                "metadata": {"capture_id": "c", "stream_id": "tool:t"}},
                      data=b"x")  # fmt: skip
        sandbox.set_faults(fail_429=1.0)  # Retry-After: 1 s each
        settings = ApiSettings(base_url=sandbox.base_url, api_key=ApiKey(sandbox.api_key))
        uploader = Uploader(spool, settings)
        uploader.start()
        try:
            deadline = time.monotonic() + 20
            while uploader.counters()["rate_limited"] == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            c = uploader.counters()
        finally:
            uploader.stop(0)
    assert c["hold_s"] > 0.5

    class Lines:
        def __init__(self):
            self.fields = []

        def log(self, event, **fields):
            self.fields.append(fields)

    out = Lines()
    _note_delivery(out, {"pending": 10, "rate_per_min": 60.0, "hold_s": 30.0}, first=True)
    assert out.fields[0]["eta_s"] == 40  # 30 s of hold, then 10 items at one a second
    assert "about 40 s left" in out.fields[0]["message"]


def test_replay_lines_say_ctrl_c_once_and_the_closing_line_does_not_claim_all_was_sent(sandbox, tmp_path):
    import re

    sandbox.set_faults(latency_ms=1500)  # one chunk per 1.5 s: most are still in the spool at the end
    spool = tmp_path / "spool"
    proc = collector(["replay", str(recording(tmp_path, 30.0)), "--workspace", sandbox.workspace_id,
                      "--block", sandbox.block_ids[0], "--speed", "max", "--chunk-seconds", "5",
                      "--flush-timeout", "1", "--spool", str(spool)], cli_env(sandbox))  # fmt: skip
    assert proc.returncode == 6, proc.stderr[-2000:]
    flushing = [line for line in proc.stderr.splitlines() if "delivering the last" in line]
    assert flushing and "(Ctrl-C to stop now; nothing is lost)" in flushing[0]  # nobody pressed Ctrl-C
    assert "Ctrl-C again" not in proc.stderr
    ended = next(line for line in proc.stderr.splitlines() if "Replay ended" in line)
    assert "30.0 s of recording read in" in ended and "of recording sent" not in ended
    found = re.search(r"(\d+) items delivered, (\d+) still in the spool", ended)
    assert found and int(found[1]) + int(found[2]) == 7 and int(found[2]) > 0, ended
