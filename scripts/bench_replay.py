"""How long `collector replay --speed max --offline` takes to spool a long recording.

    python scripts/bench_replay.py            # 1 hour of 4-channel 256 Hz EEG + markers
    python scripts/bench_replay.py --hours 0.25

Writes a synthetic XDF (scripts/make_xdf.py), runs the real CLI in a subprocess into a fresh
spool, and prints wall time, CPU time, throughput and what the spool holds.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_xdf import synthetic_eeg, synthetic_markers, write_xdf  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--chunk-seconds", type=float, default=5.0)
    args = ap.parse_args()
    seconds = args.hours * 3600
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.xdf"
        write_xdf(path, [synthetic_eeg(seconds), synthetic_markers(seconds)])
        spool = Path(tmp) / "spool"
        env = dict(os.environ, OPENLESSON_API_KEY="sk_benchmark_not_used")
        cmd = [
            sys.executable,
            "-m",
            "collector",
            "replay",
            str(path),
            "--workspace",
            str(uuid.uuid4()),
            "--block",
            str(uuid.uuid4()),
            "--speed",
            "max",
            "--offline",
            "--spool",
            str(spool),
            "--chunk-seconds",
            str(args.chunk_seconds),
            "--log-format",
            "json",
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode not in (0, 6):
            sys.exit(f"replay failed ({proc.returncode}): {proc.stderr[-2000:]}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        with sqlite3.connect(spool / "spool.db") as db:
            (items,) = db.execute("SELECT count(*) FROM items").fetchone()
        size = sum(p.stat().st_size for p in spool.iterdir() if p.is_file())
        samples = int(round(seconds * 256))
        print(
            f"replay --speed max --offline of {args.hours:g} h of 4-ch 256 Hz EEG ({samples:,} samples, "
            f"XDF {path.stat().st_size / 1e6:.1f} MB)"
        )
        print(
            f"  wall {wall:.1f} s   CPU {cpu:.1f} s   {seconds / wall:,.0f}x real time   "
            f"{samples / wall:,.0f} samples/s"
        )
        print(f"  spooled {items} EEG chunks of {args.chunk_seconds:g} s, spool {size / 1e6:.1f} MB on disk")
        print(f"  peak RSS of the replay process {after.ru_maxrss / 1024:.0f} MB")
        print(f"  delivering them at 100 requests/min takes about {items / 100:.0f} min")


if __name__ == "__main__":
    main()
