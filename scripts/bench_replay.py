"""How fast `collector replay` spools a long recording, and how soon it is all on the server.

    python scripts/bench_replay.py            # 1 hour of 4-channel 256 Hz EEG + markers
    python scripts/bench_replay.py --hours 0.25
    python scripts/bench_replay.py --skip-offline   # only the delivery figure
    python scripts/bench_replay.py --tree OLD_CHECKOUT  # another checkout's collector (PYTHONPATH)

The ratio to a NumPy reference pipeline (issue 23) is scripts/bench_replay_ratio.py.

Writes a synthetic XDF (scripts/make_xdf.py), then runs the real CLI in a subprocess twice:

1. `replay --speed max --offline --chunk-seconds 5` into a fresh spool: wall time, CPU time,
   throughput and what the spool holds (the chunker and spool at the live chunk size);
2. `replay --speed max` (default delivery chunking) against the sandbox enforcing 120 requests
   per minute per key (sliding 60 s window, refusals counted): wall time from the launch to the
   last 201, the number of requests, refusals, and the largest evidence item.
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import add_tree_args, collector_cmd, header, import_sandbox, load, tree_env  # noqa: E402
from make_xdf import synthetic_eeg, synthetic_markers, write_xdf  # noqa: E402

TREE = Path(__file__).resolve().parents[1]  # set from --tree in main()


def _env(**extra: str) -> dict[str, str]:
    return tree_env(TREE, **extra)


def bench_offline(path: Path, tmp: Path, hours: float, chunk_seconds: float) -> None:
    seconds = hours * 3600
    spool = tmp / "spool-offline"
    cmd = [
        *collector_cmd("replay", str(path)),
        "--workspace", str(uuid.uuid4()), "--block", str(uuid.uuid4()),
        "--speed", "max", "--offline", "--spool", str(spool),
        "--chunk-seconds", str(chunk_seconds), "--log-format", "json",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, env=_env(OPENLESSON_API_KEY="sk_benchmark_not_used"), stdin=subprocess.DEVNULL,
        capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 6):
        sys.exit(f"replay failed ({proc.returncode}): {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with sqlite3.connect(spool / "spool.db") as db:
        (items,) = db.execute("SELECT count(*) FROM items").fetchone()
    size = sum(p.stat().st_size for p in spool.iterdir() if p.is_file())
    samples = int(round(seconds * 256))
    print(f"1. replay --speed max --offline --chunk-seconds {chunk_seconds:g} ({samples:,} samples)")
    print(
        f"  wall {wall:.1f} s   CPU {cpu:.1f} s   {seconds / wall:,.0f}x real time   "
        f"{samples / wall:,.0f} samples/s"
    )
    print(f"  spooled {items} items, spool {size / 1e6:.1f} MB on disk")
    print(f"  peak RSS of the replay process {after.ru_maxrss / 1024:.0f} MB")
    print(f"  {load()} at the end")


def bench_delivery(path: Path, tmp: Path, sandbox_tree: Path) -> None:
    SandboxServer = import_sandbox(sandbox_tree)
    with SandboxServer(tmp / "sandbox", rate_limit_per_min=120) as sandbox:
        cmd = [
            *collector_cmd("replay", str(path)),
            "--workspace", sandbox.workspace_id, "--block", sandbox.block_ids[0],
            "--speed", "max", "--spool", str(tmp / "spool-online"), "--log-format", "json",
        ]  # fmt: skip
        env = _env(OPENLESSON_API_KEY=sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url)
        t0 = time.monotonic()
        proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        exited = time.monotonic() - t0
        if proc.returncode != 0:
            sys.exit(f"replay failed ({proc.returncode}): {proc.stderr[-2000:]}")
        requests = sandbox.requests()
        ok = [r for r in requests if r["status"] == 201]
        refused = sum(1 for r in requests if r["status"] == 429)
        rows = sandbox.evidence(sandbox.workspace_id)
        largest = max(r["file_size"] for r in rows)
    last = max(r["replied"] for r in ok) - t0
    print("2. replay --speed max (delivery chunks) against the sandbox at 120 requests/min per key")
    print(f"  wall time from launch to the last 201: {last:.1f} s (process exit {exited:.1f} s)")
    print(
        f"  {len(requests)} requests ({len(ok)} evidence items stored, {refused} refused with 429); "
        f"largest item {largest / 1e6:.2f} MB decoded (~{largest * 4 / 3 / 1e6:.2f} MB as base64)"
    )
    print(f"  {load()} at the end")


def main() -> None:
    global TREE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_tree_args(ap, sandbox=True)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--chunk-seconds", type=float, default=5.0, help="chunk length of the offline run")
    ap.add_argument("--skip-offline", action="store_true")
    ap.add_argument("--skip-delivery", action="store_true")
    args = ap.parse_args()
    TREE = args.tree
    header("collector replay of a long recording", args.tree)
    seconds = args.hours * 3600
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = tmp / "long.xdf"
        write_xdf(path, [synthetic_eeg(seconds), synthetic_markers(seconds)])
        print(f"{args.hours:g} h of 4-ch 256 Hz EEG + markers, XDF {path.stat().st_size / 1e6:.1f} MB")
        if not args.skip_offline:
            bench_offline(path, tmp, args.hours, args.chunk_seconds)
        if not args.skip_delivery:
            bench_delivery(path, tmp, args.sandbox_tree)


if __name__ == "__main__":
    main()
