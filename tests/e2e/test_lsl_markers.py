"""LslSource picks up a live LSL marker stream: markers pushed next to EEG samples arrive as Events
on the EEG's Unix-ms time line, a missing or lost marker stream never delays or disturbs the EEG,
and the player's `<name>-markers` outlet of a real Muse recording is followed. Real LSL outlets on
loopback, uuid-suffixed names per test."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from recordings import pyxdf_eeg, pyxdf_stream

from collector.devices.lsl.source import LslSource
from collector.devices.player import XdfPlayer, make_eeg_info, make_marker_info
from collector.devices.recordings.model import marker_value

MUSE = Path(__file__).parents[2] / "collector" / "data" / "muse-p300-subject1.xdf"

pytestmark = pytest.mark.lsl


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_for_markers(source: LslSource, timeout_s: float = 5.0) -> str:
    deadline = time.monotonic() + timeout_s
    while source.marker_stream is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert source.marker_stream is not None, "no marker stream was taken"
    return source.marker_stream


def read_until(source: LslSource, done, deadline_s: float = 10.0) -> list:
    chunks = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        chunk = source.read(0.1)
        if chunk is not None:
            chunks.append(chunk)
            if done(chunks):
                break
    return chunks


def push_pairs(eeg, markers, values: list[str], period_s: float = 0.02) -> None:
    """Sample k carries value k; the marker of the same moment says values[k]. Both stamped by liblsl."""
    for k, value in enumerate(values):
        eeg.push_sample([float(k), -float(k)])
        if markers is not None:
            markers.push_sample([value])
        time.sleep(period_s)


def test_markers_arrive_as_events_on_the_eeg_time_line(caplog):
    import pylsl

    caplog.set_level(logging.INFO, logger="collector.devices.lsl")
    name = uid("mk")
    eeg = pylsl.StreamOutlet(make_eeg_info(name, name, ["A", "B"], 50.0))
    markers = pylsl.StreamOutlet(make_marker_info(f"{name}-markers", f"{name}-markers"))
    # A decoy on the same host: the preferred name wins over it.
    decoy = pylsl.StreamOutlet(make_marker_info(uid("decoy"), uid("decoy")))
    values = [f"stim-{k}" for k in range(20)]
    try:
        with LslSource(source_id=name, resolve_timeout_s=10.0) as source:
            taken = wait_for_markers(source)
            push_pairs(eeg, markers, values)
            decoy.push_sample(["not ours"])
            chunks = read_until(
                source, lambda cs: sum(len(c.events) for c in cs) >= 20 and sum(len(c) for c in cs) >= 20
            )
    finally:
        del eeg, markers, decoy
    assert f"{name}-markers" in taken and f"{name}-markers" in caplog.text
    events = [e for c in chunks for e in c.events]
    assert [e.value for e in events] == values
    data = np.concatenate([c.data[:, 0] for c in chunks])
    times = np.concatenate([c.times_ms for c in chunks])
    np.testing.assert_array_equal(data, np.arange(20))
    diffs = np.array([e.time_ms - times[k] for k, e in enumerate(events)])
    assert np.all(np.abs(diffs) < 5.0), diffs  # pushed back to back: same moment within a few ms
    assert abs(events[0].time_ms / 1000.0 - time.time()) < 60  # Unix ms


def test_no_marker_stream_means_no_events_and_no_delay(monkeypatch):
    import functools

    import pylsl

    import collector.devices.lsl.source as lsl_module

    # A marker search that takes 5 s: if open, read or close waited for it, it would show far above
    # the bounds below, which leave room for a loaded machine.
    monkeypatch.setattr(
        lsl_module, "MarkerFollower", functools.partial(lsl_module.MarkerFollower, resolve_timeout_s=5.0)
    )
    name = uid("nomk")
    eeg = pylsl.StreamOutlet(make_eeg_info(name, name, ["A", "B"], 50.0))
    try:
        started = time.monotonic()
        source = LslSource(source_id=name, resolve_timeout_s=10.0)
        source.open()
        open_s = time.monotonic() - started  # the marker search (5 s here) must not be in here
        try:
            eeg.push_sample([1.0, 2.0])
            assert source.read(2.0) is not None  # the first read waits once for LSL's time correction
            latencies, chunks = [], []
            for k in range(10):
                pushed = time.monotonic()
                eeg.push_sample([float(k), 0.0])
                chunk = source.read(2.0)
                latencies.append(time.monotonic() - pushed)
                chunks.append(chunk)
            assert source.marker_stream is None
        finally:
            started = time.monotonic()
            source.close()
            close_s = time.monotonic() - started
    finally:
        del eeg
    assert open_s < 2.5 and close_s < 2.5, (open_s, close_s)
    assert all(c is not None and c.events == () for c in chunks)
    assert max(latencies) < 1.0, latencies


def test_markers_off_and_a_named_multichannel_marker_stream():
    import pylsl

    name = uid("named")
    eeg = pylsl.StreamOutlet(make_eeg_info(name, name, ["A", "B"], 50.0))
    auto = pylsl.StreamOutlet(make_marker_info(f"{name}-markers", f"{name}-markers"))
    mk_name = uid("trig")  # not the preferred name, two int channels: joined as marker_value joins them
    trig = pylsl.StreamOutlet(pylsl.StreamInfo(mk_name, "Events", 2, 0, "int32", mk_name))
    try:
        with (
            LslSource(source_id=name, markers=mk_name) as named,
            LslSource(source_id=name, markers="off") as off,
        ):
            assert mk_name in wait_for_markers(named)
            for k in range(3):
                eeg.push_sample([float(k), 0.0])
                trig.push_sample([k, 7])
                auto.push_sample(["ignored"])
                time.sleep(0.02)
            got = read_until(named, lambda cs: sum(len(c.events) for c in cs) >= 3)
            plain = read_until(off, lambda cs: sum(len(c) for c in cs) >= 3)
            time.sleep(0.2)
            plain += [c for c in [off.read(0.1)] if c is not None]
            assert off.marker_stream is None
    finally:
        del eeg, auto, trig
    assert [e.value for c in got for e in c.events] == ["0,7", "1,7", "2,7"]
    assert [e for c in plain for e in c.events] == []
    assert marker_value([0.0, 7.0]) == "0,7"  # the XDF reader's joining, which the live path reuses


def test_a_lost_marker_stream_never_disturbs_the_eeg():
    import pylsl

    name = uid("lostmk")
    eeg = pylsl.StreamOutlet(make_eeg_info(name, name, ["A", "B"], 50.0))
    markers = pylsl.StreamOutlet(make_marker_info(f"{name}-markers", ""))  # no source_id: liblsl gives up
    try:
        with LslSource(source_id=name, markers_retry_s=0.5) as source:
            wait_for_markers(source)
            push_pairs(eeg, markers, ["a", "b"])
            del markers
            pushed = time.monotonic()
            for k in range(2, 40):
                eeg.push_sample([float(k), 0.0])
                time.sleep(0.01)
            chunks = read_until(source, lambda cs: sum(len(c) for c in cs) >= 40)
            elapsed = time.monotonic() - pushed
            # The stream comes back: followed again.
            again = pylsl.StreamOutlet(make_marker_info(f"{name}-markers", ""))
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                if source.marker_stream is not None and again.have_consumers():
                    break
                time.sleep(0.05)
            again.push_sample(["c"])
            deadline = time.monotonic() + 5
            k = 40
            while time.monotonic() < deadline and not any(e.value == "c" for c in chunks for e in c.events):
                eeg.push_sample([float(k), 0.0])
                k += 1
                chunk = source.read(0.1)
                if chunk is not None:
                    chunks.append(chunk)
            del again
    finally:
        del eeg
    data = np.concatenate([c.data[:, 0] for c in chunks])
    np.testing.assert_array_equal(data[:40], np.arange(40))
    assert elapsed < 3.0
    assert [e.value for c in chunks for e in c.events] == ["a", "b", "c"]


def test_the_players_marker_outlet_is_followed():
    _, eeg_times_s = pyxdf_eeg(MUSE)
    mk = pyxdf_stream(MUSE, type_="Markers")
    speed = 10.0
    name = uid("p300")
    with XdfPlayer(MUSE, stream_name=name, source_id=name, speed=speed, wait_for_consumer_s=30):
        with LslSource(source_id=name, resolve_timeout_s=10.0) as source:
            wait_for_markers(source)
            chunks = read_until(source, lambda cs: sum(len(c.events) for c in cs) >= 8, deadline_s=15)
    events = [e for c in chunks for e in c.events]
    assert len(events) >= 8
    t0_ms = float(chunks[0].times_ms[0])  # the recording's first EEG sample
    file_rel_s = mk["time_stamps"] - eeg_times_s[0]
    for e in events:
        rel_s = (e.time_ms - t0_ms) / 1000.0 * speed
        k = int(np.argmin(np.abs(file_rel_s - rel_s)))
        assert abs(file_rel_s[k] - rel_s) * 1000.0 < 1.0 * speed  # within 1 ms of played time
        assert e.value == str(mk["time_series"][k][0])


def test_auto_never_follows_the_markers_of_another_eeg_stream(caplog):
    """review13 #2: A has no marker stream of its own; B's `B-markers` is on the same host (another
    session, another `replay --to-lsl`). Auto must follow none and say how to pick one."""
    import pylsl

    caplog.set_level(logging.INFO, logger="collector.devices.lsl")
    a, b = uid("mkA"), uid("mkB")
    eeg_a = pylsl.StreamOutlet(make_eeg_info(a, a, ["A", "B"], 50.0))
    eeg_b = pylsl.StreamOutlet(make_eeg_info(b, b, ["A", "B"], 50.0))
    markers_b = pylsl.StreamOutlet(make_marker_info(f"{b}-markers", f"{b}-replay-markers"))
    try:
        with LslSource(source_id=a, resolve_timeout_s=10.0, markers_retry_s=0.5) as source:
            deadline = time.monotonic() + 4.0
            while time.monotonic() < deadline:
                markers_b.push_sample(["not A's"])
                eeg_a.push_sample([1.0, 2.0])
                chunk = source.read(0.1)
                assert chunk is None or chunk.events == ()
                assert source.marker_stream is None
    finally:
        del eeg_a, eeg_b, markers_b
    assert "following LSL stream" not in caplog.text
    warned = [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "markers_not_followed"]
    assert len(warned) == 1, caplog.text  # said once, not at every retry
    assert f"{b}-markers" in warned[0] and "--markers NAME" in warned[0]


def test_a_remote_marker_streams_own_clock_correction_places_its_markers():
    """EEG and markers from two senders whose LSL clocks run 300 s and 1000 s ahead of ours (each in
    its own time namespace, as on other machines): every marker lands at the Unix time it was sent
    (its value), on the EEG's time line, with the marker inlet's own time correction (about -1000 s),
    not the EEG's (-300 s) and not none."""
    from other_clock import OtherClockOutlet, time_namespace

    eeg_clock, marker_clock = time_namespace(300.0), time_namespace(1000.0)
    if eeg_clock is None or marker_clock is None:
        pytest.skip("no Linux time namespace here (needs root or user namespaces, kernel 5.6+)")
    name = uid("remote")
    with (
        OtherClockOutlet(eeg_clock, "eeg", name, 50.0, 4.0),
        OtherClockOutlet(marker_clock, "markers", name, 5, 0.3) as markers,
    ):
        with LslSource(source_id=name, resolve_timeout_s=10.0) as source:
            wait_for_markers(source, timeout_s=10.0)
            chunks, read_at = [], []
            deadline = time.monotonic() + 15.0
            while time.monotonic() < deadline:
                chunk = source.read(0.1)
                if chunk is not None:
                    chunks.append(chunk)
                    read_at.append(time.time() * 1000.0)
                    if sum(len(c.events) for c in chunks) >= 5 and sum(len(c) for c in chunks) >= 150:
                        break
    sent = [float(line.split()[1]) for line in markers.lines]
    events = [e for c in chunks for e in c.events]
    assert [e.value for e in events] == [f"{ms:.3f}" for ms in sent]
    off_s = [(e.time_ms - ms) / 1000.0 for e, ms in zip(events, sent, strict=True)]
    assert np.all(np.abs(off_s) < 0.005), f"markers {off_s} s from the Unix time they were sent"
    # The EEG, on its own correction, is on the same Unix time line: each read's samples are recent.
    for chunk, at_ms in zip(chunks, read_at, strict=True):
        if len(chunk):
            assert 0 <= at_ms - chunk.times_ms[-1] < 5000, "EEG samples not on the Unix time line"
    eeg_ms = np.concatenate([c.times_ms for c in chunks])
    assert eeg_ms[0] < events[0].time_ms and events[-1].time_ms < eeg_ms[-1]
