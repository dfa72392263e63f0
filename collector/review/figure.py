"""The review page's plotly figure, written as plotly.js JSON directly.

    build_figure(data) -> (figure dict, local offset ms)   band powers, quality band, markers, gaps, pauses
    figure_json(figure) -> str                              the JSON the page hands to Plotly.newPlot

The figure is the one the Python plotly package made before (`make_subplots(rows=2, cols=1,
shared_xaxes=True, row_heights=[0.8, 0.2], vertical_spacing=0.05)`, template `plotly_white`), but
built as plain dicts: importing and validating through `plotly.graph_objects` cost about as much
as reading the whole capture. The `plotly_white` template is vendored next to plotly.js
(collector/templates/plotly-white-template.json); numpy arrays are written as plotly.js typed
arrays (`{"dtype", "bdata", "shape"}`) as plotly's own encoder does. tests/unit/test_review_unit.py
checks that the Python plotly accepts the figure and writes the same JSON for it.

The band powers are the chunk artifacts' own per-window relative powers, averaged into at most
`MAX_POINTS` evenly spaced time bins (x0 + i * dx, float32 values) so that a 2-hour capture stays
light and fluid; zooming shows the bins, not new data. Times on the page are the local wall-clock
time of the machine that builds it.
"""

from __future__ import annotations

import base64
import html
import json
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import msgspec
import numpy as np

from collector.review.data import ReviewData

TEMPLATE_FILE = "plotly-white-template.json"  # plotly's `plotly_white`, as the Python plotly writes it
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
MOVEMENT_ROW = "head still"  # the quality band's row from the accelerometer/gyroscope
# make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.8, 0.2], vertical_spacing=0.05)
_ROW_DOMAINS = ([0.24, 1.0], [0.0, 0.19])
_TYPED = {"float32": "f4", "float64": "f8"}  # plotly.js typed-array names of the dtypes we write


def nanmean(values: np.ndarray, axis) -> np.ndarray:
    """Mean over `axis` ignoring NaN; NaN (without a warning) where there is nothing to average."""
    ok = ~np.isnan(values)
    counts = ok.sum(axis=axis)
    sums = np.where(ok, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def _f4(values: np.ndarray) -> np.ndarray:
    """float32 for the page: numpy arrays are written as base64 typed arrays, half the bytes of
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


def marker_label(value: str) -> str:
    """A marker's value as plot text: at most MAX_LABEL_CHARS characters, HTML-escaped (plotly
    reads tags in text, so `<event .../>` would otherwise vanish or break the label)."""
    short = value if len(value) <= MAX_LABEL_CHARS else value[: MAX_LABEL_CHARS - 1] + "…"
    return html.escape(short)


@cache
def plotly_white() -> dict[str, Any]:
    """plotly's `plotly_white` template (layout defaults and per-trace-type styles), as JSON."""
    text = (resources.files("collector.templates") / TEMPLATE_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def _scatter(row: int, **props: Any) -> dict[str, Any]:
    axes = {"xaxis": "x", "yaxis": "y"} if row == 1 else {"xaxis": "x2", "yaxis": "y2"}
    return {**props, "type": "scatter", **axes}


def _note(x: float, text: str, hover: str, font: dict[str, Any]) -> dict[str, Any]:
    """A label above the top of row 1 at time x (add_annotation(..., row=1, col=1) in plotly)."""
    return {"font": font, "hovertext": hover, "showarrow": False, "text": text, "x": x, "xref": "x",
            "y": 1.0, "yanchor": "bottom", "yref": "y"}  # fmt: skip


def build_figure(data: ReviewData) -> tuple[dict[str, Any], float]:
    """The figure as plotly.js JSON-ready dicts (numpy arrays inside; see `figure_json`) and the
    local UTC offset in ms added to every time. Row 1: relative band powers (mean, or one channel
    via the buttons) with markers as vertical lines; row 2: the share of good-quality windows per
    channel; gaps and paused periods shaded across both. x is local wall-clock time."""
    traces: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    first_ms = data.window_ms[0] if len(data.window_ms) else (data.shots[0][0] if data.shots else 0)
    local = _local_offset_ms(first_ms)
    views = ["mean"] + data.channels
    n_traces = 0
    if len(data.window_ms):
        centres, rel, good = _bins(data)
        # Bins are evenly spaced: x0 + i * dx (ms on a date axis) instead of an x array per trace.
        x0 = float(centres[0] + local)
        dx = float(centres[1] - centres[0]) if len(centres) > 1 else 1.0
        for vi, view in enumerate(views):
            values = nanmean(rel, axis=1) if view == "mean" else rel[:, vi - 1, :]
            for bi, band in enumerate(data.bands):
                line: dict[str, Any] = {"width": 1.4}
                if BAND_COLORS.get(band):
                    line["color"] = BAND_COLORS[band]
                traces.append(_scatter(
                    1, connectgaps=False, dx=dx, hovertemplate=f"{band} %{{y:.1%}}<extra>{view}</extra>",
                    legendgroup=band, line=line, mode="lines", name=band, showlegend=vi == 0,
                    visible=vi == 0, x0=x0, y=_f4(values[:, bi]),
                ))  # fmt: skip
        rows_y = data.channels + ([MOVEMENT_ROW] if data.has_motion else [])
        traces.append({
            "colorscale": [[0, "#d73027"], [0.5, "#fee08b"], [1, "#1a9850"]], "dx": dx,
            "hovertemplate": "%{y}: %{z:.0%} good (movement: still) windows<extra></extra>",
            "name": "signal quality", "showscale": False, "x0": x0, "y": rows_y, "z": _f4(good.T),
            "zmax": 1, "zmin": 0, "type": "heatmap", "xaxis": "x2", "yaxis": "y2",
        })  # fmt: skip
        n_traces = len(traces)
    # Markers: one trace per value (its legend entry is its label), drawn as vertical lines. Long
    # values (e.g. an XML marker) are shortened on the plot and in the legend; hover shows them whole.
    marker_values = sorted({v for _, v in data.markers})
    dense = len(data.markers) > MAX_LABELLED_MARKERS  # many markers: fainter, so the powers stay readable
    for i, value in enumerate(marker_values):
        ts = np.asarray([t + local for t, v in data.markers if v == value], dtype=float)
        xs = np.repeat(ts, 3)  # each marker a segment from 0 to 1, NaN (no line) to the next
        ys = np.tile(np.asarray([0.0, 1.0, np.nan], dtype=np.float32), len(ts))
        group_title = {"legendgrouptitle": {"text": "stimulus markers"}} if i == 0 else {}
        traces.append(_scatter(
            1, hoverinfo="text", hovertext=f"marker {html.escape(value)}", legendgroup="markers",
            **group_title, line={"color": MARKER_COLORS[i % len(MARKER_COLORS)], "dash": "dot", "width": 1},
            mode="lines", name=f"marker {marker_label(value)}", opacity=0.35 if dense else 0.9, x=xs, y=ys,
        ))  # fmt: skip
    marker_traces = len(marker_values)
    # The user's own marks: one legend entry, solid and thick, always labelled, however many
    # stimulus markers a recording carries (hundreds of P300 codes must not hide them).
    if data.marks:
        xs_marks = [p for t, _ in data.marks for p in (t + local, t + local, None)]
        ys_marks = [p for _ in data.marks for p in (0.0, 1.0, None)]
        hover = [h for _, v in data.marks for h in (f"your mark: {html.escape(v)}",) * 2 + ("",)]
        traces.append(_scatter(
            1, hoverinfo="text", hovertext=hover, legendgroup="marks",
            legendgrouptitle={"text": "your marks"}, line={"color": MARK_COLOR, "width": 2.5}, mode="lines",
            name=f"your marks ({len(data.marks)})", x=xs_marks, y=ys_marks,
        ))  # fmt: skip
        marker_traces += 1
        for t, value in data.marks:
            annotations.append(_note(t + local, f"<b>{marker_label(value)}</b>", html.escape(value),
                                     {"color": MARK_COLOR, "size": 11}))  # fmt: skip
    if not dense:
        for t, value in data.markers:
            annotations.append(_note(t + local, marker_label(value), html.escape(value), {"size": 10}))
    # One shape per period across both rows (y in paper units), below the lines.
    shaded = [(a, b, "#999999", 0.35) for a, b in data.gaps]
    shaded += [(a, b, "#4a90d9", 0.18) for a, b in data.paused]
    shaded += [(a, b, NOT_KEPT_COLOR, 0.3) for a, b in data.missing.spans_ms]
    shapes = [
        {"fillcolor": color, "layer": "below", "line": {"width": 0}, "opacity": opacity, "type": "rect",
         "x0": a + local, "x1": b + local, "xref": "x", "y0": 0, "y1": 1, "yref": "paper"}
        for a, b, color, opacity in shaded
    ]  # fmt: skip
    xaxis: dict[str, Any] = {"anchor": "y", "domain": [0.0, 1.0], "matches": "x2", "showticklabels": False}
    xaxis2: dict[str, Any] = {"anchor": "y2", "domain": [0.0, 1.0]}
    # The axis spans everything drawn: windows and screenshots (the strip follows this axis).
    ends = [t for t in (data.window_ms[:1].tolist() + data.window_ms[-1:].tolist())]
    ends += [data.shots[0][0], data.shots[-1][0]] if data.shots else []
    ends += [t for span in data.missing.spans_ms for t in span]
    ends += [t for t, _ in data.marks[:1] + data.marks[-1:]]  # a mark before the first window stays in view
    if ends:
        pad = max(1000.0, (max(ends) - min(ends)) * 0.01)
        xaxis["range"] = xaxis2["range"] = [min(ends) + local - pad, max(ends) + local + pad]
    xaxis["type"] = "date"
    xaxis2.update(title={"text": "local time"}, type="date")
    layout: dict[str, Any] = {
        "template": plotly_white(),
        "xaxis": xaxis,
        "yaxis": {"anchor": "x", "domain": _ROW_DOMAINS[0], "fixedrange": True, "range": [0, 1.05],
                  "tickformat": ".0%", "title": {"text": "relative band power"}},
        "xaxis2": xaxis2,
        "yaxis2": {"anchor": "x2", "autorange": "reversed", "domain": _ROW_DOMAINS[1], "fixedrange": True,
                   "title": {"text": "quality"}},
    }  # fmt: skip
    if annotations:
        layout["annotations"] = annotations
    if shapes:
        layout["shapes"] = shapes
    band_traces = len(views) * len(data.bands)
    if len(views) > 1 and band_traces:
        buttons = []
        for vi, view in enumerate(views):
            vis = [i // max(1, len(data.bands)) == vi for i in range(band_traces)]
            vis += [True] * (n_traces - band_traces) + [True] * marker_traces
            label = "mean of channels" if view == "mean" else view
            buttons.append({"args": [{"visible": vis}], "label": label, "method": "restyle"})
        layout["updatemenus"] = [{"buttons": buttons, "direction": "right", "showactive": True,
                                  "type": "buttons", "x": 0, "xanchor": "left", "y": 1.13}]  # fmt: skip
    layout.update(
        dragmode="zoom", height=560, hovermode="x unified",
        legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"},
        margin={"b": 40, "l": 60, "r": 20, "t": 70},
    )  # fmt: skip
    return {"data": traces, "layout": layout}, local


def _typed_array(value: Any) -> Any:
    """The encoder's hook: a numpy array as plotly.js's typed array (as plotly's own encoder)."""
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return value.tolist()
        spec = {"dtype": _TYPED[str(value.dtype)], "bdata": base64.b64encode(value).decode("ascii")}
        if value.ndim > 1:
            spec["shape"] = str(value.shape)[1:-1]
        return spec
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def figure_json(figure: dict[str, Any]) -> str:
    """The figure as JSON for the page, safe inside a <script> element (no `</`); a NaN or
    infinite number outside the typed arrays is written as null (as plotly's encoder does)."""
    return msgspec.json.encode(figure, enc_hook=_typed_array).decode("utf-8").replace("</", "<\\/")
