"""Loss counts add up (issue 24.5): a stream that loses chunks more than once shows their sum.

Through the real `collector replay` into the sandbox with a spool bound of about three chunks: the
replay (at 60x) makes a 5 s chunk much faster than delivery (120 requests/min) frees room for one,
so the EEG stream loses chunks, saves one when a delivery makes room, loses more, and so on. What was saved is
read from the sandbox (what it stored), not from the spool's counts; the refused rest must be the
count in the closing line, in `collector status` and in `collector sessions`.
"""

from __future__ import annotations

import json

import pytest
from cli_runs import cli_env, collector, is_summary, rows_of
from recordings import MUSE

pytestmark = pytest.mark.slow
CHUNKS = 25  # the Muse recording: 120 s in 5 s chunks, the last one short


def runs_of(indexes: list[int]) -> int:
    """How many runs of consecutive numbers `indexes` (sorted) holds: 3, 5, 6, 7, 14 is three."""
    return sum(1 for i, n in enumerate(indexes) if i == 0 or n != indexes[i - 1] + 1)


def test_a_stream_that_loses_chunks_again_and_again_shows_the_sum_everywhere(sandbox, tmp_path):
    profile = tmp_path / "small.toml"
    profile.write_text('extends = "muse-2016"\n[delivery]\nspool_max_bytes = 200000\nrate_per_min = 120\n')
    spool = tmp_path / "spool"
    env = cli_env(sandbox)
    proc = collector(
        ["replay", str(MUSE), "--workspace", sandbox.workspace_id, "--profile", str(profile),
         "--speed", "60", "--chunk-seconds", "5", "--spool", str(spool)],
        env,
    )  # fmt: skip
    assert proc.returncode == 7 and "Traceback" not in proc.stderr, proc.stderr
    rows = rows_of(sandbox, "eeg")
    (stream,) = {r["metadata"]["stream_id"] for r in rows}
    saved = sorted({r["chunk_index"] for r in rows})
    refused = sorted(set(range(CHUNKS)) - set(saved))
    # The stream lost chunks in separate episodes, with saved chunks between them.
    assert runs_of(refused) >= 2 and refused[0] < saved[-1], (saved, refused)
    n = len(refused)

    lost = [line for line in proc.stderr.splitlines() if "DATA LOST" in line]
    assert len(lost) == 1 and f"{n} chunk(s) of {stream} not saved" in lost[0], (n, lost)
    (closing,) = [line for line in proc.stderr.splitlines() if "Replay ended" in line]
    # The end line counts every refused item: the session summary too, when the full spool refused it.
    summary_refused = not any(is_summary(r) for r in sandbox.evidence(sandbox.workspace_id))
    assert f"{n + summary_refused} item(s) NOT SAVED" in closing, (n, closing)

    status = json.loads(collector(["status", "--spool", str(spool), "--json"], env).stdout)
    eeg = [loss for loss in status["losses"] if loss["stream_id"] == stream]
    assert [(loss["reason"], loss["count"]) for loss in eeg] == [("spool_full", n)], status["losses"]
    assert eeg[0]["chunks"] == refused  # every refused chunk named, across the episodes
    (capture,) = status["captures"]
    assert capture["dropped"] == sum(loss["count"] for loss in status["losses"]) >= n
    table = collector(["sessions", "--spool", str(spool)], env).stdout
    assert f"{n} chunk(s) of {stream}" in table, table
