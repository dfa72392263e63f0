"""Pure logic of the review page and the session summary (in-process, synthetic windows)."""

from __future__ import annotations

import base64
import json
from importlib import resources

import numpy as np
import pytest

from collector.core.summary import SummaryBuilder
from collector.review.figure import MAX_POINTS, _bins, build_figure, figure_json, plotly_white
from collector.review.page import PLOTLY_JS_VERSION, ReviewData, averages_table, vendored_plotly_js

CHANNELS = ["TP9", "AF7"]
BANDS = ["delta", "theta", "alpha", "beta", "gamma"]


def synthetic(n_windows: int, step_ms: float = 500.0) -> ReviewData:
    t = 1_700_000_000_000 + np.arange(n_windows) * step_ms
    rel = np.full((n_windows, 2, 5), 0.2)
    rel[:, 0, 2] = 0.4  # TP9 alpha
    rel[: n_windows // 2, :, :] = np.nan  # first half: no powers (e.g. a gap)
    good = np.ones((n_windows, 2))
    good[:, 1] = 0.0
    return ReviewData(
        session={"capture_id": "c", "kind": "run"}, channels=CHANNELS, bands=BANDS, window_ms=t,
        relative=rel, good=good, markers=[(float(t[10]), "1"), (float(t[20]), "2")],
        gaps=[(float(t[1]), float(t[3]))], paused=[(float(t[5]), float(t[8]))], eeg_chunks=1,
    )  # fmt: skip


def test_two_hours_of_windows_are_binned_to_at_most_max_points():
    data = synthetic(14_400)  # 2 h at 0.5 s
    centres, rel, good = _bins(data)
    assert len(centres) <= MAX_POINTS + 1 and rel.shape[1:] == (2, 5)
    assert np.all(np.isnan(rel[: len(rel) // 2 - 1]))  # no powers there: a hole in the line, not 0
    np.testing.assert_allclose(rel[-1, 0, 2], 0.4)
    np.testing.assert_allclose(good[:, 0], 1.0) and np.testing.assert_allclose(good[:, 1], 0.0)


def test_figure_has_a_view_per_channel_markers_gaps_and_pauses():
    fig, _ = build_figure(synthetic(200))
    names = [t["name"] for t in fig["data"]]
    assert names.count("alpha") == 3  # mean + 2 channels
    assert {"marker 1", "marker 2", "signal quality"} <= set(names)
    shapes = fig["layout"]["shapes"]
    assert len(shapes) == 2  # one gap, one pause
    assert {s["fillcolor"] for s in shapes} == {"#999999", "#4a90d9"}
    [menu] = fig["layout"]["updatemenus"]
    assert [b["label"] for b in menu["buttons"]] == ["mean of channels", "TP9", "AF7"]
    tp9 = menu["buttons"][1]["args"][0]["visible"]
    shown = [t["name"] for t, v in zip(fig["data"], tp9, strict=True) if v]
    assert shown.count("alpha") == 1 and "marker 1" in shown and "signal quality" in shown
    assert [a["text"] for a in fig["layout"]["annotations"]] == ["1", "2"]  # few markers: labelled


def test_averages_table_uses_blocks_that_fit_24_rows():
    label, rows = averages_table(synthetic(14_400))
    assert label == "5 min" and len(rows) == 24
    assert rows[-1]["bands"][2] == "30.0%"  # (0.4 + 0.2) / 2 channels
    assert rows[-1]["good"] == "50%" and rows[0]["bands"] == [None] * 5


def chunk(t0: float, n_windows: int, events=(), gaps=()) -> dict:
    windows = [
        {"end_ms": t0 + 500 * i, "relative": {ch: dict.fromkeys(BANDS, 0.2) for ch in CHANNELS},
         "quality": {"gap": False, "ok": True, "channels": {"TP9": {"flat": False}, "AF7": {"flat": True}}}}
        for i in range(n_windows)
    ]  # fmt: skip
    return {
        "device": {"name": "x", "channels": CHANNELS, "sfreq": 256}, "bands_hz": dict.fromkeys(BANDS, [0, 1]),
        "t0_ms": t0, "times_ms": [0.0, 500.0 * n_windows], "samples": [[0, 0], [0, 0]], "windows": windows,
        "events": [{"time_ms": t, "value": v} for t, v in events], "gaps": list(gaps),
    }  # fmt: skip


def test_summary_builder_counts_minutes_markers_gaps_and_pauses():
    b = SummaryBuilder(capture_id="c", kind="replay", collector_version="t")
    t0 = 1_700_000_080_000.0  # 40 s into a wall-clock minute
    b.add_chunk(chunk(t0, 60, events=[(t0 + 1000, "go")], gaps=[{"start_ms": t0 + 5, "end_ms": t0 + 9}]))
    b.add_screenshot(int(t0 + 25_000), skipped_before=3, paused_periods=[(1, 2)])
    s = b.build()
    assert [m["windows"] for m in s["minutes"]] == [40, 20]  # windows split at the wall-clock minute
    assert s["minutes"][0]["markers"] == {"go": 1} and s["minutes"][1]["screenshots"] == 1
    assert s["channels_good_share"] == {"TP9": 1.0, "AF7": 0.0}
    assert s["band_powers"] == dict.fromkeys(BANDS, 0.2)
    assert s["gaps"] == [{"start_ms": t0 + 5, "end_ms": t0 + 9}] and s["paused_periods"] == [
        {"start_ms": 1, "end_ms": 2}
    ]
    assert s["totals"]["screenshots_skipped"] == 3 and s["totals"]["windows_with_powers"] == 60
    fields, data = b.evidence("Muse")
    assert json.loads(data)["kind"] == "replay" and fields.metadata["kind"] == "session-summary"


def test_vendored_plotly_js_and_template_are_those_of_the_python_plotly_version():
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs_version

    # The figure JSON follows the Python plotly's schema and template: the page's plotly.js must
    # be the version that package is made for, and the vendored template the one it writes.
    assert PLOTLY_JS_VERSION == get_plotlyjs_version()
    head = vendored_plotly_js()[:300]
    assert f"plotly.js (cartesian - minified) v{PLOTLY_JS_VERSION}" in head
    licence = (resources.files("collector.templates") / "plotly-LICENSE.txt").read_text()
    assert licence.startswith("MIT License")
    written = json.loads(go.Figure(layout={"template": "plotly_white"}).to_json())["layout"]["template"]
    assert plotly_white() == written


def with_everything(n_windows: int) -> ReviewData:
    """`synthetic` plus what a figure can carry: motion, many markers, marks, screenshots, evicted EEG."""
    from collector.review.kept import Missing

    data = synthetic(n_windows)
    t = data.window_ms
    data.moving = np.where(np.arange(n_windows) % 7 == 0, 1.0, 0.0)
    data.moving[:3] = np.nan
    data.markers = [(float(t[i]), f"S{i % 5}") for i in range(0, n_windows, 3)]  # dense: > 40
    data.marks = [(float(t[0]) - 4000.0, "before </script> & <b>"), (float(t[-2]), "last")]
    data.shots = [(int(t[i]), "image/webp", b"x") for i in range(0, n_windows, 50)]
    data.missing = Missing(eeg_chunks=1, eeg_total=3, spans_ms=[(float(t[40]), float(t[60]))])
    return data


@pytest.mark.parametrize("make", [lambda: synthetic(200), lambda: with_everything(300)])
def test_the_python_plotly_accepts_the_figure_and_writes_the_same_json(make):
    """The figure is written without plotly.graph_objects (its import and checks cost ~0.5 s):
    plotly still validates every property of it and, given it, writes exactly our JSON."""
    import plotly.graph_objects as go

    fig, _ = build_figure(make())
    ours = json.loads(figure_json(fig))
    theirs = json.loads(go.Figure(fig).to_json())  # raises ValueError on any invalid property
    assert ours == theirs
    assert "</" not in figure_json(fig)  # safe inside the page's <script> element


def _array(spec) -> np.ndarray:
    """A trace array from the figure JSON: plotly's base64 typed array, or a plain list."""
    if isinstance(spec, dict):
        return np.frombuffer(base64.b64decode(spec["bdata"]), dtype=np.dtype(spec["dtype"]))
    return np.asarray(spec, dtype=float)


def test_two_hour_figure_is_compact_and_keeps_the_binned_values():
    data = synthetic(14_400)  # 2 h at 0.5 s, 2 channels: 15 band traces, the heatmap, 2 markers
    fig, local = build_figure(data)
    text = figure_json(fig)
    # Was 630 kB with float64 x and y arrays: float32 typed arrays, and x0/dx instead of x per trace.
    assert len(text) < 250_000
    figure = json.loads(text)
    centres, rel, good = _bins(data)
    alpha_tp9 = [t for t in figure["data"] if t["name"] == "alpha"][1]  # the TP9 view
    n = len(centres)
    x = alpha_tp9["x0"] + alpha_tp9["dx"] * np.arange(n)
    np.testing.assert_allclose(x, centres + local, atol=1.0)  # within a ms over 2 h
    y = _array(alpha_tp9["y"])
    assert len(y) == n and np.array_equal(np.isnan(y), np.isnan(rel[:, 0, 2]))  # holes stay holes
    np.testing.assert_allclose(y[~np.isnan(y)], rel[~np.isnan(y), 0, 2], rtol=1e-6)
    [heat] = [t for t in figure["data"] if t["type"] == "heatmap"]
    np.testing.assert_allclose(_array(heat["z"]).reshape(2, n), good.T, rtol=1e-6)
    marker = [t for t in figure["data"] if t["name"] == "marker 1"][0]
    np.testing.assert_allclose(_array(marker["x"]), [data.markers[0][0] + local] * 3)
    assert np.isnan(_array(marker["y"])[2])  # the break between two markers' lines
