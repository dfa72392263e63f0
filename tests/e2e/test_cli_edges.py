"""Issue 20 #4: edges of the command line, each through the real `collector` CLI: its exit code and
one line, no traceback; and the behaviours behind them (0-sample captures, the end line's
duration, CSV line ends, the lab install's profile, a Muse profile on a named LSL stream, --loop)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from cli_runs import REPO, cli_env, collector, start_collector

from collector.errors import EXIT_USAGE

MUSE_XDF = REPO / "collector" / "data" / "muse-p300-subject1.xdf"
W, B = str(uuid.uuid4()), str(uuid.uuid4())


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


REFUSED = {
    "chunk-huge": (["replay", str(MUSE_XDF), "-w", W, "-b", B, "--offline", "--chunk-seconds", "1e308"],
                   ["--chunk-seconds", "600"]),
    "chunk-tiny": (["replay", str(MUSE_XDF), "-w", W, "-b", B, "--offline", "--chunk-seconds", "0.001"],
                   ["--chunk-seconds", "0.5"]),
    "chunk-run": (["run", "-w", W, "-b", B, "--offline", "--chunk-seconds", "601"], ["--chunk-seconds"]),
    "duration-negative": (["run", "-w", W, "-b", B, "--offline", "--duration", "-5"],
                          ["--duration", "above 0"]),
    "duration-inf": (["run", "-w", W, "-b", B, "--offline", "--duration", "inf"], ["--duration"]),
    "demo-duration": (["demo", "--duration", "-1"], ["--duration", "collector demo --help"]),
    "timeout-zero": (["run", "-w", W, "-b", B, "--timeout", "0"], ["--timeout", "above 0"]),
    "blocks-timeout": (["blocks", "-w", W, "--timeout", "0"], ["--timeout"]),
    "port": (["sandbox", "--port", "99999"], ["--port", "0-65535"]),
    "monitor": (["run", "-w", W, "-b", B, "--offline", "--monitor", "abc"], ["--monitor", "'abc'"]),
    "review-json": (["review", "--json"], ["--json", "`collector review --help`"]),
    "loop-without-to-lsl": (["replay", str(MUSE_XDF), "-w", W, "-b", B, "--offline", "--loop"], ["--to-lsl"]),
    "loop-speed-max": (["replay", str(MUSE_XDF), "--to-lsl", "--loop", "--speed", "max"], ["--speed N"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED))
def test_bad_options_are_one_line_and_exit_2(tmp_path, case):
    args, words = REFUSED[case]
    proc = collector(args, cli_env(COLLECTOR_SPOOL_DIR=str(tmp_path / "spool")), timeout=60)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    line = one_line(proc)
    for word in words:
        assert word in line, line
    assert "screen.monitor" not in line and "in profile default" not in line
    assert not (tmp_path / "spool").exists() or case.startswith("chunk")  # nothing captured


@pytest.mark.parametrize(
    "args",
    [["status"], ["status", "--json"], ["sessions"], ["upload"], ["review", "--last"],
     ["export", "--last", "--format", "csv", "--out", "x.csv"], ["run", "-w", W, "-b", B, "--offline"],
     ["replay", str(MUSE_XDF), "-w", W, "-b", B, "--offline"]],
    ids=lambda a: a[0] + ("-json" if "--json" in a else ""),
)  # fmt: skip
def test_a_spool_that_is_a_file_is_exit_2_for_every_command(tmp_path, args):
    spool = tmp_path / "spool.db"
    spool.write_bytes(b"")
    proc = collector([*args, "--spool", str(spool)], cli_env(), timeout=60)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert one_line(proc).endswith(
        f"{spool} is a file, not a spool folder. Pass its folder: --spool {tmp_path}."
    )


@pytest.mark.lsl
@pytest.mark.slow
def test_a_capture_of_0_samples_is_said_to_have_recorded_nothing_not_to_be_pruned(tmp_path):
    import pylsl

    from collector.devices.player import make_eeg_info

    name = f"silent-{uuid.uuid4().hex[:8]}"
    outlet = pylsl.StreamOutlet(make_eeg_info(name, name, ["TP9", "AF7"], 256.0))  # never pushes
    env = cli_env(COLLECTOR_SPOOL_DIR=str(tmp_path / "spool"), XDG_RUNTIME_DIR=str(tmp_path))
    run = collector(["run", "-w", W, "-b", B, "--offline", "--stream-name", name, "--screen", "off",
                     "--markers", "off", "--duration", "2"], env)  # fmt: skip
    del outlet
    assert "0 EEG samples" in run.stderr, run.stderr
    for args in (
        ["review", "--last"],
        ["export", "--last", "--format", "csv", "--out", str(tmp_path / "x.csv")],
    ):
        proc = collector(args, env)
        assert proc.returncode == EXIT_USAGE, proc.stderr
        line = one_line(proc)
        assert "recorded nothing: 0 EEG samples and no screenshots" in line
        assert "pruned" not in line and "retention_days" not in line


@pytest.mark.lsl
@pytest.mark.slow
def test_the_end_lines_duration_counts_the_capture_not_the_flush(sandbox, tmp_path):
    from collector.devices.player import play_sine_to_lsl

    name = f"flush-{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    player = threading.Thread(
        target=play_sine_to_lsl, kwargs={"stream_name": name, "source_id": name, "stop_event": stop}
    )
    player.start()
    try:
        env = cli_env(sandbox, COLLECTOR_SPOOL_DIR=str(tmp_path / "spool"), XDG_RUNTIME_DIR=str(tmp_path))
        args = ["run", "-w", sandbox.workspace_id, "-b", sandbox.block_ids[0], "--stream-name", name,
                "--screen", "off", "--markers", "off", "--duration", "4", "--chunk-seconds", "1",
                "--flush-timeout", "8", "--log-format", "json"]  # fmt: skip
        proc = start_collector(args, env)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while not any('"capture_started"' in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)
        sandbox.stop()  # the API goes away: the flush after the capture waits its 8 s in vain
        proc.wait(timeout=120)
        reader.join(10)
        proc.stdout.close()
        proc.stderr.close()
        err = "".join(lines)
    finally:
        stop.set()
        player.join(10)
    assert proc.returncode is not None, err
    summary = next((json.loads(line) for line in err.splitlines() if '"summary"' in line), None)
    assert summary is not None, err
    flushing = [json.loads(line) for line in err.splitlines() if '"flushing"' in line]
    assert flushing, err  # the flush did happen, and took its time
    assert 3.5 <= summary["duration_s"] <= 6.0, summary  # not 4 s + the 8 s flush
    assert (
        f"Session ended after {summary['duration_s']:.0f} s" in summary["message"] or "Session ended" in err
    )


@pytest.mark.slow
def test_csv_export_uses_unix_line_ends_as_muselsl_does(tmp_path):
    cut = tmp_path / "short.xdf"  # the first 2,259 samples (8.8 s) of the bundled recording
    cut.write_bytes(MUSE_XDF.read_bytes()[:69_933])
    env = cli_env(COLLECTOR_SPOOL_DIR=str(tmp_path / "spool"))
    replay = collector(["replay", str(cut), "-w", W, "-b", B, "--offline", "--speed", "max"], env)
    assert replay.returncode == 0, replay.stderr
    out = tmp_path / "x.csv"
    proc = collector(["export", "--last", "--format", "csv", "--out", str(out)], env)
    assert proc.returncode == 0, proc.stderr
    raw = out.read_bytes()
    assert b"\r" not in raw and raw.count(b"\n") == 1 + 2259  # header + one line per sample


def test_the_lab_install_example_gives_the_lab_profiles_settings(tmp_path):
    """The README's and lab-staff page's example: `--profile lab --extends muse-2`."""
    from collector.profiles.profile import load_profile

    key = tmp_path / "key"
    key.write_text("k\n")
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "install-lab-service.sh"), "--dry-run", "--profile", "lab",
         "--extends", "muse-2", "--key-file", str(key)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "lab.toml (mode" in line)
    toml = []
    for line in lines[start + 1 :]:
        if not line.startswith("      | "):
            break
        toml.append(line[8:])
    path = tmp_path / "lab.toml"
    path.write_text("\n".join(toml) + "\n")
    written, lab, muse = load_profile(str(path)), load_profile("lab"), load_profile("muse-2")
    assert written.device == muse.device  # the headset from --extends
    assert written.analysis.chunk_s == lab.analysis.chunk_s == 30  # the lab's settings kept
    assert written.screen.interval_s == lab.screen.interval_s
    assert written.screen.keepalive_s == lab.screen.keepalive_s


@pytest.mark.lsl
@pytest.mark.slow
def test_a_profile_extending_a_muse_profile_reads_a_named_lsl_stream(tmp_path):
    from collector.devices.player import play_sine_to_lsl

    profile = tmp_path / "lab.toml"
    profile.write_text('extends = "muse-2"\n[analysis]\nchunk_s = 1\n')
    name = f"musepro-{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    player = threading.Thread(
        target=play_sine_to_lsl, kwargs={"stream_name": name, "source_id": name, "stop_event": stop}
    )
    player.start()
    try:
        env = cli_env(COLLECTOR_SPOOL_DIR=str(tmp_path / "spool"), XDG_RUNTIME_DIR=str(tmp_path))
        proc = collector(["run", "-w", W, "-b", B, "--offline", "--profile", str(profile), "--stream-name",
                          name, "--screen", "off", "--markers", "off", "--duration", "3"], env)  # fmt: skip
    finally:
        stop.set()
        player.join(10)
    assert proc.returncode == 0, proc.stderr
    assert f"capturing EEG from '{name}'" in proc.stderr
    assert "muselsl" not in proc.stderr.lower() and "bluetooth" not in proc.stderr.lower()


@pytest.mark.lsl
@pytest.mark.slow
def test_replay_to_lsl_loop_plays_the_file_again_and_again(tmp_path):
    import pylsl

    cut = tmp_path / "short.xdf"  # the first 2,259 samples (8.8 s) of the bundled recording
    cut.write_bytes(MUSE_XDF.read_bytes()[:69_933])
    name = f"loop-{uuid.uuid4().hex[:8]}"
    proc = start_collector(["replay", str(cut), "--to-lsl", "--loop", "--stream-name", name, "--speed", "20"],
                           cli_env())  # fmt: skip
    try:
        found = pylsl.resolve_byprop("name", name, 1, 30.0)
        assert found, "the stream never appeared"
        inlet = pylsl.StreamInlet(found[0])
        got, deadline = 0, time.monotonic() + 30
        while got < 3 * 2259 and time.monotonic() < deadline:
            _, stamps = inlet.pull_chunk(timeout=0.5)
            got += len(stamps)
        assert got >= 3 * 2259  # three passes at least: it did not stop after one
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert "--loop: playing" in err and "Stopped playing" in err, err


@pytest.mark.parametrize(
    ("name", "own"), [(None, None), ("OPENBLAS_NUM_THREADS", "2"), ("OMP_NUM_THREADS", "2")]
)
def test_a_command_runs_numpy_with_one_blas_thread_unless_the_user_set_it(name, own):
    """OpenBLAS's worker threads busy-wait ~0.1 s of CPU at every start (issue 23): the CLI sets
    OPENBLAS_NUM_THREADS=1 before numpy is imported, and keeps a value the user gave, also an
    OMP_NUM_THREADS alone (OpenBLAS reads it when its own variable is unset)."""
    blas = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")
    env = {k: v for k, v in cli_env().items() if k not in blas}
    if name:
        env[name] = own
    probe = (
        "import os, sys\n"
        "from collector import cli\n"
        "cli._main([])\n"  # no command: the help, as `collector` alone prints it
        "import numpy\n"
        "print('RESULT', os.environ.get('OPENBLAS_NUM_THREADS', '-'), len(os.listdir('/proc/self/task')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    value, threads = out.stdout.split("RESULT")[1].split()
    assert value == {None: "1", "OPENBLAS_NUM_THREADS": own}.get(name, "-")
    # numpy's import started no BLAS thread beside the main one, or the user's count of them
    assert threads == (own or "1")
