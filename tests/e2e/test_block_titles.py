"""Every command that takes a block accepts an id or a title, with -w/-b (real CLI, real sandbox)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from collector.errors import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE

REPO = Path(__file__).resolve().parents[2]


def collector(sandbox, tmp_path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLESSON_", "COLLECTOR_"))}
    env.update(
        PYTHONPATH=str(REPO),
        OPENLESSON_BASE_URL=sandbox.base_url,
        OPENLESSON_API_KEY=sandbox.api_key,
        COLLECTOR_SPOOL_DIR=str(tmp_path / "spool"),
        XDG_RUNTIME_DIR=str(tmp_path / "run"),
    )
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_report_takes_a_block_title_in_any_case(sandbox, tmp_path):
    block_id = sandbox.block_ids[1]  # "Core ideas"
    proc = collector(sandbox, tmp_path, "report", "-w", sandbox.workspace_id, "-b", "core IDEAS")
    assert proc.returncode == EXIT_OK, proc.stderr
    assert f"block {block_id}" in proc.stdout
    ws = sandbox.workspace_id
    by_title = collector(sandbox, tmp_path, "report", "--workspace", ws, "--block", "Core ideas")
    assert by_title.returncode == EXIT_OK and f"block {block_id}" in by_title.stdout


def test_near_miss_title_says_did_you_mean(sandbox, tmp_path):
    proc = collector(sandbox, tmp_path, "report", "-w", sandbox.workspace_id, "-b", "Core idea")
    assert proc.returncode == EXIT_NOT_FOUND
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Did you mean 'Core ideas'?" in proc.stderr


def test_doctor_checks_a_block_by_title(sandbox, tmp_path):
    proc = collector(
        sandbox, tmp_path, "doctor", "-w", sandbox.workspace_id, "-b", "guided practice", "--lsl-wait", "0.2",
        timeout=120,
    )  # fmt: skip
    block_line = next(line for line in proc.stdout.splitlines() if line.split()[1:2] == ["block"])
    assert block_line.split()[0] == "ok" and f"{sandbox.block_ids[2]} 'Guided practice'" in block_line


def test_offline_replay_with_a_title_reads_the_file_first(sandbox, tmp_path):
    # --offline takes a title now (resolved by `collector upload`, test_offline_start.py); a missing
    # file is what is wrong here, and it is said as such.
    missing = tmp_path / "not-there.xdf"
    proc = collector(
        sandbox, tmp_path, "replay", str(missing), "-w", sandbox.workspace_id, "-b", "Core ideas", "--offline"
    )
    assert proc.returncode == EXIT_USAGE
    assert "not-there" in proc.stderr and "cannot look up" not in proc.stderr


def test_short_flags_on_every_command_with_a_target():
    from collector.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        dests = {a.dest: a.option_strings for a in command._actions}
        if "workspace" in dests:
            assert "-w" in dests["workspace"], name
        if "block" in dests:
            assert "-b" in dests["block"], name
