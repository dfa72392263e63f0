#!/usr/bin/env python
"""Spool write throughput and the latency that spool + uploader add between capture and 201.

    python scripts/bench_spool.py [--items 200] [--latency-items 20] [--interval 0.65] [--rate 100]

1. Write throughput: `Spool.add` of EEG-sized (~60 KB JSON) and screenshot-sized (~300 KB) items
   into a fresh spool (WAL, synchronous=FULL: one fsync per item), items/s and MB/s.
2. Capture to 201: a real sandbox server on loopback, idle (no faults, no latency); one EEG chunk
   every --interval seconds (slower than the limiter, so nothing queues); time from just before
   `spool.add` to the uploader's `delivered` event (after the spool recorded the 201).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.api.settings import ApiKey, ApiSettings  # noqa: E402
from collector.delivery.spool import Spool  # noqa: E402
from collector.delivery.uploader import Uploader  # noqa: E402


def eeg_payload(i: int, target_bytes: int = 60_000) -> bytes:
    # Band-power rows as a chunker would write them: JSON numbers, ~60 KB per chunk.
    rows, size = [], 0
    while size < target_bytes:
        row = {"t_ms": 1_700_000_000_000 + i * 1000 + len(rows), "alpha": 0.123456, "beta": 0.234567,
               "theta": 0.345678, "delta": 0.456789, "gamma": 0.0123456}  # fmt: skip
        rows.append(row)
        size += len(json.dumps(row)) + 1
    return json.dumps({"chunk": i, "rows": rows}).encode()


def evidence(kind: str, capture_id: str, i: int) -> dict:
    if kind == "eeg":
        return {"type": "eeg", "mime_type": "application/json", "chunk_index": i, "sample_count": 256,
                "metadata": {"capture_id": capture_id, "stream_id": "eeg:bench"}}  # fmt: skip
    return {"type": "screen", "mime_type": "image/png", "chunk_index": i, "file_name": f"s{i}.png",
            "metadata": {"capture_id": capture_id, "stream_id": "screen:bench"}}  # fmt: skip


def bench_writes(root: Path, n: int) -> None:
    eeg = eeg_payload(0)
    screen = os.urandom(300_000)  # incompressible, like a PNG
    print(f"spool write throughput ({root}, WAL, synchronous=FULL, {n} items each):")
    with Spool(root / "writes") as spool:
        for kind, data in (("eeg", eeg), ("screen", screen)):
            capture_id = str(uuid.uuid4())
            t0 = time.perf_counter()
            for i in range(n):
                spool.add(workspace_id="bench", evidence=evidence(kind, capture_id, i), data=data)
            dt = time.perf_counter() - t0
            label = (
                f"EEG {len(data) / 1000:.0f} KB JSON"
                if kind == "eeg"
                else f"screenshot {len(data) / 1000:.0f} KB"
            )
            print(f"  {label:<22} {n / dt:8.0f} items/s  {n * len(data) / dt / 1e6:7.1f} MB/s")


def bench_latency(root: Path, n: int, interval_s: float, rate_per_min: float) -> None:
    from collector.sandbox import SandboxServer

    with SandboxServer(root / "sandbox", rate_limit_per_min=100_000) as sb, Spool(root / "latency") as spool:
        delivered: dict[int, float] = {}
        done = threading.Condition()

        def on_event(event: str, **fields) -> None:
            if event == "delivered":
                with done:
                    delivered[fields["item_id"]] = time.perf_counter()
                    done.notify_all()

        settings = ApiSettings(base_url=sb.base_url, api_key=ApiKey(sb.api_key))
        uploader = Uploader(
            spool, settings, rate_per_min=rate_per_min, on_event=on_event, verbose_events=True
        )
        uploader.start()
        capture_id = str(uuid.uuid4())
        started: dict[int, float] = {}
        try:
            for i in range(n):
                data = eeg_payload(i)
                t0 = time.perf_counter()
                item_id = spool.add(
                    workspace_id=sb.workspace_id, evidence=evidence("eeg", capture_id, i), data=data
                )
                started[item_id] = t0
                time.sleep(interval_s)
            with done:
                done.wait_for(lambda: len(delivered) == n, timeout=60)
        finally:
            uploader.stop(5)
        lat_ms = sorted((delivered[k] - started[k]) * 1000 for k in started if k in delivered)
        p95 = lat_ms[min(len(lat_ms) - 1, round(0.95 * (len(lat_ms) - 1)))]
        print(
            f"capture -> 201 at an idle sandbox ({len(lat_ms)}/{n} EEG chunks of ~60 KB, one every "
            f"{interval_s:g} s, limiter {rate_per_min:g}/min):"
        )
        print(f"  median {statistics.median(lat_ms):6.1f} ms   p95 {p95:6.1f} ms   max {lat_ms[-1]:6.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200, help="items per kind for the write benchmark")
    parser.add_argument("--latency-items", type=int, default=20, help="chunks for the latency benchmark")
    parser.add_argument("--interval", type=float, default=0.65, help="seconds between chunks (latency)")
    parser.add_argument("--rate", type=float, default=100.0, help="uploader limiter, requests/min")
    parser.add_argument("--dir", help="folder to benchmark in (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        bench_writes(Path(tmp), args.items)
        bench_latency(Path(tmp), args.latency_items, args.interval, args.rate)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
