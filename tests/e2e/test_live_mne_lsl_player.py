"""Live: the real MNE-LSL `PlayerLSL` (volts, type `eeg`, units "0", `<name>-annotations`) captured
by the real `collector run --stream-name NAME` against the sandbox: µV delivered, annotations as
events carrying their descriptions."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from cli_runs import cli_env, collector, eeg_chunks

pytestmark = [pytest.mark.lsl, pytest.mark.slow]


def test_mne_lsl_player_captured_live_in_microvolts_with_annotations(sandbox, tmp_path):
    import mne  # dev dependencies: a missing one is a failure, not a skip
    import mne_lsl.player as player_lsl

    sfreq, seconds = 250.0, 60.0
    t = np.arange(int(sfreq * seconds)) / sfreq
    rng = np.random.default_rng(3)
    volts = 20e-6 * np.sin(2 * np.pi * 10 * t)[None, :] + rng.normal(0, 1e-6, (4, t.size))
    info = mne.create_info(["Fp1", "Fp2", "O1", "O2"], sfreq, "eeg")
    raw = mne.io.RawArray(volts, info, verbose="error")
    onsets = np.arange(1.0, seconds - 1, 1.0)
    descriptions = ["eyes_closed" if i % 2 == 0 else "eyes_open" for i in range(len(onsets))]
    raw.set_annotations(mne.Annotations(onsets, [0.5] * len(onsets), descriptions))
    fname = tmp_path / "player_raw.fif"
    raw.save(fname, verbose="error")
    name = f"MNE-LSL-Player-{uuid.uuid4().hex[:8]}"
    player = player_lsl.PlayerLSL(fname, chunk_size=25, name=name, annotations=True)
    player.start()
    try:
        proc = collector(
            ["run", "--workspace", sandbox.workspace_id, "--stream-name", name, "--screen", "off",
             "--duration", "8", "--chunk-seconds", "2", "--spool", str(tmp_path / "spool"),
             "--flush-timeout", "60", "--log-format", "json"],
            cli_env(sandbox),
        )  # fmt: skip
    finally:
        player.stop()
    assert proc.returncode == 0, proc.stderr
    arts = eeg_chunks(sandbox)
    data = np.concatenate([np.asarray(a["samples"], dtype=float) for a in arts])
    assert data.shape[0] > 4 * sfreq
    assert 15 < np.percentile(np.abs(data), 99) < 40  # µV, not 0.000
    assert {a["device"]["unit"] for a in arts} == {"microvolts"}
    events = [e for a in arts for e in a["events"]]
    assert len(events) >= 3, proc.stderr
    assert {e["value"] for e in events} <= {"eyes_closed", "eyes_open"}
    assert all(e["duration_s"] == pytest.approx(0.5) for e in events)
