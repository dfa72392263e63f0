"""Time and peak memory of `collector review` for a long capture, and the page's size.

    python scripts/bench_review.py                  # 2 hours, a screenshot every 30 s (240)
    python scripts/bench_review.py --hours 0.5 --screenshots 60
    python scripts/bench_review.py --tree OLD_CHECKOUT    # another checkout's collector (PYTHONPATH)

Builds a real capture first: `collector replay --speed max --offline` of a synthetic XDF
(scripts/make_xdf.py: 4-ch 256 Hz EEG, a marker every 2 s) into a fresh spool; marks every item
delivered through the spool's own `mark_delivered` (so the local record keeps them, as after a
real upload); adds delivered 1920x1080 screenshots spread over the capture. Then runs
`collector review --last` in a subprocess and prints its wall time, CPU time and peak RSS, and
the page's size: in all, in inline <script> blocks, of which plotly.js (a script whose first
lines name plotly.js), and in inline data: images; plus any other files the review wrote next to
the page. Every step runs in a subprocess with `--tree` first on PYTHONPATH; the spool is filled
through that tree's own Spool (collector.delivery.spool, or collector.spool in the flat layout).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import MAX_HOURS, add_tree_args, child_rusage, collector_cmd, header, load, number, tree_env  # noqa: E402
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


def prepare(spool_dir: Path, screenshots: int) -> None:
    """In a subprocess with the tree under test on PYTHONPATH: add screenshots, mark all delivered."""
    if not (spool_dir / "spool.db").is_file():  # Spool() would create an empty one there
        sys.exit(f"--prepare {spool_dir}: no spool there (spool.db); it is this script's own step")
    try:
        from collector.delivery.spool import Spool
    except ImportError:  # the flat layout (before the by-stage packages)
        from collector.spool import Spool

    with Spool(spool_dir) as spool:
        [cap] = [c["capture_id"] for c in spool.record.captures()]
        counts = spool.record.captures()[0]["counts"]
        start, end = counts["data_start_ms"], counts["data_end_ms"]
        for i in range(screenshots):  # frames as the screen source would have spooled them
            t = int(start + (end - start) * (i + 0.5) / max(1, screenshots))
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
            sum(len(a.data) for a in spool.record.artifacts(cap, "eeg") if a.stream_id == "session-summary")
            / 1000
        )
    print(json.dumps({"items_delivered": n, "record_mb": record_mb, "summary_kb": summary_kb}))


SCRIPT_RE = re.compile(rb"<script\b[^>]*>(.*?)</script>", re.S | re.I)
DATA_URI_RE = re.compile(rb"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+")
PLOTLY_RE = re.compile(rb"plotly(\.js)?(\s*\([^)]*\))?\s+v?\d+\.\d+", re.I)  # also "(cartesian - minified)"


def page_parts(page: Path) -> dict[str, float]:
    """Bytes of the page: inline scripts, plotly.js among them, inline images, in MB."""
    html = page.read_bytes()
    scripts = [m.group(1) for m in SCRIPT_RE.finditer(html)]
    plotly = sum(len(s) for s in scripts if PLOTLY_RE.search(s[:2000]))
    images = sum(len(m.group(0)) for m in DATA_URI_RE.finditer(html))
    others = [p for p in page.parent.iterdir() if p != page and p.name.startswith(page.stem)]
    return {
        "page_mb": round(len(html) / 1e6, 2),
        "inline_scripts_mb": round(sum(len(s) for s in scripts) / 1e6, 2),
        "plotly_js_mb": round(plotly / 1e6, 2),
        "inline_images_mb": round(images / 1e6, 2),
        "other_files_mb": round(sum(p.stat().st_size for p in others if p.is_file()) / 1e6, 2),
    }


MIN_SECONDS = 10.0  # a capture shorter than this has no chunk to review


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_tree_args(ap)
    ap.add_argument("--hours", type=number(float, above=0, at_most=MAX_HOURS), default=2.0)
    ap.add_argument("--screenshots", type=number(int, at_least=0), default=240)
    ap.add_argument("--prepare", type=Path, metavar="SPOOL", help=argparse.SUPPRESS)  # the child's part
    args = ap.parse_args()
    if args.prepare:
        return prepare(args.prepare, args.screenshots)
    if args.hours * 3600 < MIN_SECONDS:
        ap.error(f"--hours {args.hours:g} is {args.hours * 3600:.3g} s; give at least {MIN_SECONDS:g} s "
                 f"({MIN_SECONDS / 3600:.4f} h)")  # fmt: skip
    header(f"collector review of a {args.hours:g} h capture with {args.screenshots} screenshots", args.tree)
    seconds = args.hours * 3600
    env = tree_env(args.tree, OPENLESSON_API_KEY="sk_benchmark_not_used")
    with tempfile.TemporaryDirectory(prefix="bench-review-") as tmp:
        xdf = Path(tmp) / "long.xdf"
        write_xdf(xdf, [synthetic_eeg(seconds), synthetic_markers(seconds)])
        spool_dir = Path(tmp) / "spool"
        t0 = time.perf_counter()
        replay = subprocess.run(
            collector_cmd("replay", str(xdf), "--workspace", str(uuid.uuid4()),
             "--block", str(uuid.uuid4()), "--speed", "max", "--offline", "--spool", str(spool_dir),
             "--log-format", "json"),
            env=env, cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if replay.returncode not in (0, 6):
            sys.exit(f"replay failed ({replay.returncode}): {replay.stderr[-2000:]}")
        prep = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--prepare", str(spool_dir),
             "--screenshots", str(args.screenshots)],
            env=env, cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )  # fmt: skip
        if prep.returncode != 0:
            sys.exit(f"filling the spool failed: {prep.stderr[-2000:]}")
        prepared = json.loads(prep.stdout.strip().splitlines()[-1])
        prep_s = time.perf_counter() - t0
        page = Path(tmp) / "out" / "review.html"
        page.parent.mkdir()
        # The review runs in a fresh interpreter that reports its own times from just before
        # `from collector.cli import main`; wait4 gives the whole process's wall, CPU and peak RSS.
        child = (
            "import json, sys, time\n"
            "t = time.perf_counter()\n"
            "from collector.cli import main\n"
            "code = main(sys.argv[1:])\n"
            "print(json.dumps({'code': code, 'wall_s': time.perf_counter() - t}), file=sys.stderr)\n"
        )
        load_start = load()
        with open(Path(tmp) / "review.err", "wb") as err:
            t1 = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, "-c", child, "review", "--last", "--spool", str(spool_dir),
                 "--out", str(page)],
                env=env, cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
            code, usage = child_rusage(proc)
            process_wall = time.monotonic() - t1
        stderr = (Path(tmp) / "review.err").read_text()
        if code != 0:
            sys.exit(f"review failed: {stderr[-2000:]}")
        figures = json.loads(stderr.strip().splitlines()[-1])
        if figures["code"] != 0 or not page.is_file():  # `main` returned an error code: no page
            sys.exit(f"review failed (exit {figures['code']}): {stderr[-2000:]}")
        parts = page_parts(page)
    share = parts["plotly_js_mb"] / parts["page_mb"] if parts["page_mb"] else 0.0
    print(json.dumps({
        "capture_hours": args.hours, "items_delivered": prepared["items_delivered"],
        "screenshots": args.screenshots, "local_record_mb": round(prepared["record_mb"], 1),
        "session_summary_kb": round(prepared["summary_kb"], 1), "prepare_s": round(prep_s, 1),
        "review_wall_s": round(figures["wall_s"], 2), "review_process_wall_s": round(process_wall, 2),
        "review_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "review_peak_rss_mb": round(usage.ru_maxrss / 1024, 1), **parts,
        "plotly_js_share": round(share, 3), "load_at_start": load_start, "load_at_end": load(),
    }, indent=2))  # fmt: skip
    print(
        f"  page {parts['page_mb']:.2f} MB, of which plotly.js {parts['plotly_js_mb']:.2f} MB "
        f"({100 * share:.0f} %), images {parts['inline_images_mb']:.2f} MB; review wall "
        f"{figures['wall_s']:.2f} s (process {process_wall:.2f} s), "
        f"CPU {usage.ru_utime + usage.ru_stime:.2f} s"
    )


if __name__ == "__main__":
    main()
