"""How `collector replay` cuts EEG into chunks, and bad chunk options refused up front.

Real `python -m collector replay --offline` subprocesses on a real XDF file (scripts/make_xdf.py);
the chunks are counted in the real spool they leave. Review of issue 11, findings 2, 3 and 6.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cli_runs import REPO, cli_env, collector, spool_items
from docs_text import docs_text

sys.path.insert(0, str(REPO / "scripts"))
from make_xdf import synthetic_eeg, synthetic_markers, write_xdf  # noqa: E402

WS = "00000000-0000-4000-8000-000000000001"
BLOCK = "00000000-0000-4000-8000-000000000002"


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rec") / "two_minutes.xdf"
    write_xdf(path, [synthetic_eeg(120.0, seed=4), synthetic_markers(120.0)],
              start=datetime(2024, 5, 1, 10, tzinfo=timezone.utc))  # fmt: skip
    return path


def replay_offline(recording: Path, spool: Path, *extra: str):
    args = ["replay", str(recording), "--workspace", WS, "--block", BLOCK, "--offline", "--speed", "max",
            "--spool", str(spool), *extra]  # fmt: skip
    return collector(args, cli_env(), timeout=120)


def eeg_chunk_count(spool: Path) -> int:
    return len([i for i in spool_items(spool) if i["type"] == "eeg" and i["stream_id"].startswith("eeg")])


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf"])
def test_a_bad_chunk_length_is_refused_up_front_naming_the_option(recording, tmp_path, value):
    proc = replay_offline(recording, tmp_path / "spool", "--chunk-seconds", value)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"collector: --chunk-seconds {value} is invalid"), lines
    assert "profile" not in lines[0]  # the bad value came from the command line, not a profile
    assert "Replay ended" not in proc.stderr and not (tmp_path / "spool" / "spool.db").exists()


def test_a_bad_flush_timeout_names_the_option(recording, tmp_path):
    proc = replay_offline(recording, tmp_path / "spool", "--flush-timeout", "-1")
    assert proc.returncode == 2
    message = "--flush-timeout -1 is invalid: Input should be greater than or equal to 0. Fix the option."
    assert proc.stderr.strip() == f"collector: {message}"


def test_replay_uses_delivery_sized_chunks_unless_a_profile_or_the_option_sets_chunk_s(recording, tmp_path):
    own = tmp_path / "ten.toml"
    own.write_text('extends = "lsl-generic"\n\n[analysis]\nchunk_s = 10\n')
    inherits = tmp_path / "inherits.toml"
    inherits.write_text('extends = "lsl-generic"\n\n[screen]\ninterval_s = 30\n')  # chunk_s only by default
    cases = {"default": ([], 2), "own": (["--profile", str(own)], 12), "lab": (["--profile", "lab"], 4),
             "inherits": (["--profile", str(inherits)], 2),
             "option": (["--profile", "lab", "--chunk-seconds", "20"], 6)}  # fmt: skip
    for name, (extra, chunks) in cases.items():
        proc = replay_offline(recording, tmp_path / name, *extra)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert eeg_chunk_count(tmp_path / name) == chunks, name


def test_the_rule_is_stated_in_help_and_readme():
    text = collector(["replay", "--help"], cli_env()).stdout
    assert "the profile's [analysis] chunk_s" in " ".join(text.split())
    readme = " ".join(docs_text().split())
    assert "or a profile that sets `[analysis] chunk_s` itself" in readme
