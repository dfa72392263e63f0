"""Issue 19 tried as a user would, then with bad and unusual input: each finding of that review
through the real part (the `collector` CLI against the sandbox, real pylsl outlets, real files).
"""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest
from cli_runs import cli_env, collector, eeg_chunks


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.mark.lsl
@pytest.mark.slow
def test_live_markers_taken_while_the_clock_fit_holds_samples_are_delivered(sandbox, tmp_path):
    """A sender pushing small blocks (MNE-LSL's player: 10 samples every 40 ms): most reads hand out
    no sample yet (the clock fit's look-ahead holds them), and a marker taken in such a read used
    to be dropped without a word. Every marker pushed during the capture must arrive, in order."""
    import pylsl

    name = uid("BlockEEG")
    sfreq, block = 256.0, 8
    eeg = pylsl.StreamOutlet(
        pylsl.StreamInfo(name, "EEG", 2, sfreq, pylsl.cf_float32, uid("src")), chunk_size=block
    )
    marks = pylsl.StreamOutlet(pylsl.StreamInfo(f"{name}-markers", "Markers", 1, 0, pylsl.cf_string, uid("m")))
    stop = threading.Event()
    pushed: list[tuple[float, str]] = []  # (Unix time, value)

    def send() -> None:
        t = np.arange(block) / sfreq
        k, next_mark = 0, time.monotonic() + 0.3
        start = time.monotonic()
        while not stop.is_set():
            tt = t + k * block / sfreq
            x = 20 * np.sin(2 * np.pi * 10 * tt)
            eeg.push_chunk(np.column_stack([x, -x]).tolist())
            k += 1
            if time.monotonic() >= next_mark:
                value = f"m{len(pushed)}"
                marks.push_sample([value])
                pushed.append((time.time(), value))
                next_mark += 0.3
            # Real time, block by block, as a device sends.
            time.sleep(max(0.0, start + k * block / sfreq - time.monotonic()))

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        proc = collector(
            ["run", "--workspace", sandbox.workspace_id, "--stream-name", name, "--screen", "off",
             "--duration", "8", "--spool", str(tmp_path / "spool"), "--flush-timeout", "60"],
            cli_env(sandbox),
        )  # fmt: skip
    finally:
        stop.set()
        sender.join(2)
    assert proc.returncode == 0, proc.stderr
    arts = eeg_chunks(sandbox)
    times = np.concatenate([a["t0_ms"] + np.asarray(a["times_ms"]) for a in arts]) / 1000.0
    got = [e["value"] for a in arts for e in a["events"]]
    # Markers pushed well inside the captured span (0.5 s margins for the inlet's start and stop).
    inside = [v for t, v in pushed if times[0] + 0.5 < t < times[-1] - 0.5]
    assert len(inside) >= 15, (len(pushed), times[0], times[-1])
    missing = [v for v in inside if v not in got]
    assert not missing, f"markers dropped: {missing} of {len(inside)}; delivered {got}"
    assert len(got) == len(set(got))  # none twice
