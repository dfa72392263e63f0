"""The review page of one capture: a single self-contained HTML file, readable offline.

    load_review(spool, session) -> ReviewData   what the local record (and the spool) hold (data.py)
    build_figure(data) -> (figure, offset)       band powers, quality, markers, gaps, pauses (figure.py)
    render_review(data) -> str                    the page (Jinja2 template, plotly.js inlined)

Plotly draws the interactive time axis (zoom and pan); plotly.js's cartesian partial bundle,
vendored in collector/templates (plotly-SOURCE.md), is inlined, so nothing is fetched from a
network. Jinja2 writes the page from `collector/templates/review.html.j2`. Times on the page are
the local wall-clock time of the machine that builds it.
"""

from __future__ import annotations

import base64
import math
from datetime import datetime
from importlib import resources
from typing import Any

import numpy as np

from collector.review.data import ReviewData, load_review
from collector.review.figure import build_figure, figure_json, nanmean

__all__ = ["ReviewData", "averages_table", "build_figure", "load_review", "render_review"]

PLOTLY_JS_FILE = "plotly-cartesian.min.js"  # npm plotly.js-cartesian-dist-min, unchanged
PLOTLY_JS_VERSION = "4.1.1"  # the plotly_white template is this plotly.js's (a test checks)
_TABLE_BLOCKS_S = (10, 30, 60, 120, 300, 600, 900, 1800, 3600)
_MAX_TABLE_ROWS = 24


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {sec:02d} s" if hours else f"{minutes} min {sec:02d} s"


def averages_table(data: ReviewData) -> tuple[str, list[dict[str, Any]]]:
    """Per-block-of-time averages: (block length label, rows). Blocks run from the capture's first
    sample (or marker, or screenshot, whichever is first) to its last, so every marker and
    screenshot is in a row (the rows add up to the header's totals); they are chosen so there are
    at most 24 rows. Windows count in the block of their end time. Each row: start/end (local
    HH:MM:SS), windows, mean relative power per band (mean of channels), good-quality share,
    markers and screenshots in it; blocks holding none of these are left out."""
    if not len(data.window_ms):
        return "", []
    marker_t = np.asarray(sorted(t for t, _ in data.markers + data.marks), dtype=float)  # both kinds
    shot_t = np.asarray([t for t, _, _ in data.shots], dtype=float)
    firsts = [float(data.window_ms[0])] + marker_t[:1].tolist() + shot_t[:1].tolist()
    lasts = [float(data.window_ms[-1])] + marker_t[-1:].tolist() + shot_t[-1:].tolist()
    if data.first_sample_ms is not None:
        firsts.append(data.first_sample_ms)
    t0, t_end = min(firsts), max(lasts)
    span_s = (t_end - t0) / 1000
    block_s = next((b for b in _TABLE_BLOCKS_S if span_s / b < _MAX_TABLE_ROWS), 3600)
    block_ms = block_s * 1000
    last_block = int((t_end - t0) // block_ms)

    def block_of(t: np.ndarray) -> np.ndarray:
        return np.minimum(((t - t0) // block_ms).astype(int), last_block)

    idx, marker_idx, shot_idx = block_of(data.window_ms), block_of(marker_t), block_of(shot_t)
    rows = []
    for k in range(last_block + 1):
        sel = idx == k
        n_markers, n_shots = int((marker_idx == k).sum()), int((shot_idx == k).sum())
        if not sel.any() and not n_markers and not n_shots:
            continue
        start, end = t0 + k * block_ms, min(t0 + (k + 1) * block_ms, t_end)
        means = good_share = moving_share = None
        if sel.any():
            moved = data.moving[sel] if len(data.moving) else np.zeros(0)
            if np.isfinite(moved).any():
                moving_share = float(nanmean(moved, axis=0))
            rel = data.relative[sel]
            if np.isfinite(rel).any():
                means = nanmean(rel.reshape(-1, rel.shape[-1]), axis=0)
            good = data.good[sel]
            if np.isfinite(good).any():
                good_share = float(nanmean(good.ravel(), axis=0))
        rows.append({
            "start": datetime.fromtimestamp(start / 1000).strftime("%H:%M:%S"),
            "end": datetime.fromtimestamp(end / 1000).strftime("%H:%M:%S"),
            "windows": int(sel.sum()),
            "bands": [None] * len(data.bands) if means is None
                     else [f"{v:.1%}" if np.isfinite(v) else None for v in means],
            "good": None if good_share is None else f"{good_share:.0%}",
            "moving": None if moving_share is None else f"{moving_share:.0%}",
            "heart_rate": _bpm(data.heart_rate_in(start, end if k < last_block else math.inf)),
            "markers": n_markers,
            "screenshots": n_shots,
        })  # fmt: skip
    label = f"{block_s // 60} min" if block_s >= 60 else f"{block_s} s"
    return label, rows


def _bpm(value: float | None) -> str | None:
    return None if value is None else f"{value:.0f} bpm"


def vendored_plotly_js() -> str:
    """plotly.js's cartesian partial bundle (Scatter, Heatmap; 1.5 MB instead of the full 4.8 MB),
    vendored in collector/templates with its MIT licence; see plotly-SOURCE.md there."""
    return (resources.files("collector.templates") / PLOTLY_JS_FILE).read_text(encoding="utf-8")


def render_review(data: ReviewData) -> str:
    """The whole page as one string: no external resource (plotly.js and images are inlined)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("collector", "templates"),
        autoescape=jinja2.select_autoescape(("html", "j2")),
        undefined=jinja2.StrictUndefined,
    )
    fig, local = build_figure(data)
    s = data.session
    device = data.device or {}
    block_label, table = averages_table(data)
    started = datetime.fromisoformat(s["started_at"]) if s.get("started_at") else None
    shots = [
        {"x": t + local, "time": datetime.fromtimestamp(t / 1000).strftime("%H:%M:%S"),
         "src": f"data:{mime};base64,{base64.b64encode(img).decode('ascii')}"}
        for t, mime, img in data.shots
    ]  # fmt: skip
    return env.get_template("review.html.j2").render(
        title=s.get("block_title") or s.get("block_id") or "no block",
        session=s,
        started=started.strftime("%A %d %B %Y, %H:%M:%S %Z") if started else "unknown",
        duration=_duration(s.get("duration_s")),
        device=device,
        device_label=", ".join(
            p
            for p in (
                device.get("name"),
                device.get("model"),
                f"{device['sfreq']:g} Hz" if device.get("sfreq") else "",
                " ".join(device.get("channels") or ()),
            )
            if p
        )
        or "no EEG",  # fmt: skip
        bands=data.bands,
        table=table,
        has_motion=data.has_motion,
        has_heart=bool(data.heart),
        moving_share=None if not data.has_motion else f"{float(nanmean(data.moving, axis=0)):.0%}",
        heart_rate=_bpm(data.heart_rate_in(-math.inf, math.inf)),
        block_label=block_label,
        shots=shots,
        n_markers=len(data.markers),
        n_marks=len(data.marks),
        samples_here=data.samples,
        missing=data.missing.describe(s["capture_id"]) if data.missing.any else None,
        n_gaps=len(data.gaps),
        n_paused=len(data.paused),
        figure_json=figure_json(fig),
        plotly_js=vendored_plotly_js(),
        plotly_version=PLOTLY_JS_VERSION,
        generated=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    )
