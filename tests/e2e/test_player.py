"""The XDF player and the synthetic stream, checked with plain pylsl inlets: header, markers,
real-time stamps, looping, stopping, and scripts/simulate_stream.py."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from recordings import MUSE, SHARED, pyxdf_eeg, pyxdf_stream

from collector.devices.lsl.source import LslSource
from collector.devices.player import XdfPlayer, play_sine_to_lsl

REPO = Path(__file__).parents[2]
MINIMAL = SHARED / "xdf-example-minimal.xdf"

pytestmark = pytest.mark.lsl


def need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    return path


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def inlet_for(source_id: str, timeout: float = 10.0):
    import pylsl

    found = pylsl.resolve_byprop("source_id", source_id, minimum=1, timeout=timeout)
    assert found, f"no stream {source_id}"
    inlet = pylsl.StreamInlet(found[0], max_buflen=360)
    inlet.open_stream(timeout=5)
    return inlet


def pull(inlet, n: int, deadline_s: float = 30.0):
    values, stamps = [], []
    deadline = time.monotonic() + deadline_s
    while len(stamps) < n and time.monotonic() < deadline:
        v, t = inlet.pull_chunk(timeout=0.2, max_samples=4096)
        values += v
        stamps += t
    return values, np.asarray(stamps)


def test_header_carries_labels_units_rate_and_all_channels():
    name = uid("hdr")
    with XdfPlayer(need(MUSE), stream_name=name, source_id=name, speed=1.0, markers=False):
        inlet = inlet_for(name)
        info = inlet.info(timeout=5)
        assert info.name() == name and info.type() == "EEG" and info.nominal_srate() == 256.0
        assert info.channel_count() == 5 and info.channel_format() == 1  # float32, as recorded
        assert info.get_channel_labels() == ["TP9", "AF7", "AF8", "TP10", "Right AUX"]
        assert info.get_channel_units() == ["microvolts"] * 5
        assert info.get_channel_types() == ["EEG", "EEG", "EEG", "EEG", "AUX"]
        del inlet


def test_markers_are_published_with_their_recorded_offsets():
    path = need(MUSE)
    _, eeg_times_s = pyxdf_eeg(path)
    markers = pyxdf_stream(path, type_="Markers")
    name = uid("mk")
    with XdfPlayer(path, stream_name=name, source_id=name, speed=None, wait_for_consumer_s=30):
        marker_inlet = inlet_for(f"{name}-markers")  # connect before the EEG consumer starts the play
        eeg_inlet = inlet_for(name)
        values, stamps = pull(marker_inlet, 197)
        _, eeg_stamps = pull(eeg_inlet, 1)
        del marker_inlet, eeg_inlet
    assert [v[0] for v in values] == [str(m[0]) for m in markers["time_series"]]
    expected = markers["time_stamps"] - eeg_times_s[0]
    np.testing.assert_allclose(stamps - eeg_stamps[0], expected, atol=1e-6)


def test_real_time_play_stamps_with_local_clock_and_paces_pushes():
    import pylsl

    name = uid("rt")
    with XdfPlayer(need(MINIMAL), stream_name=name, source_id=name, speed=1.0, wait_for_consumer_s=30):
        inlet = inlet_for(name)
        arrivals, values, stamps = [], [], []
        deadline = time.monotonic() + 20
        while len(stamps) < 9 and time.monotonic() < deadline:
            v, t = inlet.pull_chunk(timeout=0.2)
            if t:
                arrivals.append(time.monotonic())
                values += v
                stamps += t
        received_at = pylsl.local_clock()
        del inlet
    assert values[:2] == [[192, 255, 238], [12, 22, 32]]
    np.testing.assert_allclose(np.diff(stamps), 0.1, atol=1e-6)  # the recorded 10 Hz spacing
    assert abs(received_at - stamps[-1]) < 5.0  # local_clock() domain, pushed when due
    assert arrivals[-1] - arrivals[0] >= 0.5  # 0.8 s of recording is not pushed at once


def test_loop_continues_the_stamps_and_stop_ends_it_promptly():
    name = uid("loop")
    player = XdfPlayer(
        need(MINIMAL), stream_name=name, source_id=name, speed=4.0, loop=True, wait_for_consumer_s=30
    )
    with player:
        inlet = inlet_for(name)
        values, stamps = pull(inlet, 25)
        del inlet
        started = time.monotonic()
        player.stop()
        assert time.monotonic() - started < 3
    assert player.done.is_set() and player.error is None
    raw, _ = pyxdf_eeg(MINIMAL)
    np.testing.assert_array_equal(np.asarray(values[:25]), np.concatenate([raw, raw, raw])[:25])
    np.testing.assert_allclose(np.diff(stamps[:25]), 0.1 / 4, atol=1e-6)  # across pass boundaries too


def test_sine_stream_reads_back_through_the_lsl_source():
    name = uid("sine")
    stop = threading.Event()
    thread = threading.Thread(
        target=play_sine_to_lsl,
        kwargs={"stream_name": name, "source_id": name, "sfreq": 256.0, "stop_event": stop},
        daemon=True,
    )
    thread.start()
    try:
        with LslSource(source_id=name, resolve_timeout_s=10) as source:
            assert source.description.channels == ("TP9", "AF7", "AF8", "TP10")
            got = 0
            chunks = []
            deadline = time.monotonic() + 20
            while got < 256 and time.monotonic() < deadline:
                chunk = source.read(0.5)
                if chunk is not None:
                    chunks.append(chunk)
                    got += len(chunk)
    finally:
        stop.set()
        thread.join(5)
    data = np.concatenate([c.data for c in chunks])[:256]
    spectrum = np.abs(np.fft.rfft(data[:, 0] - data[:, 0].mean()))
    assert np.argmax(spectrum) == 10  # 10 Hz on TP9 with 1 Hz bins
    assert not thread.is_alive()


def test_simulate_stream_script_publishes_until_its_duration():
    name = uid("script")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "scripts" / "simulate_stream.py"),
            "--sine",
            "--name",
            name,
            "--duration",
            "3",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with LslSource(stream_name=name, resolve_timeout_s=15) as source:
            got = 0
            deadline = time.monotonic() + 15
            while got < 64 and time.monotonic() < deadline:
                chunk = source.read(0.5)
                got += len(chunk) if chunk is not None else 0
        assert got >= 64
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
