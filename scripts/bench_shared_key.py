"""Collectors sharing one API key: refusals, each collector's share, and the total time.

    python scripts/bench_shared_key.py      # the review's case: 1 upload of 319 chunks + 2 replays
    python scripts/bench_shared_key.py --upload-chunks 120 --replay-minutes 10

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from bench_replay import _env  # noqa: E402  (the collector subprocesses' environment, one definition)
from make_xdf import synthetic_eeg, synthetic_markers, write_xdf  # noqa: E402


def _recording(path: Path, seconds: float, seed: int) -> Path:
    write_xdf(path, [synthetic_eeg(seconds, seed=seed), synthetic_markers(seconds)])
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upload-chunks", type=int, default=319, help="5 s chunks for `collector upload`")
    ap.add_argument("--replay-minutes", type=float, default=30.0, help="length of each replayed recording")
    ap.add_argument("--replay-delay", type=float, default=0.0, help="start the replays S seconds later")
    args = ap.parse_args()
    from collector.sandbox import SandboxServer

    with tempfile.TemporaryDirectory() as tmp_name, SandboxServer(Path(tmp_name) / "sb") as sandbox:
        tmp = Path(tmp_name)
        env = _env(OPENLESSON_API_KEY=sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url)
        target = ["--workspace", sandbox.workspace_id, "--block", sandbox.block_ids[0], "--speed", "max"]
        backlog = _recording(tmp / "backlog.xdf", args.upload_chunks * 5.0, seed=1)
        filled = subprocess.run(
            [sys.executable, "-m", "collector", "replay", str(backlog), *target, "--offline",
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
                [sys.executable, "-m", "collector", *cmd], env=env, stdin=subprocess.DEVNULL,
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


if __name__ == "__main__":
    main()
