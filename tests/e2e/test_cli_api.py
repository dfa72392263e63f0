"""The real `collector` CLI (a subprocess) against the sandbox: output, exit codes, no key leaks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from collector.errors import EXIT_AUTH, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(sandbox, tmp_path):
    """run(*args, key=..., base_url=...) -> CompletedProcess; every run's output is kept in `outputs`."""
    outputs: list[str] = []

    def run(*args: str, key: str | None = None, base_url: str | None = None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLESSON_", "COLLECTOR_"))}
        env.update(
            PYTHONPATH=str(REPO),
            OPENLESSON_BASE_URL=base_url or sandbox.base_url,
            OPENLESSON_API_KEY=sandbox.api_key if key is None else key,
            COLLECTOR_SPOOL_DIR=str(tmp_path / "spool"),
        )
        proc = subprocess.run(
            [sys.executable, "-m", "collector", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        outputs.append(proc.stdout + proc.stderr)
        return proc

    run.outputs = outputs
    return run


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("collector: ")
    return lines[0]


def test_blocks_table_and_json(cli, sandbox):
    table = cli("blocks", "--workspace", sandbox.workspace_id)
    assert table.returncode == EXIT_OK, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "TITLE", "STATUS", "START"]
    assert [line.split()[0] for line in lines[1:]] == sandbox.block_ids
    assert lines[1].endswith("start") and not lines[2].endswith("start")
    assert table.stderr == ""

    raw = cli("blocks", "--workspace", sandbox.workspace_id, "--json")
    assert [b["id"] for b in json.loads(raw.stdout)["blocks"]] == sandbox.block_ids


def test_wrong_key_exits_3_with_one_line(cli, sandbox):
    proc = cli("blocks", "--workspace", sandbox.workspace_id, key="sk_not_a_real_key")
    assert proc.returncode == EXIT_AUTH
    assert (
        one_line_error(proc)
        == "collector: The API key was rejected (unauthorized). Check OPENLESSON_API_KEY."
    )


@pytest.mark.parametrize(
    ("key_name", "code"),
    [("revoked", "key_revoked"), ("expired", "key_expired"), ("teams_required", "teams_required")],
)
def test_other_auth_failures_exit_3(cli, sandbox, key_name, code):
    proc = cli("blocks", "--workspace", sandbox.workspace_id, key=sandbox.keys[key_name])
    assert proc.returncode == EXIT_AUTH and f"({code})" in one_line_error(proc)


def test_unknown_workspace_exits_4(cli):
    proc = cli("blocks", "--workspace", str(uuid.uuid4()))
    assert proc.returncode == EXIT_NOT_FOUND and "workspace_not_found" in one_line_error(proc)


def test_malformed_ids_exit_2_before_any_request(cli, sandbox):
    closed_port = "http://127.0.0.1:9"  # a request would fail with a network error (exit 1), not 2
    for args in (
        ("blocks", "--workspace", "not-a-uuid"),
        ("report", "--workspace", "1234", "--block", "Warm-up"),
    ):
        proc = cli(*args, base_url=closed_port)
        assert proc.returncode == EXIT_USAGE and "is not a valid id" in one_line_error(proc)


def test_unknown_block_names_the_fix(cli, sandbox):
    block = str(uuid.uuid4())
    proc = cli("report", "--workspace", sandbox.workspace_id, "--block", block)
    assert proc.returncode == EXIT_NOT_FOUND
    assert f"Run `collector blocks --workspace {sandbox.workspace_id}`." in one_line_error(proc)


def test_missing_key_exits_2(cli, sandbox):
    proc = cli("blocks", "--workspace", sandbox.workspace_id, key="")
    assert proc.returncode == EXIT_USAGE and "OPENLESSON_API_KEY" in one_line_error(proc)


def test_unreachable_api_exits_1_with_one_line(cli, sandbox):
    proc = cli("blocks", "--workspace", sandbox.workspace_id, base_url="http://127.0.0.1:9")
    assert proc.returncode == 1 and "Cannot connect" in one_line_error(proc)


def test_workspace_create_with_files(cli, tmp_path):
    plan = tmp_path / "plan.md"
    plan.write_text("# Fractions\n")
    proc = cli("workspace", "create", "--prompt", "Learn fractions", "--file", str(plan))
    assert proc.returncode == EXIT_OK, proc.stderr
    first = proc.stdout.splitlines()[0].split()
    assert first[0] == "Workspace" and uuid.UUID(first[1])
    assert "plan.md (12 bytes)" in proc.stdout and "Warm-up: Learn fractions" in proc.stdout

    listed = cli("blocks", "--workspace", first[1], "--json")
    assert len(json.loads(listed.stdout)["blocks"]) == 4


def test_workspace_create_refuses_bad_files_locally(cli, tmp_path):
    html = tmp_path / "page.html"
    html.write_text("<p>")
    notes = tmp_path / "n.txt"
    notes.write_text("n")
    for files, words in (
        ([str(html)], "unsupported file type"),
        ([str(tmp_path / "missing.pdf")], "Cannot read"),
        ([str(notes)] * 6, "at most 5"),
    ):
        args = [a for f in files for a in ("--file", f)]
        proc = cli("workspace", "create", "--prompt", "p", *args, base_url="http://127.0.0.1:9")
        assert proc.returncode == EXIT_USAGE and words in one_line_error(proc)


def test_read_only_key_cannot_create(cli, sandbox):
    proc = cli("workspace", "create", "--prompt", "p", key=sandbox.keys["read_only"])
    assert proc.returncode == EXIT_AUTH and "(forbidden" in one_line_error(proc)


def test_report_and_chat(cli, sandbox):
    report = cli("report", "--workspace", sandbox.workspace_id)
    assert report.returncode == EXIT_OK, report.stderr
    assert report.stdout.startswith("Sandbox report") and "[high] No EEG evidence" in report.stdout
    chat = cli("report", "--workspace", sandbox.workspace_id, "--prompt", "How am I doing?")
    assert chat.returncode == EXIT_OK and "> How am I doing?" in chat.stdout
    raw = cli("report", "--workspace", sandbox.workspace_id, "--json")
    assert json.loads(raw.stdout)["mode"] == "report"


def test_key_never_in_output_or_files(cli, sandbox, tmp_path):
    cli("blocks", "--workspace", sandbox.workspace_id, "--verbose")
    cli("report", "--workspace", sandbox.workspace_id, "--verbose")
    cli("blocks", "--workspace", str(uuid.uuid4()), "--verbose")
    cli("workspace", "create", "--prompt", "p", "--verbose", key=sandbox.keys["read_only"])
    wrong = "sk_wrong_" + "9" * 30
    cli("blocks", "--workspace", sandbox.workspace_id, "--verbose", key=wrong)
    assert len(cli.outputs) == 5 and any("HTTP 200" in out for out in cli.outputs)  # debug lines are there
    secrets = [*sandbox.keys.values(), wrong]
    for out in cli.outputs:
        for key in secrets:
            assert key not in out and key[-10:] not in out  # nor its tail (a truncated leak)
    key_file = sandbox.data_dir / "keys.txt"
    written = [p for root in (tmp_path, sandbox.data_dir) for p in root.rglob("*") if p.is_file()]
    for path in written:
        if path != key_file:
            assert not any(key.encode() in path.read_bytes() for key in secrets), path


def test_sandbox_command_serves_prints_and_restarts(tmp_path):
    data = tmp_path / "sbx"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLESSON_", "COLLECTOR_"))}
    env["PYTHONPATH"] = str(REPO)

    def start() -> tuple[subprocess.Popen, dict[str, str]]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "collector", "sandbox", "--port", "0", "--data", str(data)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        found: dict[str, str] = {}
        for line in proc.stdout:  # the banner ends with the Ctrl-C hint
            name, sep, value = line.strip().removeprefix("export ").partition("=")
            if sep and name.startswith("OPENLESSON_"):
                found[name] = value
            if line.startswith("Workspace "):
                found["workspace"] = line.split()[1]
            if "Ctrl-C" in line:
                break
        return proc, found

    def stop(proc: subprocess.Popen) -> int:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=30)
        finally:
            proc.stdout.close()

    first, printed = start()
    try:
        assert printed["OPENLESSON_API_KEY"].startswith("sk_")
        blocks = subprocess.run(
            [sys.executable, "-m", "collector", "blocks", "--workspace", printed["workspace"]],
            env={**env, **{k: v for k, v in printed.items() if k.startswith("OPENLESSON_")}},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert blocks.returncode == EXIT_OK and len(blocks.stdout.splitlines()) == 5
    finally:
        assert stop(first) == EXIT_OK

    second, again = start()
    try:
        assert again["OPENLESSON_API_KEY"] == printed["OPENLESSON_API_KEY"]
        assert again["workspace"] == printed["workspace"]
    finally:
        assert stop(second) == EXIT_OK
