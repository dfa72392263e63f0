"""LslSource against real LSL outlets on loopback: a real Muse recording played and read back
sample for sample, a lost-and-back stream, several matching streams, headers and AUX channels.
Every test uses its own uuid-suffixed stream names and source_ids."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
from recordings import MUSE, pyxdf_eeg

from collector.core.channels import split_channels
from collector.core.records import EegSource
from collector.devices.lsl.discovery import build_predicate, list_streams
from collector.devices.lsl.source import LslSource
from collector.devices.player import XdfPlayer, make_eeg_info
from collector.errors import NoSourceError


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def drain(source: LslSource, n: int, deadline_s: float = 60.0) -> list:
    chunks, got = [], 0
    deadline = time.monotonic() + deadline_s
    while got < n and time.monotonic() < deadline:
        chunk = source.read(0.5)
        if chunk is not None:
            chunks.append(chunk)
            got += len(chunk)
    return chunks


@pytest.mark.lsl
def test_muse_recording_played_through_lsl_arrives_sample_for_sample():
    expected, stamps_s = pyxdf_eeg(MUSE, channels=4)
    name = uid("muse-replay")
    with XdfPlayer(MUSE, stream_name=name, source_id=name, speed=None, wait_for_consumer_s=30, markers=False):
        with LslSource(source_id=name, resolve_timeout_s=10.0) as source:
            assert isinstance(source, EegSource)
            d = source.description
            chunks = drain(source, len(expected))
    assert d.name == name and d.source_id == name and d.sfreq == 256.0 and d.unit == "microvolts"
    assert d.channels == ("TP9", "AF7", "AF8", "TP10") and d.aux_channels == ("Right AUX",)
    data = np.concatenate([c.data for c in chunks])
    times = np.concatenate([c.times_ms for c in chunks])
    assert data.shape == (30_732, 4)
    np.testing.assert_array_equal(data, expected)
    # Stamps keep the recorded spacing (the player stamps start + recorded offset). The live
    # source fits the stream's clock again on the stamps the player pushes (the replay's own
    # fitted times): that second fit moves them by up to 20 µs here (measured 19.5 µs from
    # sample 12,608 on), so 25 µs, not the 10 µs of unfitted stamps; still 0.6 % of a period.
    np.testing.assert_allclose(times - times[0], (stamps_s - stamps_s[0]) * 1000.0, atol=0.025)
    assert abs(times[0] / 1000.0 - time.time()) < 120  # Unix ms, not LSL seconds or 1970
    assert not any(c.gaps for c in chunks)


_PUBLISH = """
import sys, time
import numpy as np, pylsl
from collector.devices.player import make_eeg_info
name, source_id, first, n, sfreq = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), 100.0
outlet = pylsl.StreamOutlet(make_eeg_info(name, source_id, ["A", "B"], sfreq))
outlet.wait_for_consumers(10)
t0 = pylsl.local_clock()
for k in range(0, n, 10):
    idx = np.arange(first + k, first + k + 10)
    outlet.push_chunk(np.stack([idx, -idx], 1).astype(np.float32), (t0 + (idx - first) / sfreq).tolist())
    time.sleep(0.1)
time.sleep(0.5)  # let the inlet drain before the outlet disappears
"""


def _publish(name: str, source_id: str, first: int, n: int) -> subprocess.Popen:
    """n samples (values first, first + 1, ...) at 100 Hz from another process, which then ends:
    its stream is lost to our inlet. A process of its own, as a device would be (liblsl crashed,
    rarely, when an outlet was destroyed in a thread of the process whose inlet read it)."""
    return subprocess.Popen([sys.executable, "-c", _PUBLISH, name, source_id, str(first), str(n)])


@pytest.mark.lsl
@pytest.mark.parametrize("with_source_id", [True, False], ids=["by-source-id", "by-name"])
def test_lost_stream_is_waited_for_re_resolved_and_the_gap_reported(caplog, with_source_id):
    caplog.set_level(logging.INFO, logger="collector.devices.lsl")
    name = uid("lost")
    sid = name if with_source_id else ""  # without one, liblsl cannot recover it: we re-resolve by name
    first = _publish(name, sid, 0, 50)
    source = LslSource(
        stream_name=None if with_source_id else name,
        source_id=sid or None,
        resolve_timeout_s=10.0,
        lost_after_s=0.5,
        reconnect_resolve_s=0.3,
    )
    second = None
    try:
        source.open()
        chunks = []
        deadline = time.monotonic() + 40
        while sum(len(c) for c in chunks) < 100 and time.monotonic() < deadline:
            chunk = source.read(0.2)  # never raises, whatever the stream does
            if chunk is not None:
                chunks.append(chunk)
            if second is None and source.lost:
                first.wait(10)
                second = _publish(name, sid, 1000, 50)
    finally:
        source.close()
        for proc in (first, second):
            if proc is not None:
                proc.kill()
                proc.wait()
    values = np.concatenate([c.data[:, 0] for c in chunks])
    np.testing.assert_array_equal(values, np.r_[np.arange(50), np.arange(1000, 1050)])
    gaps = [g for c in chunks for g in c.gaps]
    assert len(gaps) == 1
    times = np.concatenate([c.times_ms for c in chunks])
    assert gaps[0].start_ms == times[49] and gaps[0].end_ms == times[50]
    assert gaps[0].end_ms - gaps[0].start_ms > 500
    assert source.reconnects == 1 and not source.lost
    assert "stream lost, waiting" in caplog.text


@pytest.mark.lsl
def test_several_matching_streams_say_which_was_taken_and_how_to_pick_another(caplog):
    import pylsl

    caplog.set_level(logging.INFO, logger="collector.devices.lsl")
    name = uid("twin")
    a, b = f"{name}-a", f"{name}-b"
    outlets = [pylsl.StreamOutlet(make_eeg_info(name, sid, ["C3", "C4"], 128.0)) for sid in (b, a)]
    try:
        source = LslSource(stream_name=name, resolve_timeout_s=5.0)
        d = source.open()
        source.close()
        assert d.source_id == a  # deterministic: sorted by name, source_id, host
        assert "2 LSL streams match" in caplog.text and "--source-id" in caplog.text and b in caplog.text
        with LslSource(source_id=b, resolve_timeout_s=5.0) as chosen:
            assert chosen.description.source_id == b
    finally:
        del outlets


@pytest.mark.lsl
def test_no_matching_stream_is_a_one_line_no_source_error():
    with pytest.raises(NoSourceError) as info:
        LslSource(stream_name=uid("absent"), resolve_timeout_s=0.3).open()
    message = str(info.value)
    assert "\n" not in message and "--stream-name" in message


@pytest.mark.lsl
def test_header_labels_units_and_profile_aux_channels():
    import pylsl

    name = uid("header")
    info = make_eeg_info(name, name, ["Fp1", "Fp2", "EXG1", "AUX2"], 500.0, units=["uV", "uV", "uV", "uV"])
    outlet = pylsl.StreamOutlet(info)
    markers = pylsl.StreamOutlet(pylsl.StreamInfo(f"{name}-m", "EEG", 1, 0, "string", f"{name}-m"))
    try:
        with LslSource(source_id=name, aux_channels=["EXG1"], model="TestAmp") as source:
            d = source.description
        assert d.channels == ("Fp1", "Fp2") and d.aux_channels == ("EXG1", "AUX2")
        assert d.sfreq == 500.0 and d.unit == "microvolts" and d.model == "TestAmp" and d.hostname
        with pytest.raises(NoSourceError, match="strings"):
            LslSource(source_id=f"{name}-m", resolve_timeout_s=5.0).open()
        listed = {s.source_id: s for s in list_streams(1.0)}
        assert listed[name].labels == ("Fp1", "Fp2", "EXG1", "AUX2") and listed[name].channel_count == 4
        assert listed[name].sfreq == 500.0 and listed[f"{name}-m"].channel_format == "string"
    finally:
        del outlet, markers


def test_split_channels_by_label_and_profile():
    s = split_channels(("TP9", "AF7", "AF8", "TP10", "Right AUX"))
    assert s.eeg_labels == ("TP9", "AF7", "AF8", "TP10") and s.eeg_index == (0, 1, 2, 3)
    assert s.aux_labels == ("Right AUX",)
    s = split_channels(("Fz", "Cz", "ECG"), eeg=["Fz", "Cz"])
    assert s.eeg_labels == ("Fz", "Cz") and s.aux_labels == ("ECG",)
    # A profile that does not describe the stream at all does not drop everything.
    assert split_channels(("ch1", "ch2"), eeg=["TP9"]).eeg_labels == ("ch1", "ch2")


def test_predicates_quote_values():
    # Types match case-insensitively (MNE-LSL declares "eeg"); XPath 1.0 folds case with translate().
    folded = "translate(type,'ABCDEFGHIJKLMNOPQRSTUVWXYZ','abcdefghijklmnopqrstuvwxyz')='eeg'"
    assert build_predicate(name="Muse", type="EEG") == f"name='Muse' and {folded}"
    assert build_predicate(type="eeg") == build_predicate(type="EEG")
    assert build_predicate(source_id="it's") == 'source_id="it\'s"'
    assert build_predicate() == ""


@pytest.mark.lsl
def test_a_missing_packet_in_the_stamps_is_reported_as_a_gap():
    import pylsl

    name = uid("hole")
    outlet = pylsl.StreamOutlet(make_eeg_info(name, name, ["TP9", "AF7"], 256.0))
    try:
        with LslSource(source_id=name, resolve_timeout_s=10.0) as source:
            t0 = pylsl.local_clock()
            idx = np.r_[np.arange(0, 48), np.arange(60, 96)]  # samples 48..59 never sent (one BLE packet)
            outlet.push_chunk(np.stack([idx, idx], 1).astype(np.float32), (t0 + idx / 256.0).tolist())
            chunks = drain(source, idx.size, deadline_s=20)
    finally:
        del outlet
    times = np.concatenate([c.times_ms for c in chunks])
    gaps = [g for c in chunks for g in c.gaps]
    assert len(gaps) == 1
    assert gaps[0].start_ms == times[47] and gaps[0].end_ms == times[48]
    assert gaps[0].end_ms - gaps[0].start_ms == pytest.approx(13 * 1000 / 256, abs=0.01)
