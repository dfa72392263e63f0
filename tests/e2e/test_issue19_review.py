"""Issue 19 tried as a user would, then with bad and unusual input: each finding of that review
through the real part (the `collector` CLI against the sandbox, real pylsl outlets, real files).
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from cli_runs import cli_env, collector, eeg_chunks

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from make_xdf import XdfStream, write_xdf  # noqa: E402

HEADER = datetime(2024, 5, 1, 10, 0, 0, tzinfo=timezone.utc)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class BlockSender:
    """A real-time EEG outlet pushing `block` samples at a time (as devices and MNE-LSL's player
    do), calling `each_block(k)` after block k: the test's marker or trigger outlet pushes there."""

    def __init__(self, name: str, each_block, *, sfreq: float = 256.0, block: int = 8) -> None:
        import pylsl

        self.sfreq, self.block, self.each_block = sfreq, block, each_block
        info = pylsl.StreamInfo(name, "EEG", 2, sfreq, pylsl.cf_float32, uid("src"))
        self.outlet = pylsl.StreamOutlet(info, chunk_size=block)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t = np.arange(self.block) / self.sfreq
        start, k = time.monotonic(), 0
        while not self.stop.is_set():
            x = 20 * np.sin(2 * np.pi * 10 * (t + k * self.block / self.sfreq))
            self.outlet.push_chunk(np.column_stack([x, -x]).tolist())
            self.each_block(k)
            k += 1
            time.sleep(max(0.0, start + k * self.block / self.sfreq - time.monotonic()))

    def __enter__(self) -> BlockSender:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(2)


def run_live(sandbox, tmp_path, name: str, *extra: str, duration: str = "8"):
    proc = collector(
        ["run", "--workspace", sandbox.workspace_id, "--stream-name", name, "--screen", "off",
         "--duration", duration, "--spool", str(tmp_path / "spool"), "--flush-timeout", "60", *extra],
        cli_env(sandbox),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    arts = eeg_chunks(sandbox)
    times_s = np.concatenate([a["t0_ms"] + np.asarray(a["times_ms"]) for a in arts]) / 1000.0
    return arts, times_s


@pytest.mark.lsl
@pytest.mark.slow
def test_live_markers_taken_while_the_clock_fit_holds_samples_are_delivered(sandbox, tmp_path):
    """A sender pushing small blocks (MNE-LSL's player: 10 samples every 40 ms): most reads hand out
    no sample yet (the clock fit's look-ahead holds them), and a marker taken in such a read used
    to be dropped without a word. Every marker pushed during the capture must arrive, in order."""
    import pylsl

    name = uid("BlockEEG")
    info = pylsl.StreamInfo(f"{name}-markers", "Markers", 1, 0, pylsl.cf_string, uid("m"))
    marks = pylsl.StreamOutlet(info)
    pushed: list[tuple[float, str]] = []  # (Unix time, value)

    def mark(k: int) -> None:
        if k % 10 == 5:  # every 10 blocks of 8 samples: 0.31 s
            pushed.append((time.time(), f"m{len(pushed)}"))
            marks.push_sample([pushed[-1][1]])

    with BlockSender(name, mark):
        arts, times = run_live(sandbox, tmp_path, name)
    got = [e["value"] for a in arts for e in a["events"]]
    # Markers pushed well inside the captured span (0.5 s margins for the inlet's start and stop).
    inside = [v for t, v in pushed if times[0] + 0.5 < t < times[-1] - 0.5]
    assert len(inside) >= 15, (len(pushed), times[0], times[-1])
    missing = [v for v in inside if v not in got]
    assert not missing, f"markers dropped: {missing} of {len(inside)}; delivered {got}"
    assert len(got) == len(set(got))  # none twice


@pytest.mark.lsl
@pytest.mark.slow
def test_live_numeric_trigger_stream_sampled_at_a_rate_gives_its_code_onsets(sandbox, tmp_path):
    """A trigger line streamed as an int32 channel at the EEG's rate (0 at rest, each code held for
    a few samples), named with --markers: one event per code onset, as in replay. It gave one
    event per sample (value "0" 256 times a second)."""
    import pylsl

    name, trig_name = uid("TrigEEG"), uid("Trigger")
    trig = pylsl.StreamOutlet(pylsl.StreamInfo(trig_name, "Markers", 1, 256.0, pylsl.cf_int32, uid("t")))
    pushed: list[tuple[float, str]] = []

    def level(k: int) -> None:
        code = 0
        if k % 16 in (3, 4):  # a code held for 16 samples every 0.5 s (blocks of 8)
            code = len(pushed) % 7 + 1 if k % 16 == 3 else int(pushed[-1][1])
            if k % 16 == 3:
                pushed.append((time.time(), str(code)))
        trig.push_chunk([[code]] * 8)

    with BlockSender(name, level):
        arts, times = run_live(sandbox, tmp_path, name, "--markers", trig_name)
    got = [e["value"] for a in arts for e in a["events"]]
    assert "0" not in got, got
    inside = [v for t, v in pushed if times[0] + 1.0 < t < times[-1] - 1.0]
    assert len(inside) >= 10, (pushed, times[0], times[-1])
    assert len(got) <= len(pushed), (got, pushed)  # one event per onset, never one per sample
    # The onsets inside the capture, in order, each once.
    assert "".join(inside) in "".join(got), (inside, got)


def replay(sandbox, path, tmp_path, *extra: str):
    """`collector replay FILE --speed max` to the sandbox: (process, delivered EEG chunks)."""
    proc = collector(
        ["replay", str(path), "--workspace", sandbox.workspace_id, "--speed", "max",
         "--spool", str(tmp_path / "spool"), *extra],
        cli_env(sandbox),
    )  # fmt: skip
    return proc, (eeg_chunks(sandbox) if proc.returncode == 0 else [])


def eeg_stream(seconds: float = 20.0, sfreq: float = 256.0, **kw) -> XdfStream:
    t = np.arange(int(seconds * sfreq)) / sfreq
    rng = np.random.default_rng(0)
    x = 20 * np.sin(2 * np.pi * 10 * t)[:, None] + rng.normal(0, 1, (t.size, 4))
    kw.setdefault("unit", "microvolts")
    return XdfStream(
        kw.pop("name", "EEG"), kw.pop("type", "EEG"), sfreq, ["A", "B", "C", "D"], 1000 + t, x,
        source_id=kw.pop("source_id", "eeg-1"), **kw,
    )  # fmt: skip


def test_a_numeric_trigger_stream_sampled_at_a_rate_gives_its_codes_not_every_sample(sandbox, tmp_path):
    """A trigger line recorded as a numeric `Markers` stream at 1000 Hz (0 at rest, a code held for
    10 ms): one event per code onset, as MNE's find_events reads a stim channel. It gave 20,000
    events of value "0"."""
    n = 20_000
    codes = np.zeros((n, 1), dtype=np.float32)
    onsets = {2000: 1, 5000: 2, 5010: 3, 9000: 2, 15000: 255}  # 5010: a code right after another
    for i, code in onsets.items():
        codes[i : i + 10, 0] = code
    trig = XdfStream("Trig", "Markers", 1000.0, ["code"], 1000 + np.arange(n) / 1000.0, codes, source_id="t")
    path = tmp_path / "trigger.xdf"
    write_xdf(path, [eeg_stream(), trig], start=HEADER)
    proc, arts = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = [e for a in arts for e in a["events"]]
    assert [e["value"] for e in events] == ["1", "2", "3", "2", "255"]
    t0 = HEADER.timestamp() * 1000
    assert [round(e["time_ms"] - t0) for e in events] == list(onsets)


@pytest.mark.lsl
@pytest.mark.slow
def test_live_string_encoded_mne_lsl_annotations_are_events(sandbox, tmp_path):
    """MNE-LSL's PlayerLSL with annotations_encoding="string" (one string channel holding the
    description) was followed, then every annotation dropped: each is an event with its description."""
    import mne
    import mne_lsl.player as player_lsl

    sfreq, seconds = 250.0, 40.0
    t = np.arange(int(sfreq * seconds)) / sfreq
    noise = np.random.default_rng(1).normal(0, 1e-6, (4, t.size))
    volts = 20e-6 * np.sin(2 * np.pi * 10 * t)[None, :] + noise
    raw = mne.io.RawArray(volts, mne.create_info(["Fp1", "Fp2", "O1", "O2"], sfreq, "eeg"), verbose="error")
    onsets = np.arange(1.0, seconds - 1, 1.0)
    raw.set_annotations(mne.Annotations(onsets, 0.0, [f"stim/{i % 3}" for i in range(len(onsets))]))
    fname = tmp_path / "player_raw.fif"
    raw.save(fname, verbose="error")
    name = uid("MNE-LSL-Player")
    player = player_lsl.PlayerLSL(
        fname, chunk_size=10, name=name, annotations=True, annotations_encoding="string"
    )
    player.start()
    try:
        proc = collector(
            ["run", "--workspace", sandbox.workspace_id, "--stream-name", name, "--screen", "off",
             "--duration", "8", "--spool", str(tmp_path / "spool"), "--flush-timeout", "60"],
            cli_env(sandbox),
        )  # fmt: skip
    finally:
        player.stop()
    assert proc.returncode == 0, proc.stderr
    arts = eeg_chunks(sandbox)
    events = [e["value"] for a in arts for e in a["events"]]
    span_s = sum(len(a["times_ms"]) for a in arts) / sfreq
    assert len(events) >= int(span_s) - 2, (events, span_s)  # one a second, all of them
    assert set(events) <= {"stim/0", "stim/1", "stim/2"}


FIELD = Path(__file__).resolve().parents[1] / "data" / "field-cases"


def test_mne_lsl_annotations_stream_is_not_called_another_stream_not_replayed(sandbox, tmp_path):
    """MNE-LSL's annotations stream shares the player's source_id; it is replayed as events, yet the
    log said the file "holds 1 other stream(s) named 'MNE-LSL-Player' that are not replayed" and
    the EEG's stream_id got the file's id appended, as if two devices were in the file."""
    proc, arts = replay(sandbox, FIELD / "mne_lsl_player.xdf", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "not replayed" not in proc.stderr, proc.stderr
    assert {a["stream_id"] for a in arts} == {"eeg:MNE-LSL"}
    assert len([e for a in arts for e in a["events"]]) == 6


def write_edf(path: Path, seconds: int = 10, sfreq: int = 256) -> None:
    """A plain EDF+ of 4 EEG channels in µV (1 s data records), written by pyedflib."""
    import pyedflib

    t = np.arange(seconds * sfreq) / sfreq
    x = 20 * np.sin(2 * np.pi * 10 * t)
    writer = pyedflib.EdfWriter(str(path), 4, file_type=pyedflib.FILETYPE_EDFPLUS)
    writer.setSignalHeaders(
        [dict(label=f"EEG {c}", dimension="uV", sample_frequency=sfreq, physical_min=-50.0,
              physical_max=50.0, digital_min=-32768, digital_max=32767) for c in ("Fp1", "Fp2", "O1", "O2")]
    )  # fmt: skip
    writer.setStartdatetime(datetime(2024, 1, 15, 10, 0, 0))
    writer.writeSamples([x] * 4)
    writer.close()


def with_record_count(src: Path, dst: Path, count: int, *, tail: bytes = b"", cut: int = 0) -> Path:
    data = bytearray(src.read_bytes())
    data[236:244] = f"{count:<8}".encode()
    dst.write_bytes(bytes(data[: len(data) - cut]) + tail)
    return dst


@pytest.mark.parametrize("count", [0, 4])
def test_an_edf_whose_header_counts_fewer_records_than_it_holds_is_read_whole(sandbox, tmp_path, count):
    """A recorder that did not update the header's record count when it stopped (0, or the count
    when it last wrote the header) leaves a complete file: edfio and MNE read every record. It was
    refused as "corrupt or truncated"."""
    good = tmp_path / "good.edf"
    write_edf(good)
    path = with_record_count(good, tmp_path / "stale.edf", count)
    proc, arts = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sum(len(a["samples"]) for a in arts) == 10 * 256
    said = [line for line in proc.stderr.splitlines() if "WARNING" in line and "data records" in line]
    assert len(said) == 1 and f"header says {count} data records" in said[0] and "all 10" in said[0], said


def test_edf_stray_bytes_after_the_announced_records_are_not_a_cut_file(sandbox, tmp_path):
    good = tmp_path / "good.edf"
    write_edf(good)
    path = with_record_count(good, tmp_path / "padded.edf", 10, tail=b"\0" * 7)
    proc, arts = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sum(len(a["samples"]) for a in arts) == 10 * 256


@pytest.mark.parametrize(("count", "cut"), [(10, 100), (-1, 100), (12, 0)])
def test_an_edf_really_cut_short_is_still_refused_in_one_line(sandbox, tmp_path, count, cut):
    good = tmp_path / "good.edf"
    write_edf(good)
    path = with_record_count(good, tmp_path / "cut.edf", count, cut=cut)
    proc, _ = replay(sandbox, path, tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "corrupt or truncated" in lines[0] and "Traceback" not in proc.stderr, lines


def samples(arts) -> np.ndarray:
    return np.concatenate([np.asarray(a["samples"], dtype=float) for a in arts])


def warnings_with(stderr: str, *words: str) -> list[str]:
    return [line for line in stderr.splitlines() if "WARNING" in line and all(w in line for w in words)]


def test_a_channel_whose_unit_is_not_a_voltage_among_microvolt_channels_is_named(sandbox, tmp_path):
    """Channel C in 'a.u.' beside three µV channels: its values are kept, the artifact states
    microvolts; that was silent (the 'a.u.' factor 1 looked like µV's)."""
    path = tmp_path / "mixed.xdf"
    write_xdf(path, [eeg_stream(unit=["uV", "uV", "a.u.", "uV"])], start=HEADER)
    proc, arts = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    said = warnings_with(proc.stderr, "'a.u.'", "not a voltage")
    assert len(said) == 1 and "channel C " in said[0], proc.stderr
    assert {a["device"]["unit"] for a in arts} == {"microvolts"}


def test_a_first_channel_in_another_unit_does_not_decide_the_stated_unit(sandbox, tmp_path):
    """['a.u.', 'V', 'V', 'V']: the volt channels were converted to µV and yet the artifact said
    'a.u.' for all, with a warning that "values kept as they are"."""
    path = tmp_path / "first_au.xdf"
    stream = eeg_stream(unit=["a.u.", "V", "V", "V"])
    stream.values[:, 1:] *= 1e-6
    write_xdf(path, [stream], start=HEADER)
    proc, arts = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {a["device"]["unit"] for a in arts} == {"microvolts"}
    assert np.abs(samples(arts)).max(axis=0) == pytest.approx([21.0] * 4, abs=4)
    assert len(warnings_with(proc.stderr, "channel A ", "'a.u.'")) == 1, proc.stderr


def test_one_channel_in_volts_declared_as_microvolts_is_named_not_zeroed_silently(sandbox, tmp_path):
    """One channel sent in volts but declared µV beside three right ones: delivered as 0.000
    without a word (only a whole stream of such values was refused)."""
    path = tmp_path / "one_in_volts.xdf"
    stream = eeg_stream(unit="uV")
    stream.values[:, 0] *= 1e-6
    write_xdf(path, [stream], start=HEADER)
    proc, arts = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    said = warnings_with(proc.stderr, "would be delivered as 0.000")
    assert len(said) == 1 and "channel A " in said[0], proc.stderr
    assert np.abs(samples(arts)[:, 1:]).max() > 15  # the right channels as they are


def test_an_exact_zero_channel_is_not_a_unit_problem(sandbox, tmp_path):
    path = tmp_path / "dead_channel.xdf"
    stream = eeg_stream(unit="uV")
    stream.values[:, 3] = 0.0
    write_xdf(path, [stream], start=HEADER)
    proc, _ = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not warnings_with(proc.stderr, "0.000"), proc.stderr


def test_edf_non_voltage_units_named_once_and_no_scalable_signal_said_as_such(sandbox, tmp_path):
    """An EDF whose four EEG signals are not in a voltage gave five warnings (one per signal, then
    the stream's); one whose every signal has physical minimum = maximum said it "holds no signals
    (only annotations)"."""
    import pyedflib

    t = np.arange(2560) / 256
    x = 20 * np.sin(2 * np.pi * 10 * t)
    path = tmp_path / "mmhg.edf"
    writer = pyedflib.EdfWriter(str(path), 4, file_type=pyedflib.FILETYPE_EDFPLUS)
    writer.setSignalHeaders(
        [dict(label=c, dimension=d, sample_frequency=256, physical_min=-50.0, physical_max=50.0,
              digital_min=-32768, digital_max=32767)
         for c, d in (("Fp1", "mmHg"), ("Fp2", "K"), ("O1", "mmHg"), ("O2", "mmHg"))]
    )  # fmt: skip
    writer.writeSamples([x] * 4)
    writer.close()
    proc, arts = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(warnings_with(proc.stderr, "mmHg")) == 1, proc.stderr
    assert "'K' (Fp2)" in warnings_with(proc.stderr, "mmHg")[0]

    data = bytearray(path.read_bytes())
    count = int(data[252:256])
    pmin = 256 + count * (16 + 80 + 8)
    data[pmin + count * 8 : pmin + 2 * count * 8] = data[pmin : pmin + count * 8]  # maximum = minimum
    (tmp_path / "no_range.edf").write_bytes(bytes(data))
    proc, _ = replay(sandbox, tmp_path / "no_range.edf", tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "every signal has physical minimum = maximum" in lines[0], lines


def mixed_raw(tmp_path: Path, sfreq: float = 250.0, seconds: float = 40.0) -> tuple[Path, list[float]]:
    """An MNE Raw as most recordings are: EEG in volts, an EOG channel and a stim channel (code 5
    for 2 samples every 2 s). MNE-LSL's PlayerLSL streams it with an empty stream type."""
    import mne

    n = int(sfreq * seconds)
    t = np.arange(n) / sfreq
    rng = np.random.default_rng(4)
    eeg = 20e-6 * np.sin(2 * np.pi * 10 * t)[None, :] + rng.normal(0, 1e-6, (3, n))
    eog = rng.normal(0, 100e-6, (1, n))
    stim = np.zeros((1, n))
    onsets = [float(s) for s in np.arange(1.0, seconds - 1, 2.0)]
    for s in onsets:
        stim[0, int(s * sfreq) : int(s * sfreq) + 2] = 5
    info = mne.create_info(["Fp1", "O1", "O2", "EOG", "STI 014"], sfreq, ["eeg"] * 3 + ["eog", "stim"])
    raw = mne.io.RawArray(np.vstack([eeg, eog, stim]), info, verbose="error")
    fname = tmp_path / "mixed_raw.fif"
    raw.save(fname, verbose="error")
    return fname, onsets


@pytest.mark.lsl
@pytest.mark.slow
def test_live_mne_lsl_player_of_a_raw_with_eog_and_stim_channels(sandbox, tmp_path):
    """PlayerLSL of a Raw with EEG, EOG and a stim channel (as most recordings) declares no stream
    type: `run --stream-name NAME` found nothing ("no LSL stream matches ... type='EEG'", pointing
    to --stream-name, which was given); with --stream-type '' the stim channel's code 5 (unit "0")
    became 5,000,000 µV of "EEG", every window flagged. Now: found, EEG channels only, in µV, and
    the stim codes as events."""
    import mne_lsl.player as player_lsl

    fname, _ = mixed_raw(tmp_path)
    name = uid("MNE-LSL-Player")
    player = player_lsl.PlayerLSL(fname, chunk_size=10, name=name, source_id=name)
    player.start()
    try:
        arts, times = run_live(sandbox, tmp_path, name)
    finally:
        player.stop()
    assert {tuple(a["device"]["channels"]) for a in arts} == {("Fp1", "O1", "O2")}
    assert {a["device"]["unit"] for a in arts} == {"microvolts"}
    data = samples(arts)
    assert 15 < np.percentile(np.abs(data), 99) < 40
    events = [e for a in arts for e in a["events"]]
    span_s = times[-1] - times[0]
    assert {e["value"] for e in events} == {"5"}
    assert int(span_s / 2) - 1 <= len(events) <= int(span_s / 2) + 1, (len(events), span_s)


def test_replayed_mne_lsl_player_recording_with_eog_and_stim_channels(sandbox, tmp_path):
    """LabRecorder's file of the same stream: no stream type, channel types eeg/eog/stim, units "0".
    It was "no EEG stream"; with --stream NAME, EOG and the stim codes x 1e6 were EEG."""
    sfreq, n = 250.0, 5000
    t = np.arange(n) / sfreq
    rng = np.random.default_rng(5)
    eeg = 20e-6 * np.sin(2 * np.pi * 10 * t)[:, None] + rng.normal(0, 1e-6, (n, 3))
    stim = np.zeros((n, 1))
    for s in (2, 4, 6, 10):
        stim[s * 250 : s * 250 + 5, 0] = {2: 5, 4: 3, 6: 5, 10: 1}[s]
    values = np.hstack([eeg, rng.normal(0, 100e-6, (n, 1)), stim])
    stream = XdfStream(
        "MNE-LSL-Player", "", sfreq, ["Fp1", "O1", "O2", "EOG", "STI 014"], 1000 + t, values,
        source_id="MNE-LSL", unit="0", channel_types=["eeg", "eeg", "eeg", "eog", "stim"],
    )  # fmt: skip
    path = tmp_path / "player_mixed.xdf"
    write_xdf(path, [stream], start=HEADER)
    proc, arts = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {tuple(a["device"]["channels"]) for a in arts} == {("Fp1", "O1", "O2")}
    assert np.abs(samples(arts)).max() < 30
    events = [e for a in arts for e in a["events"]]
    t0 = HEADER.timestamp() * 1000
    assert [(round(e["time_ms"] - t0), e["value"]) for e in events] == [
        (2000, "5"), (4000, "3"), (6000, "5"), (10000, "1")
    ]  # fmt: skip
    said = warnings_with(proc.stderr, "EOG (eog)", "STI 014 (stim)")
    assert len(said) == 1, proc.stderr
    # Named channels win over their declared type.
    proc, arts = replay(sandbox, path, tmp_path, "--stream", "Fp1,EOG")
    assert proc.returncode == 0, proc.stderr
    picked = [a for a in arts if a["stream_id"].endswith(":Fp1,EOG")]
    assert picked and all(a["device"]["channels"] == ["Fp1", "EOG"] for a in picked), arts


@pytest.mark.lsl
def test_a_named_live_stream_of_another_type_is_named_with_the_option_to_pass(tmp_path):
    import pylsl

    name = uid("Named")
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "ExG", 2, 100.0, pylsl.cf_float32, uid("s")))
    try:
        proc = collector(
            ["run", "--local", "--stream-name", name, "--screen", "off", "--duration", "2",
             "--spool", str(tmp_path / "spool")],
            cli_env(),
        )  # fmt: skip
    finally:
        del outlet
    assert proc.returncode == 5
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "its type is 'ExG'" in lines[0] and "--stream-type 'ExG'" in lines[0], lines


def test_unrelatable_clocks_warning_says_which_stream_lacks_offsets(sandbox, tmp_path):
    """EEG on host A without clock offsets, markers on host B with them: the warning said both
    "have no clock offsets", which the markers' 5 offsets contradict."""
    import struct

    import make_xdf

    eeg = eeg_stream(seconds=40.0, hostname="hostA")
    eeg.timestamps = eeg.timestamps + 4000
    marks = XdfStream(
        "Stim", "Markers", 0.0, ["m"], 5000 + 1320 + np.arange(5, 30, 5.0), list("abcde"),
        source_id="stim", unit="", hostname="hostB",
    )  # fmt: skip
    path = tmp_path / "two_hosts.xdf"
    write_xdf(path, [eeg, marks], start=HEADER)
    # The markers' clock offsets (-1320 s) as LabRecorder records them (ClockOffset chunks, tag 4).
    offsets = b"".join(
        make_xdf._chunk(4, struct.pack("<I", 2) + struct.pack("<dd", 5000 + 1320 + t, -1320.0))
        for t in range(0, 50, 10)
    )
    path.write_bytes(path.read_bytes() + offsets)
    proc, arts = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    said = warnings_with(proc.stderr, "different hosts")
    assert len(said) == 1 and "hostA, no clock offsets" in said[0] and "hostB, 5 clock offsets" in said[0]
    t0 = HEADER.timestamp() * 1000
    assert [round(e["time_ms"] - t0) for a in arts for e in a["events"]] == [5000, 10000, 15000, 20000, 25000]


@pytest.mark.parametrize("name", ["muselsl_jitter_n170.csv", "muselsl_jitter_ssaep.csv"])
def test_muselsl_stamp_jitter_is_not_warned_about_as_damage(sandbox, tmp_path, name):
    """Packet-stamp jitter (steps back of up to 28 ms) is what muselsl records: the reader warned
    that timestamps go backwards and that the replay "repairs the stamps ... and says how many",
    then none were repaired and nothing more was said. It is one info line now, no warning."""
    proc, arts = replay(sandbox, FIELD / name, tmp_path, "--start-time", "2024-05-01T10:00:00Z")
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stderr.splitlines() if "WARNING" in line] == []
    said = [line for line in proc.stderr.splitlines() if "go backwards" in line]
    assert len(said) == 1 and " INFO " in said[0] and "jitter" in said[0], said
    assert sum(a["method"]["timestamps_repaired"] for a in arts) == 0
    assert [g for a in arts for g in a["gaps"]] == []


@pytest.mark.lsl
@pytest.mark.slow
def test_replay_to_lsl_keeps_the_recordings_channel_types(sandbox, tmp_path):
    """`replay --to-lsl` of an MNE-LSL player's recording typed every channel EEG, so the live
    consumer took its EOG and stim channels (unit "0": codes x 1e6) as EEG."""
    from cli_runs import start_collector

    sfreq, n = 250.0, 7500
    t = np.arange(n) / sfreq
    rng = np.random.default_rng(6)
    stim = np.zeros((n, 1))
    for s in range(2, 30, 2):
        stim[int(s * sfreq) : int(s * sfreq) + 3, 0] = 7
    values = np.hstack([20e-6 * np.sin(2 * np.pi * 10 * t)[:, None] + rng.normal(0, 1e-6, (n, 2)), stim])
    stream = XdfStream(
        "Player", "", sfreq, ["Fp1", "O1", "STI 014"], 1000 + t, values, source_id="MNE-LSL",
        unit="0", channel_types=["eeg", "eeg", "stim"],
    )  # fmt: skip
    path = tmp_path / "player.xdf"
    write_xdf(path, [stream], start=HEADER)
    name = uid("ToLsl")
    import pylsl

    args = ["replay", str(path), "--to-lsl", "--speed", "1", "--stream-name", name]
    player = start_collector(args, cli_env())
    try:
        assert pylsl.resolve_byprop("name", name, timeout=30), "the player's stream never appeared"
        arts, _ = run_live(sandbox, tmp_path, name, duration="7")
    finally:
        player.terminate()
        player.communicate(timeout=10)  # reads and closes its pipes
    assert {tuple(a["device"]["channels"]) for a in arts} == {("Fp1", "O1")}
    assert np.abs(samples(arts)).max() < 30
    values_got = [e["value"] for a in arts for e in a["events"]]
    assert len(values_got) >= 2 and set(values_got) == {"7"}, values_got


def test_xdf_marker_text_that_is_not_utf8_is_said(sandbox, tmp_path):
    """pyxdf replaces bytes that are not UTF-8 (a Latin-1 "ü") with U+FFFD: the marker was
    delivered as 'm\ufffd\ufffdde' without a word."""
    marks = XdfStream(
        "M", "Markers", 0.0, ["m"], np.array([1002.0, 1004.0]), ["mQQde", "Ärger"], source_id="m", unit=""
    )
    path = tmp_path / "latin1_markers.xdf"
    write_xdf(path, [eeg_stream(seconds=10.0), marks], start=HEADER)
    path.write_bytes(path.read_bytes().replace(b"mQQde", b"m\xfc\xfcde"))  # same length, Latin-1 bytes
    proc, arts = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(warnings_with(proc.stderr, "not UTF-8", "'M'")) == 1, proc.stderr
    assert [e["value"] for a in arts for e in a["events"]][1] == "Ärger"


@pytest.mark.lsl
@pytest.mark.slow
def test_a_live_marker_that_is_not_utf8_does_not_end_the_marker_stream(sandbox, tmp_path):
    """pylsl decodes string samples as strict UTF-8: one Latin-1 marker raised inside the marker
    follower, which then stopped following ("continuing without markers") and every later marker
    of the session was lost. It is read as Latin-1, said once, and the markers go on."""
    import pylsl

    name = uid("Latin1EEG")
    info = pylsl.StreamInfo(f"{name}-markers", "Markers", 1, 0, pylsl.cf_string, uid("m"))
    marks = pylsl.StreamOutlet(info)
    sent: list[str] = []

    def mark(k: int) -> None:
        # Counted from when the collector listens: a loaded machine starts it seconds late.
        if k % 10 == 5 and marks.have_consumers():
            value = f"m{len(sent)}"
            sent.append(value)
            marks.push_sample([b"m\xfcde" if len(sent) == 4 else value.encode()])

    with BlockSender(name, mark):
        arts, _ = run_live(sandbox, tmp_path, name)
    got = [e["value"] for a in arts for e in a["events"]]
    assert "müde" in got, got
    after = got[got.index("müde") + 1 :]
    assert len(after) >= 10, got  # the markers went on after it


@pytest.mark.parametrize("label", ["Trigger", "STI 014", "Status"])
def test_an_edf_trigger_channel_gives_its_codes_as_events(sandbox, tmp_path, label):
    """An EDF whose trigger codes are in a channel (MNE reads `Trigger`/`Status` as stim and
    `find_events` gives the codes) replayed with 0 events, its codes silently left in a stream
    nobody replays (`STI 014` was even taken as an EEG channel)."""
    import pyedflib

    sfreq, n = 256, 2560
    x = 20 * np.sin(2 * np.pi * 10 * np.arange(n) / sfreq)
    trig = np.zeros(n)
    for s, code in ((1, 1), (3, 2), (5, 3), (7, 1)):
        trig[s * sfreq : s * sfreq + 5] = code
    path = tmp_path / "trigger.edf"
    writer = pyedflib.EdfWriter(str(path), 3, file_type=pyedflib.FILETYPE_EDFPLUS)
    writer.setSignalHeaders(
        [dict(label=lab, dimension=dim, sample_frequency=sfreq, physical_min=lo, physical_max=hi,
              digital_min=-32768, digital_max=32767)
         for lab, dim, lo, hi in (("Fp1", "uV", -50, 50), ("Fp2", "uV", -50, 50), (label, "", -32768, 32767))]
    )  # fmt: skip
    writer.setStartdatetime(datetime(2024, 1, 15, 10, 0, 0))
    writer.writeSamples([x, x, trig])
    writer.close()
    proc, arts = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {tuple(a["device"]["channels"]) for a in arts} == {("Fp1", "Fp2")}
    t0 = datetime(2024, 1, 15, 10, tzinfo=timezone.utc).timestamp() * 1000
    events = [(round(e["time_ms"] - t0), e["value"]) for a in arts for e in a["events"]]
    assert events == [(1000, "1"), (3000, "2"), (5000, "3"), (7000, "1")]


def test_edf_export_keeps_annotation_durations_and_a_unit_that_is_not_a_voltage(tmp_path):
    """Delivered MNE-LSL annotations carry `duration_s`; the EDF+ export wrote every annotation
    with no duration. A stream in 'a.u.' was exported with physical dimension 'uV'."""
    import edfio

    sfreq, n = 250.0, 5000
    t = np.arange(n) / sfreq
    volts = 20e-6 * np.sin(2 * np.pi * 10 * t)[:, None] * np.ones((1, 2))
    eeg = XdfStream("P", "eeg", sfreq, ["A", "B"], 1000 + t, volts, source_id="MNE-LSL", unit="0")
    onehot = np.zeros((3, 2), dtype=np.float32)
    onehot[0, 0], onehot[1, 1], onehot[2, 0] = -1, 2.5, 0.75
    ann = XdfStream(
        "P-annotations", "annotations", 0.0, ["eyes closed", "eyes/open"], np.array([1002.0, 1005.0, 1010.0]),
        onehot, source_id="MNE-LSL", unit="none",
    )  # fmt: skip
    path = tmp_path / "annotations.xdf"
    write_xdf(path, [eeg, ann], start=HEADER)
    spool = ["--spool", str(tmp_path / "spool")]
    env = cli_env()
    assert collector(["replay", str(path), "--local", "--speed", "max", *spool], env).returncode == 0
    out = tmp_path / "out.edf"
    proc = collector(["export", "--last", "--format", "edf", "--out", str(out), *spool], env)
    assert proc.returncode == 0, proc.stderr
    got = [(a.onset, a.duration, a.text) for a in edfio.read_edf(out).annotations]
    assert got == [(2.0, None, "eyes closed"), (5.0, 2.5, "eyes/open"), (10.0, 0.75, "eyes closed")]

    au = eeg_stream(seconds=10.0, unit="a.u.")
    write_xdf(tmp_path / "au.xdf", [au], start=HEADER)
    assert (
        collector(["replay", str(tmp_path / "au.xdf"), "--local", "--speed", "max", *spool], env).returncode
        == 0
    )
    proc = collector(["export", "--last", "--format", "edf", "--out", str(out), *spool], env)
    assert proc.returncode == 0, proc.stderr
    assert {s.physical_dimension for s in edfio.read_edf(out).signals} == {"a.u."}


@pytest.mark.lsl
@pytest.mark.slow
def test_live_string_markers_sampled_at_a_rate_give_only_the_sent_values(sandbox, tmp_path):
    """A stimulus tool streaming a string channel at 256 Hz, mostly empty: live, only the
    non-empty samples are events (the README's rule for replay, said to hold live too)."""
    import pylsl

    name = uid("SampledEEG")
    info = pylsl.StreamInfo(f"{name}-markers", "Markers", 1, 256.0, pylsl.cf_string, uid("m"))
    marks = pylsl.StreamOutlet(info)
    sent: list[str] = []

    def mark(k: int) -> None:
        rows = [[""]] * 8
        if k % 16 == 5:
            sent.append(f"stim{len(sent)}")
            rows = [[""]] * 3 + [[sent[-1]]] + [[" "]] + [[""]] * 3
        marks.push_chunk(rows)

    with BlockSender(name, mark):
        arts, _ = run_live(sandbox, tmp_path, name)
    got = [e["value"] for a in arts for e in a["events"]]
    assert got and all(v.startswith("stim") for v in got), got[:20]
    assert len(got) >= 10 and "".join(got) in "".join(sent), (got, sent)
