"""After a real run (LSL outlet, Xvfb screenshots, sandbox over loopback): sessions, review, export.

One capture is made for the module: `collector run` on the bundled Muse recording played as a
live LSL stream (with its marker stream), screenshots of a real Xvfb display whose colour
changes, delivered to the sandbox. Then each command is checked against what the sandbox stored.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from collector.devices.player import XdfPlayer
from collector.sandbox import SandboxServer

ROOT = Path(__file__).resolve().parents[2]
MUSE_XDF = ROOT / "collector" / "data" / "muse-p300-subject1.xdf"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [pytest.mark.lsl, pytest.mark.xvfb, pytest.mark.slow]


def collector(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args], env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """A real run with EEG + markers + screenshots, delivered to a real sandbox."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt install xvfb)")
    from xserver import Painter, XlibPainter, Xvfb, have_tk

    tmp = tmp_path_factory.mktemp("review")
    sandbox = SandboxServer(tmp / "sandbox", port=0)
    sandbox.start()
    server = Xvfb(800, 600)
    painter = Painter(server.display) if have_tk() else XlibPainter(server.display)
    name = f"review-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLESSON_", "COLLECTOR_"))}
    env.update(OPENLESSON_API_KEY=sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url, PYTHONPATH=str(ROOT))
    spool = tmp / "spool"
    try:
        painter("fill #ff0000")
        with XdfPlayer(MUSE_XDF, stream_name=name, source_id=name, speed=1.0):
            proc = subprocess.Popen(
                [sys.executable, "-m", "collector", "run", "-w", sandbox.workspace_id,
                 "-b", sandbox.block_ids[0], "--stream-name", name, "--markers", f"{name}-markers",
                 "--screen", "on", "--screen-interval", "1", "--duration", "8", "--chunk-seconds", "3",
                 "--spool", str(spool)],
                env={**env, "DISPLAY": server.display}, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            for color in ("#00c000", "#0000ff", "#ffff00"):
                time.sleep(2.0)
                painter("fill " + color)
            _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        rows = sandbox.evidence(sandbox.workspace_id)
        artifacts = {r["id"]: sandbox.read_artifact(r["id"]) for r in rows}
        blocks = sandbox.block_ids
        yield {"env": env, "spool": spool, "rows": rows, "artifacts": artifacts, "sandbox": sandbox,
               "tmp": tmp, "block_id": blocks[0], "stderr": stderr}  # fmt: skip
    finally:
        painter.stop()
        server.stop()
        sandbox.stop()


def delivered_eeg(capture) -> tuple[list[dict], dict]:
    chunks, summary = [], None
    for r in capture["rows"]:
        if r["type"] != "eeg":
            continue
        body = json.loads(capture["artifacts"][r["id"]])
        if r["metadata"].get("kind") == "session-summary":
            summary = body
        else:
            chunks.append(body)
    chunks.sort(key=lambda c: c["chunk_index"])
    return chunks, summary


def test_sessions_json_lists_the_run_with_the_right_fields(capture):
    proc = collector(["sessions", "--json", "--spool", str(capture["spool"])], capture["env"])
    assert proc.returncode == 0, proc.stderr
    [s] = json.loads(proc.stdout)
    chunks, summary = delivered_eeg(capture)
    shots = [r for r in capture["rows"] if r["type"] == "screen"]
    assert s["kind"] == "run" and s["capture_id"] == capture["rows"][0]["metadata"]["capture_id"]
    assert s["workspace_id"] == capture["sandbox"].workspace_id and s["block_id"] == capture["block_id"]
    assert s["block_title"]  # resolved online, remembered
    assert s["samples"] == sum(len(c["samples"]) for c in chunks) > 5 * 256
    assert s["markers"] == sum(len(c["events"]) for c in chunks) > 0
    assert s["screenshots"] == len(shots) >= 3
    assert s["delivered"] == len(capture["rows"]) and s["pending"] == 0 and s["failed"] == 0
    assert s["duration_s"] == pytest.approx(summary["duration_s"], abs=1.0)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", s["started_at"])
    assert s["kept_items"] == len(capture["rows"])
    # The summary was posted last, and describes the same capture.
    assert capture["rows"][-1]["metadata"]["kind"] == "session-summary"
    assert summary["totals"]["screenshots"] == len(shots) and summary["kind"] == "run"


def test_summary_counts_the_skipped_screenshots_the_end_line_counts(capture):
    """The display stays one colour for its last seconds: frames skipped after the last one sent
    are in no frame's metadata, yet the summary must say what the run's end line says."""
    _, summary = delivered_eeg(capture)
    [said] = re.findall(r"\((\d+) near-identical skipped\)", capture["stderr"])
    assert summary["totals"]["screenshots_skipped"] == int(said) > 0


NETWORK_REF = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|ftp:|wss?:)?//""", re.I)


def without_scripts(html: str) -> str:
    return re.sub(r"<script\b[^>]*>.*?</script>", "", html, flags=re.S | re.I)


def chromium_render(page: Path, tmp: Path) -> tuple[str, list[str]]:
    """(DOM after scripts ran, console lines) from headless Chromium with every proxy dead."""
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--user-data-dir={tmp / 'chromium'}",
         "--proxy-server=127.0.0.1:9", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000",
         "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt install chromium)")
def test_review_page_renders_offline_with_one_image_per_kept_screenshot(capture):
    out = capture["tmp"] / "review.html"
    args = ["review", "--last", "--out", str(out), "--spool", str(capture["spool"])]
    proc = collector(args, capture["env"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out.resolve())  # prints the path
    assert oct(out.stat().st_mode & 0o777) == "0o600"  # it holds EEG and screenshots
    html = out.read_text(encoding="utf-8")
    # Nothing to fetch: no src/href to a network address in the markup, before or after the
    # scripts ran (plotly.js itself mentions URLs in its code; it is inlined, so it is not markup).
    assert not NETWORK_REF.search(without_scripts(html))
    assert "default-src 'none'" in html  # and the page's CSP forbids any fetch anyway
    dom, console = chromium_render(out, capture["tmp"])
    assert not NETWORK_REF.search(without_scripts(dom))
    errors = [line for line in console if re.search(r"Uncaught|Error|Refused|Failed", line)]
    assert not errors, errors
    assert 'data-rendered="yes"' in dom  # plotly drew the figure (the page's script ran to the end)
    assert dom.count('class="main-svg"') >= 2
    shots = [r for r in capture["rows"] if r["type"] == "screen"]
    imgs = re.findall(r'<img class="shot" src="data:image/webp;base64,', dom)
    assert len(imgs) == len(shots) >= 3
    # They were placed on the time axis (plotly's own axis gives their left offsets).
    lefts = [float(m) for m in re.findall(r'<img class="shot"[^>]*style="left: ([0-9.]+)px', dom)]
    assert len(lefts) == len(shots) and lefts == sorted(lefts) and lefts[-1] > lefts[0]
    for word in ("Averages per", "delta", "good quality", "all delivered"):
        assert word in html


def test_export_csv_holds_exactly_the_delivered_samples_and_markers(capture):
    out = capture["tmp"] / "capture.csv"
    proc = collector(
        ["export", "--format", "csv", "--out", str(out), "--spool", str(capture["spool"])], capture["env"]
    )
    assert proc.returncode == 0, proc.stderr
    chunks, _ = delivered_eeg(capture)
    import pandas as pd

    table = pd.read_csv(out, dtype={"Marker": str})
    labels = chunks[0]["device"]["channels"]
    assert list(table.columns) == ["timestamps", *labels, "Marker"]  # muselsl's layout
    samples = np.array([row for c in chunks for row in c["samples"]])
    times_s = np.concatenate([(c["t0_ms"] + np.asarray(c["times_ms"])) / 1000 for c in chunks])
    assert len(table) == len(samples)
    np.testing.assert_array_equal(table[labels].to_numpy(), samples)  # same 0.001 µV values
    np.testing.assert_allclose(table["timestamps"].to_numpy(), times_s, atol=1e-6, rtol=0)
    events = sorted((e["time_ms"] / 1000, e["value"]) for c in chunks for e in c["events"])
    marked = table[table["Marker"] != "0"]
    assert sorted(v for cell in marked["Marker"] for v in cell.split("|")) == sorted(v for _, v in events)
    for t, value in events:  # each marker sits on the sample nearest to it
        row = int(np.argmin(np.abs(times_s - t)))
        assert value in table["Marker"].iloc[row].split("|")


def test_export_edf_reads_back_in_mne_with_the_same_samples_and_annotations(capture):
    mne = pytest.importorskip("mne")
    out = capture["tmp"] / "capture.edf"
    proc = collector(
        ["export", "--last", "--format", "edf", "--out", str(out), "--spool", str(capture["spool"])],
        capture["env"],
    )
    assert proc.returncode == 0, proc.stderr
    chunks, _ = delivered_eeg(capture)
    samples = np.array([row for c in chunks for row in c["samples"]])
    times_s = np.concatenate([(c["t0_ms"] + np.asarray(c["times_ms"])) / 1000 for c in chunks])
    raw = mne.io.read_raw_edf(out, preload=True, verbose="error")
    labels = chunks[0]["device"]["channels"]
    assert raw.ch_names == labels and raw.info["sfreq"] == 256.0
    # MNE reads the start to the second (it ignores EDF+'s subsecond offset); edfio keeps it exactly.
    assert raw.info["meas_date"].timestamp() == np.floor(times_s[0])
    from edfio import read_edf

    edf = read_edf(out)
    start = datetime.combine(edf.startdate, edf.starttime, tzinfo=timezone.utc).timestamp()
    assert abs(start - times_s[0]) < 1e-6
    data_uv = raw.get_data()[:, : len(samples)].T * 1e6
    # EDF is 16-bit: each channel's step is (max - min) / 65535 over its own range (0 included).
    lo = np.minimum(samples.min(axis=0), 0)
    hi = np.maximum(samples.max(axis=0), 0)
    step = (hi - lo) / 65535
    assert np.all(np.abs(data_uv - samples) <= step / 2 + 1e-6), np.abs(data_uv - samples).max(axis=0)
    events = sorted((e["time_ms"] / 1000 - times_s[0], e["value"]) for c in chunks for e in c["events"])
    marks = [(a["onset"], a["description"]) for a in raw.annotations if a["description"] != "BAD_ACQ_SKIP"]
    assert [v for _, v in marks] == [v for _, v in events]
    np.testing.assert_allclose([t for t, _ in marks], [t for t, _ in events], atol=1e-4)
    # Only the completion of the last data record is marked as not acquired (the run had no gap).
    skips = [a for a in raw.annotations if a["description"] == "BAD_ACQ_SKIP"]
    assert all(abs(a["onset"] - len(samples) / 256) < 1e-6 for a in skips)


def test_review_and_export_say_what_to_do_without_a_capture(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLESSON_", "COLLECTOR_"))}
    env["PYTHONPATH"] = str(ROOT)
    for args in (["review", "--last"], ["export", "--format", "csv", "--out", str(tmp_path / "x.csv")]):
        proc = collector([*args, "--spool", str(tmp_path / "nothing")], env)
        assert proc.returncode == 2 and "--spool" in proc.stderr and "Traceback" not in proc.stderr


def test_a_gap_stays_a_gap_in_csv_and_edf(tmp_path):
    """A recording with a 3 s hole: CSV rows are the samples only; EDF+ marks the hole BAD_ACQ_SKIP."""
    mne = pytest.importorskip("mne")
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_xdf import synthetic_eeg, synthetic_markers, write_xdf

    eeg = synthetic_eeg(20.0)
    keep = (eeg.timestamps - eeg.timestamps[0] < 8.0) | (eeg.timestamps - eeg.timestamps[0] >= 11.0)
    eeg.timestamps, eeg.values = eeg.timestamps[keep], eeg.values[keep]
    xdf = tmp_path / "gap.xdf"
    write_xdf(xdf, [eeg, synthetic_markers(20.0, every_s=1.0)])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLESSON_", "COLLECTOR_"))}
    env["PYTHONPATH"] = str(ROOT)
    spool = str(tmp_path / "spool")
    proc = collector(
        ["replay", str(xdf), "-w", str(uuid.uuid4()), "--speed", "max", "--offline", "--spool", spool], env
    )
    assert proc.returncode == 0, proc.stderr
    csv_path, edf_path = tmp_path / "gap.csv", tmp_path / "gap.edf"
    for fmt, path in (("csv", csv_path), ("edf", edf_path)):
        proc = collector(["export", "--format", fmt, "--out", str(path), "--spool", spool], env)
        assert proc.returncode == 0, proc.stderr
    import pandas as pd

    table = pd.read_csv(csv_path)
    assert len(table) == keep.sum() == 17 * 256  # no invented rows
    np.testing.assert_allclose(table[["TP9", "AF7", "AF8", "TP10"]].to_numpy(), eeg.values, atol=5e-4)
    steps = np.diff(table["timestamps"].to_numpy())
    assert steps.max() == pytest.approx(3.0 + 1 / 256, abs=2e-3) and (steps > 0.5).sum() == 1
    raw = mne.io.read_raw_edf(edf_path, preload=True, verbose="error")
    skips = [a for a in raw.annotations if a["description"] == "BAD_ACQ_SKIP"]
    first = skips[0]
    assert first["onset"] == pytest.approx(8.0, abs=1 / 256) and first["duration"] == pytest.approx(
        3.0, abs=2 / 256
    )
    # Outside the skipped stretches, the EDF holds exactly the recorded samples (to 16-bit resolution).
    good = raw.get_data(reject_by_annotation="omit").T * 1e6
    assert good.shape == (17 * 256, 4)
    step = (np.maximum(eeg.values.max(0), 0) - np.minimum(eeg.values.min(0), 0)) / 65535
    assert np.all(np.abs(good - eeg.values) <= step / 2 + 1e-3)
    assert sum(a["description"] != "BAD_ACQ_SKIP" for a in raw.annotations) == 20


def test_two_markers_on_one_sample_are_both_exported_joined_with_a_bar(tmp_path):
    """Two markers with one stamp, two 1 ms apart (the same sample at 256 Hz) and one alone: the
    CSV's Marker column holds each pair on its sample joined with "|", and EDF+ every one."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_xdf import XdfStream, synthetic_eeg, write_xdf

    eeg = synthetic_eeg(10.0)  # stamps 1000.0 + k / 256
    stamps = np.array([1002.0, 1002.0, 1005.0, 1005.001, 1007.5])
    values = ["left", "right", "x", "y", "solo"]
    markers = XdfStream("Pairs", "Markers", 0.0, ["Marker"], stamps, values, source_id="pairs", unit="")
    xdf = tmp_path / "pairs.xdf"
    write_xdf(xdf, [eeg, markers])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLESSON_", "COLLECTOR_"))}
    env["PYTHONPATH"] = str(ROOT)
    spool = str(tmp_path / "spool")
    proc = collector(
        ["replay", str(xdf), "-w", str(uuid.uuid4()), "--speed", "max", "--offline", "--spool", spool], env
    )
    assert proc.returncode == 0, proc.stderr
    csv_path, edf_path = tmp_path / "pairs.csv", tmp_path / "pairs.edf"
    for fmt, path in (("csv", csv_path), ("edf", edf_path)):
        proc = collector(["export", "--format", fmt, "--out", str(path), "--spool", spool], env)
        assert proc.returncode == 0, proc.stderr
    import pandas as pd

    table = pd.read_csv(csv_path, dtype={"Marker": str})
    assert len(table) == 10 * 256
    marked = table.index[table["Marker"] != "0"].tolist()
    assert marked == [512, 1280, 1920]  # the samples nearest to 2.0, 5.0 and 7.5 s
    assert table["Marker"][marked].tolist() == ["left|right", "x|y", "solo"], "a marker was dropped"
    from edfio import read_edf

    notes = [a.text for a in read_edf(edf_path).annotations if a.text != "BAD_ACQ_SKIP"]
    assert sorted(notes) == sorted(values)
