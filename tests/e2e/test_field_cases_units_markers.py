"""Issue 19 parts 2-5 through the real `collector replay --speed max` against the sandbox: declared
units converted to µV, markers as people sent them (sampled strings, MNE-LSL annotations, BioSemi
Status), clocks that cannot be related, and EDF/BDF files as people write them."""

from __future__ import annotations

import numpy as np
import pytest
from test_field_cases import XdfStream, chunks_of, events_of, field, replay, write_xdf

pytestmark = pytest.mark.slow


def samples_of(chunks: list[dict]) -> np.ndarray:
    return np.concatenate([np.asarray(c["samples"], dtype=float) for c in chunks])


def test_field_case_mne_lsl_player_volts_become_microvolts_and_annotations_events(sandbox, tmp_path):
    proc, summary = replay(sandbox, field("mne_lsl_player.xdf"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    chunks = chunks_of(sandbox)
    data = samples_of(chunks)
    assert data.shape == (10_000, 4)
    assert 15 < np.percentile(np.abs(data), 99.5) < 40  # about ±20 µV, not 0.000
    assert {c["device"]["unit"] for c in chunks} == {"microvolts"}
    powers = [c["band_powers"] for c in chunks if c["band_powers"]]
    assert np.mean([p["alpha"] for p in powers]) > 0.5
    absolute = [
        np.mean([bands["alpha"] for bands in w["absolute"].values()])
        for c in chunks
        for w in c["windows"]
        if w["absolute"]
    ]
    assert absolute and 100 < np.median(absolute) < 400, absolute[:3]
    events = events_of(chunks)
    assert [e["value"] for e in events] == ["eyes_closed", "eyes_open"] * 3
    assert "flat" not in proc.stderr


def test_field_case_sampled_string_markers_only_non_empty_samples(sandbox, tmp_path):
    proc, summary = replay(sandbox, field("sampled_string_markers.xdf"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = events_of(chunks_of(sandbox))
    assert len(events) == 10 == summary["markers"]
    assert all(e["value"].strip(", ") for e in events)


def _eeg_xdf(path, values: np.ndarray, unit: str, *extra: XdfStream) -> None:
    n = values.shape[0]
    stamps = 5000.0 + np.arange(n) / 256.0
    write_xdf(
        path,
        [
            XdfStream(
                "UnitEEG", "eeg", 256.0, ["C3", "C4"], stamps, values.astype(np.float32), "unit-eeg", unit
            ),
            *extra,
        ],
    )


def _rhythm(n: int, amplitude: float) -> np.ndarray:
    t = np.arange(n) / 256.0
    return amplitude * np.column_stack([np.sin(2 * np.pi * 10 * t), np.cos(2 * np.pi * 10 * t)])


@pytest.mark.parametrize(
    ("unit", "amplitude"), [("mV", 0.02), ("nV", 20_000.0), ("\u00b5V", 20.0), ("-6", 20.0)]
)
def test_declared_voltage_units_become_microvolts(sandbox, tmp_path, unit, amplitude):
    path = tmp_path / "units.xdf"
    _eeg_xdf(path, _rhythm(256 * 10, amplitude), unit)
    proc, _ = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = samples_of(chunks_of(sandbox))
    assert np.max(np.abs(data)) == pytest.approx(20.0, rel=0.01)


def test_unknown_unit_named_once_and_values_kept(sandbox, tmp_path):
    path = tmp_path / "au.xdf"
    _eeg_xdf(path, _rhythm(256 * 10, 3.0), "a.u.")
    proc, _ = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    chunks = chunks_of(sandbox)
    assert np.max(np.abs(samples_of(chunks))) == pytest.approx(3.0, rel=0.01)
    assert {c["device"]["unit"] for c in chunks} == {"a.u."}
    assert sum("'a.u.'" in line and "not a voltage" in line for line in proc.stderr.splitlines()) == 1


def test_volts_declared_as_microvolts_are_refused_not_sent_as_zeros(sandbox, tmp_path):
    path = tmp_path / "volts_as_uv.xdf"
    _eeg_xdf(path, _rhythm(256 * 10, 2e-5), "microvolts")
    proc, _ = replay(sandbox, path, tmp_path)
    assert proc.returncode != 0
    assert "would be delivered as 0.000" in proc.stderr
    assert chunks_of(sandbox) == []


def _bdf_with_status(path, idle: int, codes=(1, 2, 3, 1, 2), status_bits: int = 0x100000) -> None:
    """A BioSemi-like BDF (edfio): 2 EEG channels, and a Status channel whose words are
    `status_bits | idle` at rest and `status_bits | idle | code` for five 10 ms pulses."""
    import edfio

    sf, n = 256, 256 * 20
    t = np.arange(n) / sf
    eeg = [
        edfio.BdfSignal(20 * np.sin(2 * np.pi * 10 * t) + i, sf, label=f"A{i + 1}", physical_dimension="uV",
                        physical_range=(-500, 500))
        for i in range(2)
    ]  # fmt: skip
    status = np.full(n, idle | status_bits, dtype=np.int64)
    for k, code in enumerate(codes):
        start = (2 + 3 * k) * sf
        status[start : start + 3] = idle | status_bits | code  # 3 samples at 256 Hz: about 10 ms
    status = np.where(status >= 2**23, status - 2**24, status)  # 24-bit two's complement
    full = (-(2**23), 2**23 - 1)
    trigger = edfio.BdfSignal(status.astype(float), sf, label="Status", physical_dimension="Boolean",
                              physical_range=full, digital_range=full)  # fmt: skip
    edfio.Bdf([*eeg, trigger]).write(path)


@pytest.mark.parametrize("idle", [0xFF00, 0x0000])
def test_bdf_status_pulses_are_five_events_with_their_codes(sandbox, tmp_path, idle):
    path = tmp_path / "status.bdf"
    _bdf_with_status(path, idle)
    proc, summary = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = events_of(chunks_of(sandbox))
    assert [e["value"] for e in events] == ["1", "2", "3", "1", "2"]
    times = np.asarray([e["time_ms"] for e in events])
    assert np.diff(times) == pytest.approx([3000.0] * 4, abs=1)


# -- part 5: EDF/BDF as people write them ------------------------------------------------------------


def test_field_case_edf_latin1_text_is_read(sandbox, tmp_path):
    proc, _ = replay(sandbox, field("edf_latin1_text.edf"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    chunks = chunks_of(sandbox)
    assert {c["device"]["unit"] for c in chunks} == {"microvolts"}  # the Latin-1 µ byte is µV
    assert samples_of(chunks).shape == (5120, 4)
    values = [e["value"] for e in events_of(chunks)]
    assert values == ["Augen geschlossen - Ruhe", "Augen offen (è)", "müde", "Ärger/Stress ÄÖÜß"]
    assert "corrupt" not in proc.stderr


def test_field_case_edf_channel_without_range_left_out_and_others_pickable(sandbox_factory, tmp_path):
    path = field("edf_channel_pmin_eq_pmax.edf")
    sandbox = sandbox_factory()
    proc, _ = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    chunks = chunks_of(sandbox)
    assert chunks[0]["device"]["channels"] == ["E1", "E2", "E3", "E4"]
    assert sum("'E129'" in line for line in proc.stderr.splitlines()) == 1
    picked = sandbox_factory()
    proc, _ = replay(picked, path, tmp_path / "picked", "--stream", "E1,E3")
    assert proc.returncode == 0, proc.stderr
    assert chunks_of(picked)[0]["device"]["channels"] == ["E1", "E3"]


def _edf(path) -> None:
    import edfio

    t = np.arange(256 * 10) / 256
    signals = [
        edfio.EdfSignal(20 * np.sin(2 * np.pi * 10 * t) + i, 256, label=f"C{i + 3}", physical_dimension="uV",
                        physical_range=(-500, 500))
        for i in range(2)
    ]  # fmt: skip
    edfio.Edf(signals).write(path)


def test_edf_whose_header_says_minus_one_records_is_read_and_a_cut_one_is_not(sandbox, tmp_path):
    path = tmp_path / "minus_one.edf"
    _edf(path)
    raw = bytearray(path.read_bytes())
    raw[236:244] = b"-1      "
    path.write_bytes(bytes(raw))
    proc, _ = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert samples_of(chunks_of(sandbox)).shape == (2560, 2)
    cut = tmp_path / "cut.edf"
    full = tmp_path / "full.edf"
    _edf(full)
    cut.write_bytes(full.read_bytes()[:-700])
    proc, _ = replay(sandbox, cut, tmp_path / "cut")
    assert proc.returncode != 0 and "corrupt or truncated" in proc.stderr


# -- part 4: clocks that cannot be related -------------------------------------------------------------


def _two_host_xdf(path, marker_t0: float, marker_host: str) -> None:
    n = 256 * 40
    stamps = 5000.0 + np.arange(n) / 256.0
    eeg = XdfStream("RemoteEEG", "EEG", 256.0, ["C3", "C4"], stamps, _rhythm(n, 20.0).astype(np.float32),
                    "remote-eeg", "microvolts", "eeg-pc")  # fmt: skip
    times = marker_t0 + np.arange(5) * 4.0
    mk = XdfStream("Stim", "Markers", 0.0, ["m"], times, [f"s{i}" for i in range(5)], "stim", "", marker_host)
    write_xdf(path, [eeg, mk])  # make_xdf writes no ClockOffset chunks


@pytest.mark.parametrize(
    ("marker_t0", "host", "moved", "warned"),
    [
        (5000.0 + 1320.0, "stim-pc", True, True),
        (5010.0, "stim-pc", False, True),
        (5000.0 + 1320.0, "eeg-pc", False, False),
    ],
)
def test_two_hosts_without_clock_offsets_are_named_and_far_markers_not_delivered_far(
    sandbox, tmp_path, marker_t0, host, moved, warned
):
    path = tmp_path / "two_hosts.xdf"
    _two_host_xdf(path, marker_t0, host)
    proc, summary = replay(sandbox, path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    chunks = chunks_of(sandbox)
    events = events_of(chunks)
    assert len(events) == 5 == summary["markers"]
    lines = [line for line in proc.stderr.splitlines() if "no clock offsets" in line]
    assert len(lines) == (1 if warned else 0)
    if warned:
        assert "RemoteEEG" in lines[0] and "Stim" in lines[0] and "stim-pc" in lines[0]
    first = chunks[0]["t0_ms"]
    offset_s = (events[0]["time_ms"] - first) / 1000.0
    expected = 0.0 if moved else marker_t0 - 5000.0
    assert offset_s == pytest.approx(expected, abs=0.01)
