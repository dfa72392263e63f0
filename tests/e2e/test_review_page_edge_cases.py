"""A new user's findings on `collector sessions`, `review` and `export` (issue 10), each through the
real command: real replays of the bundled recording into a real spool, the real sandbox server
on loopback, the files read back with pandas, MNE and edfio."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from collector.review.figure import _bins
from collector.review.page import ReviewData, averages_table

ROOT = Path(__file__).resolve().parents[2]
MUSE_XDF = ROOT / "collector" / "data" / "muse-p300-subject1.xdf"


def collector(args: list[str], env: dict, timeout: float = 180, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args], env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout, **kw,
    )  # fmt: skip


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLESSON_", "COLLECTOR_"))}
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def replay(env: dict, spool: Path, *extra: str, workspace: str | None = None) -> subprocess.CompletedProcess:
    ws = workspace or str(uuid.uuid4())
    args = ["replay", str(MUSE_XDF), "-w", ws, "--speed", "max", "--spool", str(spool)]
    proc = collector([*args, *extra], env)
    assert proc.returncode == 0, proc.stderr
    return proc


def sessions(env: dict, spool: Path) -> list[dict]:
    proc = collector(["sessions", "--json", "--spool", str(spool)], env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def evicted(tmp_path_factory):
    """The reviewer's case: a delivered replay, then an offline one into a spool so small that the
    first capture's oldest kept chunks are evicted to make room."""
    from collector.sandbox import SandboxServer

    tmp = tmp_path_factory.mktemp("evicted")
    sandbox = SandboxServer(tmp / "sandbox", port=0)
    sandbox.start()
    try:
        env = clean_env(OPENLESSON_API_KEY=sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url)
        profile = tmp / "small.toml"
        # About a third of the first capture's kept EEG goes (chunks 1 and 2 of 0-2 stay).
        profile.write_text("[delivery]\nspool_max_bytes = 2000000\n")
        spool = tmp / "spool"
        replay(env, spool, "--profile", str(profile), workspace=sandbox.workspace_id)
        second = replay(env, spool, "--profile", str(profile), "--offline", workspace=sandbox.workspace_id)
        assert "evicted" in second.stderr  # the record made room for the pending capture
        first = sessions(env, spool)[0]
        chunks = [
            json.loads(sandbox.read_artifact(r["id"]))
            for r in sandbox.evidence(sandbox.workspace_id)
            if r["type"] == "eeg" and r["metadata"].get("kind") != "session-summary"
        ]
        yield {"env": env, "spool": spool, "tmp": tmp, "first": first, "delivered": chunks}
    finally:
        sandbox.stop()


@pytest.mark.slow
def test_export_of_a_partly_evicted_capture_warns_and_marks_the_missing_part(evicted):
    """Finding 1: a silent 2/3 export. Now: a warning with the counts and times, EDF marks the
    stretch no longer on this machine BAD_NOT_KEPT from the capture's true start."""
    mne = pytest.importorskip("mne")
    import pandas as pd

    first, env, spool, tmp = evicted["first"], evicted["env"], evicted["spool"], evicted["tmp"]
    cid = first["capture_id"]
    delivered = sorted(evicted["delivered"], key=lambda c: c["chunk_index"])
    csv_path, edf_path = tmp / "part.csv", tmp / "part.edf"
    proc = collector(["export", cid, "--format", "csv", "--out", str(csv_path), "--spool", str(spool)], env)
    assert proc.returncode == 0, proc.stderr
    kept = len(pd.read_csv(csv_path))
    assert 0 < kept < first["samples"] == sum(len(c["samples"]) for c in delivered)
    missing = first["samples"] - kept
    assert "warning: part of capture" in proc.stderr and "no longer on this machine" in proc.stderr
    assert f"({missing:,} samples" in proc.stderr, proc.stderr
    proc = collector(["export", cid, "--format", "edf", "--out", str(edf_path), "--spool", str(spool)], env)
    assert proc.returncode == 0, proc.stderr
    assert "BAD_NOT_KEPT" in proc.stdout and "warning: part of capture" in proc.stderr
    raw = mne.io.read_raw_edf(edf_path, verbose="error")
    first_sample_s = (delivered[0]["t0_ms"] + delivered[0]["times_ms"][0]) / 1000
    assert raw.info["meas_date"].timestamp() == np.floor(first_sample_s)  # starts where the capture did
    [gone] = [a for a in raw.annotations if a["description"] == "BAD_NOT_KEPT"]
    assert gone["onset"] == pytest.approx(0.0, abs=0.01)
    # It lasts until the first kept sample, on the capture's clock (the device's rate is not 256.000 Hz).
    lost = [sum(len(c["samples"]) for c in delivered[:k]) for k in range(len(delivered))].index(missing)
    first_kept_s = (delivered[lost]["t0_ms"] + delivered[lost]["times_ms"][0]) / 1000
    assert gone["duration"] == pytest.approx(first_kept_s - first_sample_s, abs=1.5 / 256)
    assert raw.get_data(reject_by_annotation="omit").shape[1] == kept  # what is left is the kept part


@pytest.mark.slow
def test_review_header_of_a_partly_evicted_capture_says_what_is_here(evicted):
    env, spool, tmp, first = evicted["env"], evicted["spool"], evicted["tmp"], evicted["first"]
    out = tmp / "part.html"
    proc = collector(["review", first["capture_id"][:8], "--out", str(out), "--spool", str(spool)], env)
    assert proc.returncode == 0, proc.stderr
    html = out.read_text(encoding="utf-8")
    assert "incomplete here" in html and f"of {first['samples']:,} samples on this machine" in html
    assert "#e08a1e" in html  # the missing stretch is shaded on the plot
    import shutil

    if shutil.which("chromium"):  # the page still draws, with no script error
        from test_review_export import chromium_render

        dom, console = chromium_render(out, tmp)
        assert 'data-rendered="yes"' in dom
        assert not [line for line in console if "Uncaught" in line or "Error" in line], console


@pytest.mark.slow
def test_a_damaged_kept_chunk_is_skipped_with_a_warning(evicted, tmp_path):
    """Finding 2: one corrupt `record.data` blob made the whole capture unreadable (exit 1)."""
    import shutil

    import pandas as pd

    spool = tmp_path / "spool"
    shutil.copytree(evicted["spool"], spool)
    cid, env = evicted["first"]["capture_id"], evicted["env"]
    with sqlite3.connect(spool / "spool.db") as conn:
        item_id, stream_id = conn.execute(
            "SELECT item_id, stream_id FROM record WHERE capture_id = ? AND type = 'eeg'"
            " AND stream_id != 'session-summary' ORDER BY chunk_index DESC LIMIT 1",
            (cid,),
        ).fetchone()
        conn.execute(
            "UPDATE record SET data = ? WHERE item_id = ?", (b"not a compressed copy at all", item_id)
        )
    before = len(pd.read_csv(evicted["tmp"] / "part.csv")) if (evicted["tmp"] / "part.csv").exists() else None
    out = tmp_path / "d.csv"
    proc = collector(["export", cid, "--format", "csv", "--out", str(out), "--spool", str(spool)], env)
    assert proc.returncode == 0, proc.stderr
    assert "1 kept copy is damaged" in proc.stderr and "Traceback" not in proc.stderr
    rows = len(pd.read_csv(out))
    assert rows > 0 and (before is None or rows < before)
    page = tmp_path / "d.html"
    proc = collector(["review", cid, "--out", str(page), "--spool", str(spool)], env)
    assert proc.returncode == 0, proc.stderr
    assert "1 kept copy is damaged" in page.read_text(encoding="utf-8")


@pytest.mark.parametrize("value", ["inf", "1e309", "nan", "true"])
def test_retention_days_must_be_a_finite_number(tmp_path, value):
    """Finding 7: `inf` made `sessions --json` print `Infinity` (invalid JSON); `true` meant 1 day."""
    profile = tmp_path / "p.toml"
    profile.write_text(f"[delivery]\nretention_days = {value}\n")
    proc = collector(
        ["replay", str(MUSE_XDF), "-w", str(uuid.uuid4()), "--offline", "--speed", "max",
         "--profile", str(profile), "--spool", str(tmp_path / "s")],
        clean_env(),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "retention_days" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_sessions_into_a_closed_pipe_ends_quietly(tmp_path):
    """Finding 8: `collector sessions | head -1` sometimes printed `unexpected failure:
    BrokenPipeError`. A reader that has gone away now ends the command as SIGPIPE would (141),
    silently. The pipe's read end is closed before the command starts, so every run hits it."""
    from collector.delivery.local_record import CaptureInfo
    from collector.delivery.spool import Spool

    with Spool(tmp_path / "s") as spool:
        for i in range(30):
            spool.record.begin_capture(CaptureInfo(f"c{i:02d}", "run", 1000 * i, None, None))
    for args in (["sessions"], ["sessions", "--json"]):
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "collector", *args, "--spool", str(tmp_path / "s")],
                env=clean_env(), stdin=subprocess.DEVNULL, stdout=write_end, stderr=subprocess.PIPE,
                text=True, timeout=60,
            )  # fmt: skip
        finally:
            os.close(write_end)
        assert proc.returncode == 141, proc.stderr
        assert proc.stderr == ""


def test_a_corrupt_spool_database_is_a_corrupt_file(tmp_path):
    """Finding 9: exit 1 and 'check the folder is writable'; now exit 2 and what to do."""
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "spool.db").write_bytes(b"SQLite format 3\x00" + os.urandom(8000))
    export = ["export", "--format", "csv", "--out", str(tmp_path / "x")]
    for args in (["sessions"], ["review", "--last"], export):
        proc = collector([*args, "--spool", str(folder)], clean_env())
        assert proc.returncode == 2, (args, proc.stderr)
        assert "is damaged" in proc.stderr and "mv " in proc.stderr and "writable" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_a_spool_path_that_is_a_file_is_refused(tmp_path):
    folder = tmp_path / "s"
    from collector.delivery.spool import Spool

    Spool(folder).close()
    for args in (["sessions"], ["review", "--last"]):
        proc = collector([*args, "--spool", str(folder / "spool.db")], clean_env())
        assert proc.returncode == 2 and "is a file, not a spool folder" in proc.stderr, proc.stderr
        assert f"--spool {folder}" in proc.stderr


def test_edf_export_picks_a_data_record_that_holds_whole_samples(tmp_path):
    """Finding 9: a 92.88 Hz stream could not be exported as EDF. A 25 s data record holds 2322
    samples; MNE reads the file back at 92.88 Hz with every sample."""
    mne = pytest.importorskip("mne")
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_xdf import synthetic_eeg, write_xdf

    eeg = synthetic_eeg(30.0, sfreq=92.88)
    xdf = tmp_path / "odd.xdf"
    write_xdf(xdf, [eeg])
    spool = tmp_path / "s"
    env = clean_env()
    args = ["replay", str(xdf), "-w", str(uuid.uuid4()), "--speed", "max", "--offline", "--spool", str(spool)]
    proc = collector(args, env)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "odd.edf"
    proc = collector(["export", "--last", "--format", "edf", "--out", str(out), "--spool", str(spool)], env)
    assert proc.returncode == 0, proc.stderr
    raw = mne.io.read_raw_edf(out, verbose="error")
    assert raw.info["sfreq"] == pytest.approx(92.88)
    assert raw.get_data(reject_by_annotation="omit").shape[1] == len(eeg.timestamps)


def test_edf_of_a_rate_no_record_fits_says_to_use_csv():
    from collector.review.export import _record_samples

    assert _record_samples(256.0) == (256, 1.0) and _record_samples(92.88) == (2322, 25.0)
    with pytest.raises(ValueError, match="--format csv"):
        _record_samples(255.98731)


def contiguous_windows(n: int = 37, step_ms: float = 2000.0) -> ReviewData:
    """`n` contiguous 2 s windows whose end times wobble by up to 1 ms (a live LSL clock)."""
    jitter = np.random.default_rng(3).uniform(-1.0, 1.0, n)
    t = 1_764_000_000_000 + np.arange(n) * step_ms + jitter
    data = ReviewData(
        session={"capture_id": "c", "kind": "demo"}, channels=["TP9"], bands=["alpha"], window_ms=t,
        relative=np.full((n, 1, 1), 0.3), good=np.ones((n, 1)), eeg_chunks=1,
    )  # fmt: skip
    data.first_sample_ms = float(t[0]) - step_ms  # the first window's first sample
    return data


def test_contiguous_windows_on_bin_edges_leave_no_hole_in_the_plot():
    """Finding 3: 37 contiguous windows drew 36 or 38 bins, one empty (a break in every line)."""
    data = contiguous_windows()
    centres, rel, good = _bins(data)
    assert len(centres) == 37
    assert np.isfinite(rel).all() and np.isfinite(good).all()
    np.testing.assert_allclose(centres, data.window_ms, atol=2.0)  # each bin sits on its window


def test_averages_table_adds_up_to_the_header_totals():
    """Finding 4: markers and screenshots before the first window's end or after the last one
    were left out of the per-block table (31 of 34 markers, 0 of 1 screenshot)."""
    data = contiguous_windows(30)
    first, last = data.first_sample_ms, float(data.window_ms[-1])
    data.markers = [(first + 10.0, "start"), (first + 1500.0, "early")]
    data.markers += [(float(t) - 700.0, "stim") for t in data.window_ms[1:]] + [(last + 400.0, "end")]
    data.shots = [(int(first + 200), "image/webp", b""), (int(last + 900), "image/webp", b"")]
    label, rows = averages_table(data)
    assert sum(r["markers"] for r in rows) == len(data.markers) == 32
    assert sum(r["screenshots"] for r in rows) == len(data.shots) == 2
    assert sum(r["windows"] for r in rows) == len(data.window_ms)
    assert rows[0]["start"] == datetime.fromtimestamp(first / 1000).strftime("%H:%M:%S")


def test_last_is_the_capture_made_last_not_the_latest_recording(tmp_path):
    """Finding 5: replaying an older file after a capture of today, `--last` chose today's (by data
    time). The newest capture is the one made last; the table shows the recording's time too."""
    env, spool = clean_env(), tmp_path / "s"
    replay(env, spool, "--offline", "--start-time", "now")
    replay(env, spool, "--offline")  # the recording's own time: days ago
    today, old = sessions(env, spool)
    assert old["started_at"] < today["started_at"] and old["captured_at"] >= today["captured_at"]
    out = tmp_path / "last.html"
    proc = collector(["review", "--last", "--out", str(out), "--spool", str(spool)], env)
    assert proc.returncode == 0, proc.stderr
    assert old["capture_id"] in out.read_text(encoding="utf-8")
    table = collector(["sessions", "--spool", str(spool)], env).stdout
    assert "CAPTURED" in table and "RECORDED" in table and old["started_at"][:10] in table
    assert table.index(today["capture_id"]) < table.index(old["capture_id"])  # newest last


@pytest.mark.slow
def test_a_killed_capture_is_shown_running_then_interrupted_and_finished(sandbox, tmp_path):
    """Finding 6: a capture killed with SIGKILL kept 0 samples, no end and no session summary for
    ever; while it ran, `sessions` showed 0 samples. Now the counts come from the spool while it
    runs, and the next command that opens the spool finishes it (end, counts, `interrupted`) and
    spools its session summary, which `collector upload` delivers."""
    import signal
    import time

    env = clean_env(OPENLESSON_API_KEY=sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url)
    spool = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "replay", str(MUSE_XDF), "-w", sandbox.workspace_id, "--offline",
         "--chunk-seconds", "2", "--spool", str(spool)],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        running = None
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if (spool / "spool.db").exists():
                rows = sessions(env, spool)
                if rows and rows[0]["samples"] >= 2 * 512:
                    running = rows[0]
                    break
        assert running is not None, "the replay spooled nothing within 60 s"
        assert running["state"] == "running" and not running["finished"] and running["markers"] is None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    proc = collector(["sessions", "--spool", str(spool)], env)
    assert "replay (interrupted)" in proc.stdout and "was interrupted" in proc.stderr
    [row] = sessions(env, spool)
    assert row["state"] == "interrupted" and row["ended_at"] and row["duration_s"] > 0
    chunks = row["pending"] - 1  # the session summary waits too
    assert row["samples"] >= running["samples"] and row["samples"] % 512 == 0 and chunks >= 2
    upload = collector(["upload", "--spool", str(spool)], env)
    assert upload.returncode == 0, upload.stderr
    posted = sandbox.evidence(sandbox.workspace_id)
    [summary] = [r for r in posted if r["metadata"].get("kind") == "session-summary"]
    body = json.loads(sandbox.read_artifact(summary["id"]))
    assert body["totals"]["samples"] == row["samples"] and body["totals"]["eeg_chunks"] == chunks
    assert body["totals"]["markers"] == row["markers"] and posted[-1]["id"] == summary["id"]


def test_review_refuses_an_id_with_last_and_an_empty_id(tmp_path):
    """Finding 10: `review ID --last` silently used ID; `review ""` meant the newest."""
    env = clean_env()
    for args in (
        ["review", "abc", "--last"],
        ["review", ""],
        ["export", "", "--format", "csv", "--out", "x"],
    ):
        proc = collector([*args, "--spool", str(tmp_path / "s")], env)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "--last" in proc.stderr


def test_outputs_are_owner_only_over_an_existing_file_and_through_a_symlink(tmp_path):
    """Finding 10: `--out` to an existing 0644 file (or through a symlink) stayed 0644; CSV and EDF
    files were always 0644. They hold EEG: owner-only, like the spool."""
    env, spool = clean_env(), tmp_path / "s"
    replay(env, spool, "--offline")
    for name, args in (
        ("page.html", ["review"]),
        ("data.csv", ["export", "--format", "csv"]),
        ("data.edf", ["export", "--format", "edf"]),
    ):
        existing = tmp_path / name
        existing.write_text("old")
        existing.chmod(0o644)
        link = tmp_path / f"link-{name}"
        link.symlink_to(existing)
        for out in (existing, link):
            proc = collector([*args, "--out", str(out), "--spool", str(spool)], env)
            assert proc.returncode == 0, proc.stderr
            assert oct(existing.stat().st_mode & 0o777) == "0o600", (name, out)
            existing.chmod(0o644)


def test_long_marker_values_are_shortened_on_the_plot_and_whole_on_hover():
    """Finding 10: an XML marker spilled over the legend and the plot."""
    from collector.review.figure import MAX_LABEL_CHARS, build_figure

    data = contiguous_windows(10)
    xml = '<event type="stimulus" code="17" note="a very long description of what was shown"/>'
    data.markers = [(float(data.window_ms[3]), xml)]
    fig, _ = build_figure(data)
    [trace] = [t for t in fig["data"] if t["name"].startswith("marker ")]
    import html

    name = trace["name"]
    assert len(html.unescape(name)) == len("marker ") + MAX_LABEL_CHARS and "&lt;event" in name
    assert "note=&quot;a very long description" in trace["hovertext"]
    [note] = fig["layout"]["annotations"]
    assert note["text"].endswith("…") and note["hovertext"].endswith("shown&quot;/&gt;")


def test_a_capture_shorter_than_a_window_says_its_samples_are_kept(tmp_path):
    """Finding 10: a capture under 2 s said "No EEG was kept" yet `export` wrote its samples."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_xdf import synthetic_eeg, write_xdf

    xdf = tmp_path / "short.xdf"
    write_xdf(xdf, [synthetic_eeg(1.0)])
    env, spool = clean_env(), tmp_path / "s"
    proc = collector(
        ["replay", str(xdf), "-w", str(uuid.uuid4()), "--speed", "max", "--offline", "--spool", str(spool)],
        env,
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "short.html"
    proc = collector(["review", "--last", "--out", str(out), "--spool", str(spool)], env)
    assert proc.returncode == 0, proc.stderr
    html = out.read_text(encoding="utf-8")
    assert (
        "No EEG was kept" not in html and "256 EEG samples are kept, too few for one analysis window" in html
    )
