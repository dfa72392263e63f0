"""The review page of one capture: a single self-contained HTML file, readable offline.

    load_review(spool, session) -> ReviewData     what the local record (and the spool) hold
    build_figure(data) -> plotly Figure            band powers, quality band, markers, gaps, pauses
    render_review(data) -> str                      the page (Jinja2 template, plotly.js inlined)

Plotly draws the interactive time axis (zoom and pan); plotly.js's cartesian partial bundle,
vendored in collector/templates (plotly-SOURCE.md), is inlined, so nothing is fetched from a
network. Jinja2 writes the page from `collector/templates/review.html.j2`. The band powers are the
chunk artifacts' own per-window relative powers, averaged into at most `MAX_POINTS` evenly spaced
time bins (x0 + i * dx, float32 values) so that a 2-hour capture stays light and fluid; zooming
shows the bins, not new data. Times on the page are the local wall-clock time of the machine
that builds it.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any

import numpy as np

from collector.core.records import MARK_SOURCE
from collector.core.summary import STREAM_ID as SUMMARY_STREAM_ID
from collector.delivery.local_record import reduce_screenshot
from collector.review.kept import Missing, find_missing

PLOTLY_JS_FILE = "plotly-cartesian.min.js"  # npm plotly.js-cartesian-dist-min, unchanged
PLOTLY_JS_VERSION = "4.1.1"  # must equal the plotly.js bundled with the Python plotly (a test checks)
MAX_POINTS = 1500  # time bins per trace: 2 h at 0.5 s windows -> 4.8 s bins
MAX_LABELLED_MARKERS = 40  # more than this: labels in the legend and on hover only
MAX_LABEL_CHARS = 24  # a marker's label on the plot and in the legend; the full value on hover
NOT_KEPT_COLOR = "#e08a1e"  # EEG no longer on this machine (evicted, pruned or damaged)
MARK_COLOR = "#d6006f"  # the user's own marks: one strong colour, apart from the stimulus markers' greys
MARKER_COLORS = ("#444444", "#b8860b", "#8b008b", "#006400", "#8b0000", "#00008b")
BAND_COLORS = {
    "delta": "#6a3d9a",
    "theta": "#1f78b4",
    "alpha": "#33a02c",
    "beta": "#ff7f00",
    "gamma": "#e31a1c",
}
_QUALITY_FLAGS = ("flat", "clipped", "excessive_amplitude", "line_noise", "missing")
MOVEMENT_ROW = "head still"  # the quality band's row from the accelerometer/gyroscope
_TABLE_BLOCKS_S = (10, 30, 60, 120, 300, 600, 900, 1800, 3600)
_MAX_TABLE_ROWS = 24


@dataclass
class ReviewData:
    """One capture, ready to draw. Times are Unix ms; arrays are indexed by window."""

    session: dict[str, Any]  # a row of `collector sessions --json`
    device: dict[str, Any] | None = None
    bands: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    window_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (n_windows,) end times
    relative: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))  # (n_win, n_ch, n_band)
    good: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (n_win, n_ch) 1/0, NaN: gap
    # (n_win,) 1: the head moved during the window, 0: still, NaN: no motion sensor / unknown
    moving: np.ndarray = field(default_factory=lambda: np.zeros(0))
    heart: list[tuple[float, float | None, bool]] = field(default_factory=list)  # PPG (end_ms, bpm, ok)
    markers: list[tuple[float, str]] = field(default_factory=list)  # a stream's or a file's (stimulus codes)
    marks: list[tuple[float, str]] = field(default_factory=list)  # the user's own (`collector mark`, `m`)
    gaps: list[tuple[float, float]] = field(default_factory=list)
    paused: list[tuple[float, float]] = field(default_factory=list)
    shots: list[tuple[int, str, bytes]] = field(default_factory=list)  # (time_ms, mime, bytes)
    eeg_chunks: int = 0
    samples: int = 0  # EEG samples read back (a capture shorter than a window has no window)
    first_sample_ms: float | None = None
    last_sample_ms: float | None = None
    missing: Missing = field(default_factory=Missing)  # what this machine no longer holds (kept.py)

    @property
    def has_motion(self) -> bool:
        return bool(len(self.moving)) and bool(np.isfinite(self.moving).any())

    def heart_rate_in(self, start_ms: float, end_ms: float) -> float | None:
        """Mean of the good heart-rate windows ending in [start_ms, end_ms), None without any."""
        bpm = [b for t, b, ok in self.heart if ok and b is not None and start_ms <= t < end_ms]
        return float(np.mean(bpm)) if bpm else None

    @property
    def empty(self) -> bool:
        return self.eeg_chunks == 0 and not self.shots


def load_review(spool, session: dict[str, Any]) -> ReviewData:
    """Read a capture's kept EEG chunks and screenshot copies (and any still in the spool).

    Chunks of any length are accepted; windows are ordered by their end time. A kept copy that
    cannot be read is skipped and counted, with evicted ones, in `data.missing`.
    """
    data = ReviewData(session=session)
    damaged: set[tuple[str, int]] = set()
    times: list[float] = []
    rel_rows: list[list[list[float]]] = []
    good_rows: list[list[float]] = []
    moving_rows: list[float] = []
    paused: set[tuple[int, int]] = set()
    for art in spool.record.artifacts(session["capture_id"]):
        if art.damaged:
            damaged.add((art.stream_id, art.chunk_index))
            continue
        if art.type == "screen":
            image, mime = art.data, art.mime_type
            if not art.delivered:  # still full-size in the spool: the page gets the record's size
                try:
                    image, mime = reduce_screenshot(image)
                except Exception:  # unreadable: shown as it is rather than dropped
                    pass
            data.shots.append((int(art.timestamp_ms or 0), mime, image))
            for start, end in art.metadata.get("paused_periods") or ():
                paused.add((int(start), int(end)))
            continue
        if art.type != "eeg" or art.stream_id == SUMMARY_STREAM_ID:
            continue
        try:
            chunk = json.loads(art.data)
            device, bands = chunk["device"], list(chunk["bands_hz"])
        except (ValueError, KeyError, TypeError):
            damaged.add((art.stream_id, art.chunk_index))
            continue
        if chunk.get("kind"):  # an accelerometer, gyroscope or PPG stream: only its heart rate is drawn
            data.heart.extend((h["end_ms"], h["bpm"], bool(h["ok"])) for h in chunk.get("heart_rate") or ())
            continue
        data.eeg_chunks += 1
        if data.device is None:
            data.device = device
            data.channels = list(device["channels"])
            data.bands = bands
        if chunk.get("times_ms"):
            first, last = chunk["t0_ms"] + chunk["times_ms"][0], chunk["t0_ms"] + chunk["times_ms"][-1]
            data.first_sample_ms = first if data.first_sample_ms is None else min(data.first_sample_ms, first)
            data.last_sample_ms = last if data.last_sample_ms is None else max(data.last_sample_ms, last)
        data.samples += len(chunk.get("samples") or ())
        nan_rel = [[math.nan] * len(data.bands) for _ in data.channels]
        for w in chunk["windows"]:
            times.append(w["end_ms"])
            rel = w.get("relative")
            if rel:
                rel_rows.append([[rel[ch][b] for b in data.bands] for ch in data.channels])
            else:
                rel_rows.append(nan_rel)
            q = w.get("quality") or {}
            moved = q.get("movement")
            moving_rows.append(math.nan if moved is None else float(bool(moved)))
            flags = q.get("channels") or {}
            if q.get("gap") or not flags:
                good_rows.append([math.nan] * len(data.channels))
            else:
                flagged = [any(flags.get(ch, {}).get(f) for f in _QUALITY_FLAGS) for ch in data.channels]
                good_rows.append([0.0 if bad else 1.0 for bad in flagged])
        for e in chunk["events"]:
            own = e.get("source") == MARK_SOURCE
            (data.marks if own else data.markers).append((e["time_ms"], str(e["value"])))
        data.gaps.extend((g["start_ms"], g["end_ms"]) for g in chunk["gaps"])
    if times:
        order = np.argsort(np.asarray(times), kind="stable")
        data.window_ms = np.asarray(times, dtype=float)[order]
        data.relative = np.asarray(rel_rows, dtype=float)[order]
        data.good = np.asarray(good_rows, dtype=float)[order]
        data.moving = np.asarray(moving_rows, dtype=float)[order]
    data.heart.sort(key=lambda h: h[0])
    data.paused = sorted(paused)
    data.shots.sort(key=lambda s: s[0])
    data.markers.sort()
    data.marks.sort()
    sfreq = float((data.device or {}).get("sfreq") or 0) or None
    data.missing = find_missing(spool, session["capture_id"], damaged, sfreq)
    return data


def _nanmean(values: np.ndarray, axis) -> np.ndarray:
    """Mean over `axis` ignoring NaN; NaN (without a warning) where there is nothing to average."""
    ok = ~np.isnan(values)
    counts = ok.sum(axis=axis)
    sums = np.where(ok, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def _f4(values: np.ndarray) -> np.ndarray:
    """float32 for the page: plotly writes numpy arrays as base64 typed arrays, half the bytes of
    float64; powers and shares in [0, 1] keep ~7 significant digits (NaN stays NaN: a hole)."""
    return np.ascontiguousarray(values, dtype=np.float32)


def _local_offset_ms(unix_ms: float) -> float:
    """The local zone's UTC offset at that time: the page shows local wall-clock times."""
    offset = datetime.fromtimestamp(unix_ms / 1000).astimezone().utcoffset()
    return offset.total_seconds() * 1000 if offset else 0.0


def _bins(data: ReviewData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin centres in Unix ms, mean relative (n_bins, n_ch, n_band), good share (n_bins, n_ch));
    when a motion sensor flagged the windows, the good share gets a last column: the still share."""
    t = data.window_ms
    span = float(t[-1] - t[0]) if len(t) > 1 else 0.0
    step = float(np.median(np.diff(t))) if len(t) > 1 else 500.0
    width = max(step, span / (MAX_POINTS - 1), 1.0)
    # Bins are centred on the windows (round, not floor): windows sitting on bin edges with a
    # millisecond of jitter would otherwise share a bin and leave the next one empty (a hole).
    idx = np.floor((t - t[0]) / width + 0.5).astype(np.int64)
    n = int(idx[-1]) + 1

    def nanmean_by_bin(values: np.ndarray) -> np.ndarray:
        flat = values.reshape(len(values), -1)
        ok = ~np.isnan(flat)
        sums = np.zeros((n, flat.shape[1]))
        counts = np.zeros((n, flat.shape[1]))
        np.add.at(sums, idx, np.where(ok, flat, 0.0))
        np.add.at(counts, idx, ok)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = sums / counts
        return out.reshape((n,) + values.shape[1:])

    centres = t[0] + np.arange(n) * width
    good = data.good
    if data.has_motion:
        good = np.concatenate([good, 1.0 - data.moving[:, None]], axis=1)
    return centres, nanmean_by_bin(data.relative), nanmean_by_bin(good)


def build_figure(data: ReviewData):
    """The plotly figure: row 1 relative band powers (mean, or one channel via the buttons) with
    markers as vertical lines; row 2 the share of good-quality windows per channel; gaps and
    paused periods shaded across both. x is local wall-clock time."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.8, 0.2], vertical_spacing=0.05)
    first_ms = data.window_ms[0] if len(data.window_ms) else (data.shots[0][0] if data.shots else 0)
    local = _local_offset_ms(first_ms)
    views = ["mean"] + data.channels
    visible_sets: list[list[bool]] = []
    n_traces = 0
    if len(data.window_ms):
        centres, rel, good = _bins(data)
        # Bins are evenly spaced: x0 + i * dx (ms on a date axis) instead of an x array per trace.
        x0 = float(centres[0] + local)
        dx = float(centres[1] - centres[0]) if len(centres) > 1 else 1.0
        for vi, view in enumerate(views):
            values = _nanmean(rel, axis=1) if view == "mean" else rel[:, vi - 1, :]
            for bi, band in enumerate(data.bands):
                fig.add_trace(
                    go.Scatter(
                        x0=x0, dx=dx, y=_f4(values[:, bi]), mode="lines", name=band, legendgroup=band,
                        showlegend=vi == 0, visible=vi == 0, connectgaps=False,
                        line={"width": 1.4, "color": BAND_COLORS.get(band)},
                        hovertemplate=f"{band} %{{y:.1%}}<extra>{view}</extra>",
                    ),
                    row=1, col=1,
                )  # fmt: skip
                n_traces += 1
        rows_y = data.channels + ([MOVEMENT_ROW] if data.has_motion else [])
        fig.add_trace(
            go.Heatmap(
                x0=x0, dx=dx, y=rows_y, z=_f4(good.T), zmin=0, zmax=1, showscale=False,
                colorscale=[[0, "#d73027"], [0.5, "#fee08b"], [1, "#1a9850"]],
                hovertemplate="%{y}: %{z:.0%} good (movement: still) windows<extra></extra>",
                name="signal quality",
            ),
            row=2, col=1,
        )  # fmt: skip
        n_traces += 1
    # Markers: one trace per value (its legend entry is its label), drawn as vertical lines. Long
    # values (e.g. an XML marker) are shortened on the plot and in the legend; hover shows them whole.
    marker_values = sorted({v for _, v in data.markers})
    dense = len(data.markers) > MAX_LABELLED_MARKERS  # many markers: fainter, so the powers stay readable
    for i, value in enumerate(marker_values):
        ts = np.asarray([t + local for t, v in data.markers if v == value], dtype=float)
        xs = np.repeat(ts, 3)  # each marker a segment from 0 to 1, NaN (no line) to the next
        ys = np.tile(np.asarray([0.0, 1.0, np.nan], dtype=np.float32), len(ts))
        fig.add_trace(
            go.Scatter(
                x=xs, y=ys, mode="lines", name=f"marker {marker_label(value)}", legendgroup="markers",
                legendgrouptitle_text="stimulus markers" if i == 0 else None,
                line={"width": 1, "dash": "dot", "color": MARKER_COLORS[i % len(MARKER_COLORS)]},
                opacity=0.35 if dense else 0.9, hoverinfo="text", hovertext=f"marker {html.escape(value)}",
            ),
            row=1, col=1,
        )  # fmt: skip
    marker_traces = len(marker_values)
    # The user's own marks: one legend entry, solid and thick, always labelled, however many
    # stimulus markers a recording carries (hundreds of P300 codes must not hide them).
    if data.marks:
        xs = [p for t, _ in data.marks for p in (t + local, t + local, None)]
        ys = [p for _ in data.marks for p in (0.0, 1.0, None)]
        hover = [h for _, v in data.marks for h in (f"your mark: {html.escape(v)}",) * 2 + ("",)]
        fig.add_trace(
            go.Scatter(
                x=xs, y=ys, mode="lines", name=f"your marks ({len(data.marks)})", legendgroup="marks",
                legendgrouptitle_text="your marks", line={"width": 2.5, "color": MARK_COLOR},
                hoverinfo="text", hovertext=hover,
            ),
            row=1, col=1,
        )  # fmt: skip
        marker_traces += 1
        for t, value in data.marks:
            fig.add_annotation(
                x=t + local, y=1.0, yref="y", text=f"<b>{marker_label(value)}</b>",
                hovertext=html.escape(value), showarrow=False, yanchor="bottom",
                font={"size": 11, "color": MARK_COLOR}, row=1, col=1,
            )  # fmt: skip
    if not dense:
        for t, value in data.markers:
            fig.add_annotation(
                x=t + local, y=1.0, yref="y", text=marker_label(value), hovertext=html.escape(value),
                showarrow=False, yanchor="bottom", font={"size": 10}, row=1, col=1,
            )  # fmt: skip
    # One shape per period across both rows (y in paper units), below the lines.
    shaded = [(a, b, "#999999", 0.35) for a, b in data.gaps]
    shaded += [(a, b, "#4a90d9", 0.18) for a, b in data.paused]
    shaded += [(a, b, NOT_KEPT_COLOR, 0.3) for a, b in data.missing.spans_ms]
    fig.update_layout(shapes=[
        {"type": "rect", "xref": "x", "yref": "paper", "x0": a + local, "x1": b + local, "y0": 0, "y1": 1,
         "fillcolor": color, "opacity": opacity, "line": {"width": 0}, "layer": "below"}
        for a, b, color, opacity in shaded
    ])  # fmt: skip
    band_traces = len(views) * len(data.bands)
    for vi in range(len(views)):
        vis = [i // max(1, len(data.bands)) == vi for i in range(band_traces)]
        visible_sets.append(vis + [True] * (n_traces - band_traces) + [True] * marker_traces)
    if len(views) > 1 and band_traces:
        fig.update_layout(
            updatemenus=[{
                "type": "buttons", "direction": "right", "x": 0, "y": 1.13, "xanchor": "left",
                "showactive": True,
                "buttons": [
                    {"label": "mean of channels" if v == "mean" else v, "method": "restyle",
                     "args": [{"visible": visible_sets[i]}]}
                    for i, v in enumerate(views)
                ],
            }]
        )  # fmt: skip
    fig.update_layout(
        template="plotly_white", height=560, margin={"l": 60, "r": 20, "t": 70, "b": 40},
        hovermode="x unified", dragmode="zoom",
        legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
    )  # fmt: skip
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title_text="relative band power", fixedrange=True,
                     row=1, col=1)  # fmt: skip
    fig.update_yaxes(fixedrange=True, title_text="quality", autorange="reversed", row=2, col=1)
    # The axis spans everything drawn: windows and screenshots (the strip follows this axis).
    ends = [t for t in (data.window_ms[:1].tolist() + data.window_ms[-1:].tolist())]
    ends += [data.shots[0][0], data.shots[-1][0]] if data.shots else []
    ends += [t for span in data.missing.spans_ms for t in span]
    ends += [t for t, _ in data.marks[:1] + data.marks[-1:]]  # a mark before the first window stays in view
    if ends:
        pad = max(1000.0, (max(ends) - min(ends)) * 0.01)
        fig.update_xaxes(range=[min(ends) + local - pad, max(ends) + local + pad])
    fig.update_xaxes(type="date", row=1, col=1)
    fig.update_xaxes(type="date", title_text="local time", row=2, col=1)
    return fig, local


def marker_label(value: str) -> str:
    """A marker's value as plot text: at most MAX_LABEL_CHARS characters, HTML-escaped (plotly
    reads tags in text, so `<event .../>` would otherwise vanish or break the label)."""
    short = value if len(value) <= MAX_LABEL_CHARS else value[: MAX_LABEL_CHARS - 1] + "…"
    return html.escape(short)


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
                moving_share = float(_nanmean(moved, axis=0))
            rel = data.relative[sel]
            if np.isfinite(rel).any():
                means = _nanmean(rel.reshape(-1, rel.shape[-1]), axis=0)
            good = data.good[sel]
            if np.isfinite(good).any():
                good_share = float(_nanmean(good.ravel(), axis=0))
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
    figure_json = fig.to_json().replace("</", "<\\/")  # safe inside <script>
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
        moving_share=None if not data.has_motion else f"{float(_nanmean(data.moving, axis=0)):.0%}",
        heart_rate=_bpm(data.heart_rate_in(-math.inf, math.inf)),
        block_label=block_label,
        shots=shots,
        n_markers=len(data.markers),
        n_marks=len(data.marks),
        samples_here=data.samples,
        missing=data.missing.describe(s["capture_id"]) if data.missing.any else None,
        n_gaps=len(data.gaps),
        n_paused=len(data.paused),
        figure_json=figure_json,
        plotly_js=vendored_plotly_js(),
        plotly_version=PLOTLY_JS_VERSION,
        generated=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    )
