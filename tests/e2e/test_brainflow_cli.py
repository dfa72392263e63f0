"""`collector run --device brainflow` end to end: BrainFlow's real SYNTHETIC_BOARD and PLAYBACK_FILE_BOARD
through the real CLI to the sandbox (every sample once, known band powers, exact samples and times),
`collector mark` onto the board's marker channel, and a board that cannot open (one line, exit 5)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytest.importorskip("brainflow")

from cli_runs import cli_env, collector, eeg_chunks, is_summary, rows_of, start_collector  # noqa: E402

SYNTHETIC = -1


def _run_args(sandbox, tmp_path, *extra: str) -> list[str]:
    return ["run", "--workspace", sandbox.workspace_id, "--device", "brainflow", "--screen", "off",
            "--flush-timeout", "20", "--spool", str(tmp_path / "spool"), *extra]  # fmt: skip


def _samples_and_times(chunks: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    data = np.concatenate([np.asarray(c["samples"], dtype=float) for c in chunks])
    times = np.concatenate([c["t0_ms"] + np.asarray(c["times_ms"], dtype=float) for c in chunks])
    return data, times


def _summary(sandbox) -> dict:
    rows = [r for r in rows_of(sandbox) if is_summary(r)]
    assert len(rows) == 1
    return json.loads(sandbox.read_artifact(rows[0]["id"]))


def test_synthetic_board_run_gives_known_band_powers_and_every_sample_once(sandbox, tmp_path):
    proc = collector(_run_args(sandbox, tmp_path, "--board", "synthetic", "--duration", "5",
                               "--chunk-seconds", "2"), cli_env(sandbox), timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    chunks = eeg_chunks(sandbox)
    assert [c["chunk_index"] for c in chunks] == list(range(len(chunks)))
    device = chunks[0]["device"]
    assert device["channels"][:6] == ["Fz", "C3", "Cz", "C4", "Pz", "PO7"] and device["sfreq"] == 250.0
    data, times = _samples_and_times(chunks)
    assert np.all(np.diff(times) > 0), "no sample twice, none out of order"
    assert 4.0 * 250 < data.shape[0] < 6.5 * 250
    assert _summary(sandbox)["totals"]["samples"] == data.shape[0]
    # Synthetic channel i: a sine of 5(i+1) Hz with RMS 10(i+1) uV -> band power 100(i+1)^2 uV^2.
    windows = [w for c in chunks for w in c["windows"] if w["absolute"]]
    assert windows
    theta_fz = np.median([w["absolute"]["Fz"]["theta"] for w in windows])
    alpha_c3 = np.median([w["absolute"]["C3"]["alpha"] for w in windows])
    beta_cz = np.median([w["absolute"]["Cz"]["beta"] for w in windows])
    assert theta_fz == pytest.approx(100.0, rel=0.15)
    assert alpha_c3 == pytest.approx(400.0, rel=0.15)
    assert beta_cz == pytest.approx(900.0, rel=0.15)


def _write_playback(path, n: int, t0_s: float) -> np.ndarray:
    from brainflow.board_shim import BoardShim
    from brainflow.data_filter import DataFilter

    rows = BoardShim.get_num_rows(SYNTHETIC)
    data = np.zeros((rows, n))
    data[BoardShim.get_package_num_channel(SYNTHETIC)] = np.arange(n) % 256
    for k, row in enumerate(BoardShim.get_eeg_channels(SYNTHETIC)):
        data[row] = np.round(50.0 * np.sin(np.arange(n) * (0.01 + 0.003 * k)) + k, 3)
    data[BoardShim.get_timestamp_channel(SYNTHETIC)] = np.round(t0_s + np.arange(n) / 250.0, 6)
    DataFilter.write_file(data, str(path), "w")
    return DataFilter.read_file(str(path))


def test_playback_board_run_delivers_the_file_exactly(sandbox, tmp_path):
    from brainflow.board_shim import BoardShim

    n = 800  # 3.2 s
    written = _write_playback(tmp_path / "rec.csv", n, time.time() - 60.0)
    proc = collector(_run_args(sandbox, tmp_path, "--board", "playback_file", "--master-board", "synthetic",
                               "--board-file", str(tmp_path / "rec.csv"), "--board-config", "old_timestamps",
                               "--duration", "30"), cli_env(sandbox), timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    chunks = eeg_chunks(sandbox)
    data, times = _samples_and_times(chunks)
    assert data.shape[0] == n, "every sample of the file, once"
    eeg_rows = BoardShim.get_eeg_channels(SYNTHETIC)
    np.testing.assert_allclose(data, written[eeg_rows].T, atol=1e-3)
    ts = written[BoardShim.get_timestamp_channel(SYNTHETIC)] * 1000.0
    np.testing.assert_allclose(times, ts, atol=1e-3)
    assert all(c["gaps"] == [] for c in chunks)


def test_mark_lands_on_the_boards_marker_channel(sandbox, tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)  # platformdirs ignores an XDG_RUNTIME_DIR that is not 0700
    env = cli_env(sandbox, XDG_RUNTIME_DIR=str(runtime))
    pid_file = runtime / "openlesson-collector" / "collector-run.pid"
    proc = start_collector(_run_args(sandbox, tmp_path, "--board", "synthetic", "--duration", "8"), env)
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.0)  # the board streams
        launched = time.time()
        marked = collector(["mark", "distracted"], env, timeout=30)
        assert marked.returncode == 0, marked.stderr
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "on the board's marker channel" in err
    events = [e for c in eeg_chunks(sandbox) for e in c["events"]]
    assert [e["value"] for e in events] == ["distracted"]
    # The user's own mark (as on LSL), at the moment `collector mark` started (its process start,
    # 10 ms resolution), not at the board sample after it reached the capture (some 300 ms later).
    assert events[0].get("source") == "mark"
    assert -0.02 <= events[0]["time_ms"] / 1000.0 - launched < 0.1


def test_a_board_that_cannot_open_is_one_line_and_exit_5(sandbox, tmp_path):
    proc = collector(_run_args(sandbox, tmp_path, "--board", "cyton", "--serial-port", "/dev/ttyDOESNOTEXIST",
                               "--duration", "2"), cli_env(sandbox), timeout=60)  # fmt: skip
    assert proc.returncode == 5, proc.stderr
    assert "Traceback" not in proc.stderr
    line = [x for x in proc.stderr.splitlines() if "CYTON_BOARD" in x]
    assert line and "serial port" in line[0] and "exit code 2" in line[0]
    assert rows_of(sandbox) == []


def test_brainflow_without_board_is_a_usage_error(sandbox, tmp_path):
    proc = collector(_run_args(sandbox, tmp_path, "--duration", "1"), cli_env(sandbox), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "--board" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("option", [["--board", "synthetic"], ["--serial-port", "/dev/ttyUSB0"]])
def test_a_brainflow_option_without_device_brainflow_is_refused_not_ignored(sandbox, tmp_path, option):
    # `--board synthetic` alone used to be ignored: the run looked for an LSL stream and exited 5.
    args = ["run", "--workspace", sandbox.workspace_id, "--screen", "off", "--duration", "1",
            "--spool", str(tmp_path / "spool"), *option]  # fmt: skip
    proc = collector(args, cli_env(sandbox), timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if option[0] in x]
    assert len(lines) == 1 and "add --device brainflow" in lines[0] and "reads lsl" in lines[0], proc.stderr
    assert rows_of(sandbox) == []


def test_a_playback_file_in_another_layout_is_one_line_and_exit_2(sandbox, tmp_path):
    # A file BrainFlow cannot read a line of (not its format, or another board's rows): BrainFlow
    # skips every line and the run used to end at once with exit 0 and nothing captured.
    path = tmp_path / "notes.csv"
    path.write_text("time\tvalue\n1\t2\n3\t4\n", encoding="utf-8")
    args = _run_args(sandbox, tmp_path, "--board", "playback_file", "--master-board", "synthetic",
                     "--board-file", str(path), "--duration", "5")  # fmt: skip
    proc = collector(args, cli_env(sandbox), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    line = [x for x in proc.stderr.splitlines() if "notes.csv" in x]
    assert line and "SYNTHETIC_BOARD's layout" in line[0] and "--master-board" in line[0]
    assert rows_of(sandbox) == []
