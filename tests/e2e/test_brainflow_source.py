"""BrainFlowSource against BrainFlow's real boards without hardware: SYNTHETIC_BOARD (its known
sines, rate, labels, stamps and markers) and PLAYBACK_FILE_BOARD (files written with
DataFilter.write_file played back sample for sample, a hole in the stamps, a skip in the sample
counter), and the errors of a board that cannot be opened. No mocks."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("brainflow")

from collector.core.records import EegSource, SourceEnded  # noqa: E402
from collector.devices.brainflow.boards import describe_boards, resolve_board
from collector.devices.brainflow.source import BrainFlowSource  # noqa: E402
from collector.errors import NoSourceError, UsageError  # noqa: E402

SYNTHETIC = -1
FS = 250.0


def collect(source: BrainFlowSource, seconds: float) -> list:
    chunks = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        chunk = source.read(0.2)
        if chunk is not None:
            chunks.append(chunk)
    return chunks


def play_all(source: BrainFlowSource, limit_s: float = 30.0) -> list:
    """Read until the playback file ends (SourceEnded)."""
    chunks = []
    deadline = time.monotonic() + limit_s
    with pytest.raises(SourceEnded):
        while time.monotonic() < deadline:
            chunk = source.read(0.2)
            if chunk is not None:
                chunks.append(chunk)
    return chunks


def write_playback(path, n: int, times_s: np.ndarray, counter: np.ndarray | None = None) -> np.ndarray:
    """A SYNTHETIC_BOARD-shaped file: EEG row k is a ramp 1000·k + i; returns what BrainFlow reads back."""
    from brainflow.board_shim import BoardShim
    from brainflow.data_filter import DataFilter

    rows = BoardShim.get_num_rows(SYNTHETIC)
    data = np.zeros((rows, n))
    data[BoardShim.get_package_num_channel(SYNTHETIC)] = np.arange(n) % 256 if counter is None else counter
    for k, row in enumerate(BoardShim.get_eeg_channels(SYNTHETIC)):
        data[row] = 1000.0 * k + np.arange(n)
    data[BoardShim.get_timestamp_channel(SYNTHETIC)] = times_s
    DataFilter.write_file(data, str(path), "w")
    return DataFilter.read_file(str(path))


# -- names, boards, lazy import ---------------------------------------------------------------


def test_board_names_ids_and_the_list_of_boards():
    assert resolve_board("synthetic") == ("SYNTHETIC_BOARD", -1)
    assert resolve_board("SYNTHETIC_BOARD") == ("SYNTHETIC_BOARD", -1)
    assert resolve_board("Synthetic board") == ("SYNTHETIC_BOARD", -1)
    assert resolve_board(-1) == ("SYNTHETIC_BOARD", -1)
    assert resolve_board("-1") == ("SYNTHETIC_BOARD", -1)
    assert resolve_board("cyton") == ("CYTON_BOARD", 0)
    assert resolve_board("muse_s_athena") == ("MUSE_S_ATHENA_BOARD", 67)
    assert resolve_board("muse-s-athena") == ("MUSE_S_ATHENA_BOARD", 67)
    assert resolve_board("playback_file") == ("PLAYBACK_FILE_BOARD", -3)
    boards = describe_boards()
    assert ("SYNTHETIC_BOARD", -1) in boards and ("MUSE_S_ATHENA_BOARD", 67) in boards
    assert "NO_BOARD" not in {name for name, _ in boards}
    assert [i for _, i in boards] == sorted(i for _, i in boards)


def test_unknown_board_is_a_usage_error_with_suggestions():
    with pytest.raises(UsageError) as err:
        BrainFlowSource("synthetc")
    assert err.value.exit_code == 2
    assert "'synthetic'" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UsageError, match="cyton_daisy"):
        BrainFlowSource("cyton_dasy")
    with pytest.raises(UsageError, match="no board with id 9999"):
        BrainFlowSource(9999)
    with pytest.raises(UsageError, match="preset"):
        BrainFlowSource("synthetic", board_preset="sideways")
    with pytest.raises(UsageError, match="master_board"):
        BrainFlowSource("playback_file", file="x.csv")


def test_importing_the_module_does_not_import_brainflow():
    code = (
        "import sys, collector.devices.brainflow.source as m; "
        "assert 'brainflow' not in sys.modules, 'imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# -- errors -----------------------------------------------------------------------------------


def test_cyton_on_a_missing_serial_port_is_no_source_with_one_line(tmp_path, capfd):
    log_file = tmp_path / "brainflow.log"
    source = BrainFlowSource("cyton", serial_port="/dev/ttyDOESNOTEXIST", log_file=log_file)
    started = time.monotonic()
    with pytest.raises(NoSourceError) as err:
        source.open()
    assert time.monotonic() - started < 5.0
    message = str(err.value)
    assert err.value.exit_code == 5
    assert "\n" not in message
    assert "/dev/ttyDOESNOTEXIST" in message and "serial port" in message
    assert "exit code 2" in message
    assert "port name" in message  # BrainFlow's own reason, read back from its log
    # BrainFlow's logger went to the file, not to the terminal.
    captured = capfd.readouterr()
    assert "board_logger" not in captured.err and "board_logger" not in captured.out
    assert "port name" in log_file.read_text()
    source.close()  # nothing opened: a no-op


def test_missing_parameter_is_named(tmp_path):
    # Named as the option that sets it, not BrainFlow's field (serial_port).
    with pytest.raises(NoSourceError) as err:
        BrainFlowSource("cyton", log_file=tmp_path / "bf.log").open()
    assert "--serial-port is missing" in str(err.value) and "exit code 13" in str(err.value)


def test_missing_playback_file_is_no_source(tmp_path):
    source = BrainFlowSource(
        "playback_file", file=tmp_path / "none.csv", master_board="synthetic", log_file=tmp_path / "bf.log"
    )
    with pytest.raises(NoSourceError, match="none.csv"):
        source.open()


def test_read_before_open_and_marker_without_stream():
    source = BrainFlowSource("synthetic")
    with pytest.raises(RuntimeError):
        source.read(0.01)
    with pytest.raises(NoSourceError):
        source.insert_marker("x")


# -- SYNTHETIC_BOARD --------------------------------------------------------------------------


@pytest.mark.slow
def test_synthetic_board_rate_labels_times_sines_and_markers(tmp_path):
    from scipy.signal import welch

    source = BrainFlowSource("synthetic", log_file=tmp_path / "bf.log")
    assert isinstance(source, EegSource)
    opened_at = time.time()
    with source:
        d = source.description
        assert d is not None
        assert d.name == "BrainFlow SYNTHETIC_BOARD" and d.type == "EEG"
        assert d.source_id == "brainflow:synthetic:synthetic"
        assert d.unit == "microvolts" and d.model == "Synthetic"
        assert d.sfreq == FS and d.nominal_sfreq == FS
        assert d.channels[:6] == ("Fz", "C3", "Cz", "C4", "Pz", "PO7") and len(d.channels) == 16
        chunks = collect(source, 1.5)
        with pytest.raises(UsageError):
            source.insert_marker("   ")
        marked_at = time.time()
        assert source.insert_marker("distracted") == 1.0
        assert source.insert_marker("distracted") == 1.0  # same text, same code
        assert source.insert_marker("focus again") == 2.0
        chunks += collect(source, 1.5)
        # The pipeline's last read (timeout 0) releases what the clock fit still holds back (its
        # look-ahead, under 1 s): nothing read is left behind.
        for _ in range(3):
            if (chunk := source.read(0.0)) is not None:
                chunks.append(chunk)
        read_until = time.time()
    source.close()  # twice: fine

    data = np.concatenate([c.data for c in chunks])
    times = np.concatenate([c.times_ms for c in chunks])
    assert data.dtype == np.float64 and data.shape == (times.shape[0], 16)
    assert np.all(np.diff(times) > 0)
    # ~3 s at 250 Hz, stamped with the host's Unix clock.
    assert 600 <= times.shape[0] <= 800
    rate = (times.shape[0] - 1) / ((times[-1] - times[0]) / 1000.0)
    assert rate == pytest.approx(FS, rel=0.03)
    assert abs(times[0] / 1000.0 - opened_at) < 1.0
    assert abs(times[-1] / 1000.0 - read_until) < 0.5

    # Channel i (0..5): DC 10(i+1) µV + a sine at 5(i+1) Hz with RMS 10(i+1) µV.
    for i in range(6):
        x = data[:, i]
        assert x.mean() == pytest.approx(10.0 * (i + 1), rel=0.1)
        centred = x - x.mean()
        freqs, psd = welch(centred, fs=FS, nperseg=250)
        assert freqs[np.argmax(psd)] == pytest.approx(5.0 * (i + 1), abs=0.5), d.channels[i]
        assert np.sqrt(np.mean(centred**2)) == pytest.approx(10.0 * (i + 1), rel=0.1), d.channels[i]

    events = [e for c in chunks for e in c.events]
    assert [e.value for e in events] == ["distracted", "distracted", "focus again"]
    first = events[0].time_ms / 1000.0
    assert -0.01 <= first - marked_at < 0.25
    for e in events:  # each marker rides on a sample of the chunk that carries it
        assert e.time_ms in times


# -- PLAYBACK_FILE_BOARD ----------------------------------------------------------------------


@pytest.mark.slow
def test_playback_with_file_stamps_gives_every_sample_once_with_its_time(tmp_path):
    n = 500
    t0 = 1_700_000_000.0
    path = tmp_path / "ramps.csv"
    written = write_playback(path, n, t0 + np.arange(n) / FS)
    source = BrainFlowSource(
        "playback_file",
        file=path,
        master_board="synthetic",
        config=["old_timestamps"],
        log_file=tmp_path / "bf.log",
    )
    with source:
        d = source.description
        assert d is not None and d.name == "BrainFlow PLAYBACK_FILE_BOARD" and d.model == "Synthetic"
        assert d.source_id == "brainflow:playback_file:ramps.csv" and d.sfreq == FS
        chunks = play_all(source)

    data = np.concatenate([c.data for c in chunks])
    times = np.concatenate([c.times_ms for c in chunks])
    from brainflow.board_shim import BoardShim

    eeg_rows = BoardShim.get_eeg_channels(SYNTHETIC)
    ts_row = BoardShim.get_timestamp_channel(SYNTHETIC)
    assert data.shape == (n, 16)
    np.testing.assert_array_equal(data, written[eeg_rows].T)  # every sample exactly once, in order
    np.testing.assert_array_equal(data[:, 3], 3000.0 + np.arange(n))
    np.testing.assert_array_equal(times, written[ts_row] * 1000.0)  # each with its exact time
    assert [g for c in chunks for g in c.gaps] == []
    assert [e for c in chunks for e in c.events] == []
    assert source.lost_samples == 0


@pytest.mark.slow
def test_playback_with_a_half_second_hole_gives_one_gap(tmp_path, caplog):
    n = 250
    t0 = 1_700_000_000.0
    times_s = t0 + np.arange(n) / FS
    times_s[125:] += 0.5
    path = tmp_path / "hole.csv"
    written = write_playback(path, n, times_s)
    source = BrainFlowSource(
        "playback_file",
        file=path,
        master_board="synthetic",
        config=["old_timestamps"],
        lost_after_s=0.3,
        log_file=tmp_path / "bf.log",
    )
    with caplog.at_level(logging.INFO, logger="collector.devices.brainflow.source"), source:
        chunks = play_all(source)
    from brainflow.board_shim import BoardShim

    stamps_ms = written[BoardShim.get_timestamp_channel(SYNTHETIC)] * 1000.0
    gaps = [g for c in chunks for g in c.gaps]
    assert len(gaps) == 1
    assert gaps[0].start_ms == stamps_ms[124] and gaps[0].end_ms == stamps_ms[125]
    assert sum(len(c) for c in chunks) == n
    # BrainFlow paused the replay for the hole: the source said so and carried on.
    assert "stopped sending, waiting" in caplog.text and "sends again" in caplog.text


@pytest.mark.slow
def test_playback_counter_skip_is_a_gap_even_when_stamps_hide_it(tmp_path):
    n = 250
    counter = np.arange(n, dtype=float)
    counter[100:] += 10  # 10 samples lost on the radio; the host stamped the next ones on time
    path = tmp_path / "lost.csv"
    written = write_playback(path, n, 1_700_000_000.0 + np.arange(n) / FS, counter=counter)
    source = BrainFlowSource(
        "playback_file",
        file=path,
        master_board="synthetic",
        config=["old_timestamps"],
        log_file=tmp_path / "bf.log",
    )
    with source:
        chunks = play_all(source)
    from brainflow.board_shim import BoardShim

    stamps_ms = written[BoardShim.get_timestamp_channel(SYNTHETIC)] * 1000.0
    gaps = [g for c in chunks for g in c.gaps]
    assert [(g.start_ms, g.end_ms) for g in gaps] == [(stamps_ms[99], stamps_ms[100])]
    assert source.lost_samples == 10
