"""A Muse S Athena's accelerometer, gyroscope and PPG captured next to its EEG, through the real CLI.

Real pylsl outlets shaped like muselsl's and OpenMuse's (tests/muse_streams.py): the head is still,
then moves; the optics carry a 72 bpm pulse. Checks: each sensor is its own `eeg` evidence stream
with metadata.kind, every sample once; EEG windows get `quality.movement` (false while still, true
while moving); PPG chunks carry heart rate; the session summary has movement share and heart rate;
OpenMuse's streams are found by the `openmuse` profile alone, its EEG centred like muselsl's.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import numpy as np
import pytest
from cli_runs import cli_env, collector, is_summary, rows_of, start_collector
from muse_streams import AthenaStreams

from collector.core.heart import heart_rate
from collector.core.motion import MotionTrack
from collector.devices.lsl.aux import parse_aux
from collector.devices.lsl.discovery import build_predicate
from collector.errors import UsageError


def _mac() -> str:
    return "00:55:DA:" + ":".join(f"{b:02X}" for b in uuid.uuid4().bytes[:3])


def _by_stream(sandbox) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows_of(sandbox, "eeg"):
        artifact = json.loads(sandbox.read_artifact(row["id"]))
        assert artifact["stream_id"] == row["metadata"]["stream_id"]
        if row["metadata"].get("kind"):
            assert artifact["kind"] == row["metadata"]["kind"]
        out.setdefault(row["metadata"]["stream_id"], []).append(artifact)
    for chunks in out.values():
        chunks.sort(key=lambda c: c["chunk_index"])
        assert [c["chunk_index"] for c in chunks] == list(range(len(chunks)))
    return out


def _times(chunks) -> np.ndarray:
    return np.concatenate([c["t0_ms"] + np.asarray(c["times_ms"]) for c in chunks])


def _summary(sandbox) -> dict:
    rows = [r for r in rows_of(sandbox) if is_summary(r)]
    assert len(rows) == 1
    return json.loads(sandbox.read_artifact(rows[0]["id"]))


def _args(sandbox, tmp_path, profile: str, seconds: float, *extra: str) -> list[str]:
    spool = str(tmp_path / "spool")
    return ["run", "--workspace", sandbox.workspace_id, "--profile", profile, "--screen", "off",
            "--duration", str(seconds), "--flush-timeout", "20", "--spool", spool, *extra]  # fmt: skip


def _run(sandbox, tmp_path, profile: str, seconds: float, *extra: str):
    return collector(_args(sandbox, tmp_path, profile, seconds, *extra), cli_env(sandbox), timeout=120)


def test_muselsl_athena_streams_give_eeg_motion_ppg_movement_flags_and_heart_rate(sandbox, tmp_path):
    mac = _mac()
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = cli_env(sandbox, XDG_RUNTIME_DIR=str(runtime))
    with AthenaStreams(mac, streamer="muselsl", still_s=1e9, bpm=72.0) as athena:
        run = start_collector(_args(sandbox, tmp_path, "muselsl", 18), env)
        try:
            deadline = time.monotonic() + 60
            while (
                not (runtime / "openlesson-collector" / "collector-run.pid").exists()
                and time.monotonic() < deadline
            ):
                time.sleep(0.05)
            time.sleep(7.0)  # still for the first seconds of the capture
            moved_at = athena.start_moving()
            _, err = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
    assert run.returncode == 0, err
    assert re.search(r"[\d,]+ accelerometer samples in \d+ chunks, [\d,]+ gyroscope samples", err), err[-600:]
    # A sensor in g, dps or a.u. is expected, not a unit problem: no warning on every Muse run, and
    # its stream is not called EEG.
    assert "not a voltage" not in err and "3 EEG channels (X, Y, Z)" not in err, err[-2000:]
    assert "3 accelerometer channels (X, Y, Z)" in err, err[-2000:]
    streams = _by_stream(sandbox)
    sid = f"Muse{mac}"
    assert set(streams) == {f"eeg:{sid}", f"accelerometer:{sid}", f"gyroscope:{sid}", f"ppg:{sid}"}
    for key, chunks in streams.items():
        times = _times(chunks)
        assert np.all(np.diff(times) > 0), f"{key}: every sample once, in order"
    acc = streams[f"accelerometer:{sid}"]
    assert acc[0]["device"]["channels"] == ["X", "Y", "Z"] and acc[0]["device"]["unit"] == "g"
    assert acc[0]["windows"] == [] and "not_computed" in json.dumps(acc[0])
    steps = np.diff(_times(acc))
    assert steps.max() < 1000 / 52 * 1.5 and len(steps) > 52 * 12, "no sample missing between first and last"
    ppg = streams[f"ppg:{sid}"]
    assert len(ppg[0]["device"]["channels"]) == 16
    # Movement: windows ending before the head moved (with a 1 s motion epoch's margin) false, those
    # wholly in the moving part (2 s window + 1 s epoch after it began) true.
    eeg = streams[f"eeg:{sid}"]
    t_start = athena.started_unix_ms
    flags = [(w["end_ms"] - t_start, w["quality"]["movement"]) for c in eeg for w in c["windows"]]
    assert flags
    still = [f for t, f in flags if t < moved_at * 1000 - 1200]
    moving = [f for t, f in flags if t > moved_at * 1000 + 3200]
    assert still and all(f is False for f in still), flags
    assert moving and all(f is True for f in moving), flags
    # Heart rate from the optics: 72 bpm, flagged good.
    rates = [h for c in ppg for h in c["heart_rate"]]
    good = [h for h in rates if h["ok"]]
    assert good and all(abs(h["bpm"] - 72.0) < 2.0 for h in good), rates
    assert good[0]["channel"] in ("OPT4", "OPT5", "OPT6", "OPT7")
    summary = _summary(sandbox)
    assert 0.2 < summary["movement_share"] < 0.8
    assert summary["heart_rate_bpm"] == pytest.approx(72.0, abs=2.0)
    assert summary["sensors"]["accelerometer"]["samples"] == len(_times(acc))
    assert any(m["heart_rate_bpm"] for m in summary["minutes"])
    # The review page (real CLI) shows the movement row, share and heart rate; the EDF/CSV export
    # stays the EEG stream.
    page = tmp_path / "review.html"
    proc = collector(["review", "--last", "--out", str(page), "--spool", str(tmp_path / "spool")], cli_env())
    assert proc.returncode == 0, proc.stderr
    html = page.read_text()
    assert "head still" in html and "head moving" in html
    assert re.search(r"heart rate (7[0-4]) bpm \(PPG\)", html), "the header's heart rate"
    out = tmp_path / "eeg.csv"
    spool = str(tmp_path / "spool")
    proc = collector(["export", "--last", "--format", "csv", "--out", str(out), "--spool", spool], cli_env())
    assert proc.returncode == 0, proc.stderr
    assert "TP9" in out.read_text().splitlines()[0]


@pytest.mark.parametrize("profile", [("openmuse",), ("muse-s-athena", "--device", "lsl")], ids=lambda p: p[0])
def test_openmuse_streams_are_found_by_the_profile_alone_and_centred(sandbox, tmp_path, profile):
    mac = _mac()
    with AthenaStreams(mac, streamer="openmuse", still_s=100.0):
        proc = _run(sandbox, tmp_path, profile[0], 6, *profile[1:])
    assert proc.returncode == 0, proc.stderr
    streams = _by_stream(sandbox)
    assert set(streams) == {f"eeg:{mac}_eeg", f"accelerometer:{mac}_accgyro", f"gyroscope:{mac}_accgyro",
                            f"ppg:{mac}_optics"}  # fmt: skip
    eeg = streams[f"eeg:{mac}_eeg"]
    assert eeg[0]["device"]["channels"] == ["EEG_TP9", "EEG_AF7", "EEG_AF8", "EEG_TP10"]  # AUX dropped
    samples = np.concatenate([np.asarray(c["samples"]) for c in eeg])
    assert abs(samples.mean()) < 2.0, "OpenMuse's 725 uV DC is removed: centred like muselsl"
    assert samples.max() == pytest.approx(20.0, abs=0.5)
    assert streams[f"accelerometer:{mac}_accgyro"][0]["device"]["channels"] == ["ACC_X", "ACC_Y", "ACC_Z"]
    assert streams[f"gyroscope:{mac}_accgyro"][0]["device"]["channels"] == ["GYRO_X", "GYRO_Y", "GYRO_Z"]
    flags = {w["quality"]["movement"] for c in eeg for w in c["windows"]}
    assert True not in flags and False in flags


def test_aux_off_captures_eeg_only(sandbox, tmp_path):
    mac = _mac()
    with AthenaStreams(mac, streamer="muselsl"):
        proc = _run(sandbox, tmp_path, "muselsl", 3, "--aux", "off")
    assert proc.returncode == 0, proc.stderr
    assert set(_by_stream(sandbox)) == {f"eeg:Muse{mac}"}


class _DeadMotionSensors(AthenaStreams):
    """An Athena whose accelerometer and gyroscope send only NaN (a sensor that reports nothing)."""

    def values(self, key, t):
        if key in ("acc", "gyro"):
            return np.full((t.shape[0], 3), np.nan)
        return super().values(key, t)


def test_motion_sensors_sending_only_nan_leave_movement_unknown_not_still(sandbox, tmp_path):
    # Epochs without a finite sample said "still" (NaN > threshold is False): every window was
    # flagged not moving and the summary claimed a movement share of 0 with no measurement at all.
    with _DeadMotionSensors(_mac(), streamer="muselsl", still_s=0.0):
        proc = _run(sandbox, tmp_path, "muselsl", 7, "--aux", "acc,gyro")
    assert proc.returncode == 0, proc.stderr
    eeg = [c for k, cs in _by_stream(sandbox).items() if k.startswith("eeg:") for c in cs]
    flags = [w["quality"]["movement"] for c in eeg for w in c["windows"]]
    assert flags and all(f is None for f in flags), flags
    assert _summary(sandbox)["movement_share"] is None


# -- pure logic ------------------------------------------------------------------------------------


def test_parse_aux_words():
    assert parse_aux("auto") == ("accelerometer", "gyroscope", "ppg")
    assert parse_aux("off") == ()
    assert parse_aux("ppg, acc") == ("accelerometer", "ppg")
    with pytest.raises(UsageError):
        parse_aux("acc,eda")


def test_name_prefix_predicate():
    folded = "translate(type,'ABCDEFGHIJKLMNOPQRSTUVWXYZ','abcdefghijklmnopqrstuvwxyz')='eeg'"
    assert build_predicate(name="Muse*", type="EEG") == f"starts-with(name,'Muse') and {folded}"
    assert build_predicate(name="Muse") == "name='Muse'"


def test_motion_thresholds_on_known_signals():
    track = MotionTrack()
    t = np.arange(0, 10, 1 / 52)
    moving = t >= 5
    acc = np.stack([0 * t, 0 * t, 1 + moving * 0.3 * np.sin(2 * np.pi * 2 * t)], axis=1)
    gyro = np.stack([0.5 + 0 * t] * 3, axis=1)  # a constant bias only: still
    track.add("accelerometer", t * 1000, acc)
    track.add("gyroscope", t * 1000, gyro)
    assert track.during(1000, 3000) is False
    assert track.during(6000, 8000) is True
    assert track.during(20000, 22000) is None  # not reached yet: unknown, not "still"


def test_heart_rate_flags_noise_and_finds_a_pulse():
    from muse_streams import pulse

    t = np.arange(0, 10, 1 / 64)
    good = heart_rate(1000 + 200 * pulse(t, 60.0), 64.0)
    assert good.ok and good.bpm == pytest.approx(60.0, abs=1.0)
    noise = heart_rate(np.random.default_rng(1).normal(size=t.shape[0]), 64.0)
    assert not noise.ok and noise.reason.startswith("noisy"), noise  # little power in the pulse band
    assert heart_rate(np.zeros(640), 64.0).reason == "flat signal"


def test_athena_scale_check_against_brainflows_constant():
    from collector.devices.streamers import ATHENA_EEG_SCALE, OLD_BRAINFLOW_ATHENA_SCALE, athena_correction

    assert OLD_BRAINFLOW_ATHENA_SCALE / ATHENA_EEG_SCALE == pytest.approx(4.5526, abs=1e-4)  # muse-lsl#228
    assert athena_correction("5.23.0").factor == 1.0
    old = athena_correction("5.22.2")
    assert old.factor * OLD_BRAINFLOW_ATHENA_SCALE == pytest.approx(ATHENA_EEG_SCALE)
    assert "brainflow#855" in old.note


def test_heart_rate_of_pure_noise_is_never_good_to_the_last_partial_window():
    # 15.1 s of 16 optics channels of white noise (a muselsl Athena's PPG stream with nothing on the
    # skin): the capture's last, 5 s window used to pass the quality checks on some channel in
    # about one capture in five, and its rate went into the summary.
    from collector.capture.aux_loop import HeartWindows
    from collector.core.records import StreamDescription

    desc = StreamDescription(name="Muse", type="PPG", source_id="x", sfreq=64.0,
                             channels=tuple(f"OPT{i}" for i in range(16)), unit="a.u.")  # fmt: skip
    good = []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        windows = HeartWindows(desc)
        times = 1.7e12 + np.arange(int(15.1 * 64)) * 1000.0 / 64
        for i in range(0, times.shape[0], 64):  # as read, 1 s at a time
            windows.add(times[i : i + 64], rng.normal(1000.0, 50.0, (times[i : i + 64].shape[0], 16)))
        windows.finish()
        good += [w for w in windows.rated if w["ok"]]
    assert good == []
