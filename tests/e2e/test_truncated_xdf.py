"""A truncated XDF (the recorder crashed: App-LabRecorder#107, neurobooth-os#812) replays what its
complete chunks hold, exactly the samples pyxdf's own load of the same cut file gives, with one
warning saying where the file ends; nothing recoverable is still refused in one line (issue 20 #3).
The files are real: copies of the bundled Muse recording cut at byte offsets that land inside a
chunk's data, right after a chunk, inside a chunk's length prefix and inside the last chunk."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import numpy as np
import pytest
from cli_runs import cli_env, collector, eeg_chunks

from collector.errors import EXIT_USAGE

REPO = Path(__file__).resolve().parents[2]
MUSE_XDF = REPO / "collector" / "data" / "muse-p300-subject1.xdf"
# Its chunks (offset, length): Muse samples at 1987 (1 sample), 2029 (65,493 bytes), 69,933 (825,728
# bytes, to 895,666); markers at 67,527..69,932; footers from 895,714.
CUTS = {
    "mid-chunk": 448_146,  # inside the 825 kB chunk: only the first two Muse chunks are whole
    "after-a-chunk": 69_933,  # right after a chunk: nothing cut, but no stream footer
    "in-a-length": 69_935,  # inside the next chunk's length prefix
    "in-the-last-chunk": 896_193,  # inside the markers' footer: every sample is whole
}


def cut_copy(tmp_path: Path, offset: int) -> Path:
    path = tmp_path / f"cut-{offset}.xdf"
    path.write_bytes(MUSE_XDF.read_bytes()[:offset])
    return path


def pyxdf_muse(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """pyxdf's own load of the cut file (it logs the cut chunk as corruption and stops there)."""
    import pyxdf

    logging.getLogger("pyxdf").setLevel(logging.CRITICAL)
    streams, _ = pyxdf.load_xdf(str(path), dejitter_timestamps=False)
    muse = next(s for s in streams if s["info"]["name"][0] == "Muse")
    return np.asarray(muse["time_series"], dtype=float), np.asarray(muse["time_stamps"])


@pytest.mark.slow
@pytest.mark.parametrize("where", list(CUTS))
def test_replay_of_a_truncated_xdf_delivers_exactly_its_complete_chunks(sandbox, tmp_path, where):
    path = cut_copy(tmp_path, CUTS[where])
    expected, _ = pyxdf_muse(path)
    assert 0 < len(expected)
    proc = collector(
        ["replay", str(path), "-w", sandbox.workspace_id, "-b", sandbox.block_ids[0], "--speed", "max"],
        cli_env(sandbox, COLLECTOR_SPOOL_DIR=str(tmp_path / "spool")),
    )
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "truncated" in line]
    assert len(warnings) == 1, proc.stderr
    assert f"ends at byte {CUTS[where]:,}" in warnings[0]
    assert f"Muse {len(expected):,} samples" in warnings[0]
    assert "Traceback" not in proc.stderr
    delivered = np.array([row for c in eeg_chunks(sandbox) for row in c["samples"]], dtype=float)
    assert delivered.shape == (len(expected), 4)  # the 4 EEG channels of the 5 (Right AUX apart)
    np.testing.assert_allclose(delivered, expected[:, :4], rtol=1e-6, atol=1e-3)


@pytest.mark.parametrize("offset", [1_000, 1_990])  # inside the stream headers; inside the 1st sample chunk
def test_a_truncated_xdf_with_no_complete_sample_is_refused_in_one_line(tmp_path, offset):
    path = cut_copy(tmp_path, offset)
    proc = collector(
        ["replay", str(path), "-w", str(uuid.uuid4()), "-b", str(uuid.uuid4()), "--offline"],
        cli_env(COLLECTOR_SPOOL_DIR=str(tmp_path / "spool")),
    )
    assert proc.returncode == EXIT_USAGE, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"is truncated at byte {offset:,}" in lines[0] and "nothing to replay" in lines[0]
