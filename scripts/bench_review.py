"""Time and peak memory of `collector review` for a long capture, and the page's size.

    python scripts/bench_review.py                  # 2 hours, a screenshot every 30 s (240)
    python scripts/bench_review.py --hours 0.5 --screenshots 60

Builds a real capture first: `collector replay --speed max --offline` of a synthetic XDF
(scripts/make_xdf.py: 4-ch 256 Hz EEG, a marker every 2 s) into a fresh spool; marks every item
delivered through the spool's own `mark_delivered` (so the local record keeps them, as after a
real upload); adds delivered 1920x1080 screenshots spread over the capture. Then runs
`collector review --last` in a subprocess and prints its wall time, CPU time and peak RSS, and
the page's size.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from make_xdf import synthetic_eeg, synthetic_markers, write_xdf  # noqa: E402


def screenshot(i: int) -> bytes:
    """A 1920x1080 desktop-like frame (text lines and a coloured panel), JPEG q75."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (1920, 1080), (250, 250, 250))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, 1920, 60), fill=(40, 44, 52))
    draw.rectangle((1300, 100, 1880, 1040), fill=((i * 37) % 255, 120, 200))
    for line in range(40):
        draw.text((40, 90 + 24 * line), f"{i:04d} line {line}: the learner's notes " * 3, fill=(20, 20, 20))
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=75)
    return out.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--screenshots", type=int, default=240)
    args = ap.parse_args()
    seconds = args.hours * 3600
    env = dict(os.environ, OPENLESSON_API_KEY="sk_benchmark_not_used", PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        xdf = Path(tmp) / "long.xdf"
        write_xdf(xdf, [synthetic_eeg(seconds), synthetic_markers(seconds)])
        spool_dir = Path(tmp) / "spool"
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "collector", "replay", str(xdf), "--workspace", str(uuid.uuid4()),
             "--block", str(uuid.uuid4()), "--speed", "max", "--offline", "--spool", str(spool_dir),
             "--log-format", "json"],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False,
        )  # fmt: skip
        from collector.delivery.opening import open_spool

        with open_spool(spool_dir) as spool:
            [cap] = [c["capture_id"] for c in spool.record.captures()]
            counts = spool.record.captures()[0]["counts"]
            start, end = counts["data_start_ms"], counts["data_end_ms"]
            for i in range(args.screenshots):  # frames as the screen source would have spooled them
                t = int(start + (end - start) * (i + 0.5) / max(1, args.screenshots))
                spool.add(
                    workspace_id=str(uuid.uuid4()),
                    evidence={
                        "type": "screen", "mime_type": "image/jpeg", "chunk_index": i, "timestamp_ms": t,
                        "metadata": {"capture_id": cap, "stream_id": "screen:1", "collector_version": "b",
                                     "paused_periods": []},
                    },
                    data=screenshot(i),
                )  # fmt: skip
            n = 0
            while (item := spool.next_pending()) is not None:  # as the uploader does after each 201
                spool.mark_delivered(item.id, f"bench-{item.id}")
                n += 1
            record_mb = spool.record.record_bytes() / 1e6
            summary_kb = (
                sum(
                    len(a.data)
                    for a in spool.record.artifacts(cap, "eeg")
                    if a.stream_id == "session-summary"
                )
                / 1000
            )
        prep_s = time.perf_counter() - t0
        page = Path(tmp) / "review.html"
        # The review runs in a fresh interpreter that reports its own peak RSS (RUSAGE_CHILDREN
        # would also count the replay above).
        child = (
            "import json, resource, sys, time\n"
            "t = time.perf_counter()\n"
            "from collector.cli import main\n"
            "code = main(sys.argv[1:])\n"
            "r = resource.getrusage(resource.RUSAGE_SELF)\n"
            "print(json.dumps({'code': code, 'wall_s': time.perf_counter() - t,"
            " 'cpu_s': r.ru_utime + r.ru_stime, 'maxrss_kb': r.ru_maxrss}), file=sys.stderr)\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", child, "review", "--last", "--spool", str(spool_dir), "--out", str(page)],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            sys.exit(f"review failed: {proc.stderr}")
        figures = json.loads(proc.stderr.strip().splitlines()[-1])
        wall, cpu = figures["wall_s"], figures["cpu_s"]
        print(json.dumps({
            "capture_hours": args.hours, "items_delivered": n, "screenshots": args.screenshots,
            "local_record_mb": round(record_mb, 1), "session_summary_kb": round(summary_kb, 1),
            "prepare_s": round(prep_s, 1),
            "review_wall_s": round(wall, 2), "review_cpu_s": round(cpu, 2),
            "review_peak_rss_mb": round(figures["maxrss_kb"] / 1024, 1),
            "page_mb": round(page.stat().st_size / 1e6, 2),
        }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
