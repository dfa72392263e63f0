"""Every EEG evidence item fits the API's 10 MB limit, whatever the channel count, rate or values.

Through the real `python -m collector replay` against the sandbox over loopback: the field case
`biosemi136_2048.xdf.gz` (136 channels at 2048 Hz, 12 s, large DC offsets: 15.6 MB per 5 s chunk
before chunks were sized by their bytes) and a recording of our own (256 channels at 1000 Hz with
offsets near ±200 mV). Every sample arrives exactly once and no stored item is over 10 MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from cli_runs import is_summary

from collector.api.models import MAX_DECODED_BYTES
from collector.core.bandpower import BandSettings
from collector.core.chunk import HARD_MAX_CHUNK_BYTES, EegChunker
from collector.core.records import SampleChunk, StreamDescription

REPO = Path(__file__).resolve().parents[2]
FIELD = REPO / "tests" / "data" / "field-cases"  # copies of ../shared/data/field-cases
sys.path.insert(0, str(REPO / "scripts"))
from make_xdf import XdfStream, write_xdf  # noqa: E402


def replay(path: Path, sandbox, spool: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(OPENLESSON_API_KEY=sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    args = [sys.executable, "-m", "collector", "replay", str(path), "--workspace", sandbox.workspace_id]
    args += ["--block", sandbox.block_ids[0], "--speed", "max", "--spool", str(spool)]
    args += ["--log-format", "json", *extra]
    return subprocess.run(
        args, env=env, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300
    )


def stored_eeg(sandbox) -> list[tuple[dict, bytes]]:
    rows = [r for r in sandbox.evidence(sandbox.workspace_id) if r["type"] == "eeg" and not is_summary(r)]
    rows.sort(key=lambda r: r["chunk_index"])
    return [(r, sandbox.read_artifact(r["id"])) for r in rows]


def check_all_delivered(sandbox, n_samples: int, n_channels: int, first_row: np.ndarray) -> list[dict]:
    items = stored_eeg(sandbox)
    assert items, "nothing was delivered"
    assert [r["chunk_index"] for r, _ in items] == list(range(len(items)))
    for row, raw in items:
        assert row["file_size"] == len(raw) <= MAX_DECODED_BYTES, f"chunk {row['chunk_index']} is too big"
        assert len(raw) <= HARD_MAX_CHUNK_BYTES
    chunks = [json.loads(raw) for _, raw in items]
    for (row, _), c in zip(items, chunks, strict=True):
        # The artifact says its real length: as many samples and times as the evidence row claims.
        assert len(c["samples"]) == len(c["times_ms"]) == row["sample_count"]
        # t0_ms is the first sample's time rounded down: no offset is ever negative (review 9, #1).
        assert 0 <= c["times_ms"][0] <= 1 and min(c["times_ms"]) >= 0
    samples = np.array([s for c in chunks for s in c["samples"]], dtype=float)
    assert samples.shape == (n_samples, n_channels), "every sample exactly once"
    np.testing.assert_allclose(samples[0], first_row, atol=2e-3)
    times = np.concatenate([c["t0_ms"] + np.asarray(c["times_ms"]) for c in chunks])
    assert np.all(np.diff(times) > 0)
    return chunks


@pytest.mark.slow
@pytest.mark.parametrize("chunk_args", [[], ["--chunk-seconds", "5"]], ids=["replay-default", "5s"])
def test_biosemi_136ch_2048hz_every_sample_delivered_no_item_over_10mb(sandbox_factory, tmp_path, chunk_args):
    path = FIELD / "biosemi136_2048.xdf.gz"
    if not path.exists():
        pytest.skip(f"{path} is not here")
    from collector.devices.recordings.model import pick_eeg_stream
    from collector.devices.recordings.xdf import load_xdf

    eeg = pick_eeg_stream(load_xdf(path))
    sandbox = sandbox_factory()
    proc = replay(path, sandbox, tmp_path / "spool", *chunk_args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    chunks = check_all_delivered(sandbox, 24_576, 136, np.asarray(eeg.data[0], dtype=float))
    assert len(chunks) >= 3  # 12 s at ~3 MB/s cannot fit in fewer items under the bound


@pytest.mark.slow
def test_256ch_1000hz_large_offsets_fit_the_limit(sandbox_factory, tmp_path):
    # Another instance of the same kind: more channels, another rate, offsets near ±200 mV with
    # full 0.001 µV digits (about 12 bytes per value): a 5 s chunk would be about 15 MB.
    rng = np.random.default_rng(7)
    sfreq, n_ch, seconds = 1000.0, 256, 8
    n = int(sfreq * seconds)
    offsets = rng.uniform(-200_000, 200_000, n_ch)
    values = (offsets + rng.normal(0, 20, (n, n_ch))).astype(np.float32)
    stream = XdfStream(
        "BigAmp", "EEG", sfreq, [f"A{i + 1}" for i in range(n_ch)], 500.0 + np.arange(n) / sfreq, values,
        source_id="bigamp-256",
    )  # fmt: skip
    path = tmp_path / "bigamp.xdf"
    write_xdf(path, [stream], start=datetime(2024, 5, 1, 10, tzinfo=timezone.utc))
    sandbox = sandbox_factory()
    proc = replay(path, sandbox, tmp_path / "spool", "--chunk-seconds", "5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_all_delivered(sandbox, n, n_ch, values[0].astype(float))


def _description(n_ch: int, sfreq: float) -> StreamDescription:
    return StreamDescription(
        name="Synth", type="EEG", sfreq=sfreq, channels=tuple(f"C{i}" for i in range(n_ch)),
        source_id="synth",
    )  # fmt: skip


def test_chunker_cuts_chunks_by_encoded_size_and_keeps_every_sample():
    # Unit test of the pure logic: a tight byte bound; values grow mid-stream, so chunks must
    # shrink again to fit; every sample stays in exactly one chunk, indices contiguous.
    sfreq, n_ch = 256.0, 8
    max_bytes = 120_000
    chunker = EegChunker(
        _description(n_ch, sfreq), BandSettings(), capture_id="c", stream_id="eeg:synth",
        chunk_s=5.0, max_bytes=max_bytes,
    )  # fmt: skip
    rng = np.random.default_rng(1)
    outs = []
    n_total = 0
    for k in range(40):
        scale = 1.0 if k < 20 else 1e5  # longer numbers in the second half
        data = rng.normal(0, 10, (64, n_ch)) * scale
        times = (n_total + np.arange(64)) * 1000.0 / sfreq + 1.7e12
        outs += chunker.push(SampleChunk(data=data, times_ms=times))
        n_total += 64
    outs += chunker.flush()
    assert sum(o.sample_count for o in outs) == n_total
    assert [o.chunk_index for o in outs] == list(range(len(outs)))
    sizes = [len(o.to_bytes()) for o in outs]
    assert max(sizes) <= max_bytes
    assert outs[0].sample_count == round(5.0 * sfreq)  # small values: 5 s fits
    assert any(o.sample_count < round(5.0 * sfreq) for o in outs[1:-1])  # larger ones: cut shorter
    for o in outs:
        assert len(o.artifact["samples"]) == o.sample_count == len(o.artifact["times_ms"])
