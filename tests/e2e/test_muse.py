"""MuseSource without a headset: the real muselsl command line, restarts of a stand-in child that
publishes a real LSL stream and exits (a BLE drop), `list_muses` that never hangs, lazy imports,
and `collector devices`."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from collector.devices.muse import (
    MuseSource,
    bluetooth_problem,
    build_stream_command,
    list_muses,
    muse_source_id,
    muselsl_model,
)
from collector.errors import NoSourceError, UsageError

REPO = Path(__file__).parents[2]


def fake_address() -> str:
    return ":".join(f"{random.randrange(256):02X}" for _ in range(6))


def test_stream_command_uses_lsl_time_and_maps_models():
    cmd = build_stream_command("00:55:DA:B0:0B:61", model="Muse 2")
    assert cmd[:4] == [sys.executable, "-m", "muselsl", "stream"]
    assert "--lsltime" in cmd
    assert cmd[cmd.index("--model") + 1] == "legacy"
    assert cmd[cmd.index("--address") + 1] == "00:55:DA:B0:0B:61"
    assert build_stream_command(model="Muse S Athena")[6] == "athena"
    assert "--address" not in build_stream_command()
    assert [muselsl_model(m) for m in ("auto", "", "Muse 2016", "Muse S", "athena")] == [
        "auto",
        "auto",
        "legacy",
        "legacy",
        "athena",
    ]
    with pytest.raises(UsageError, match="not known"):
        muselsl_model("OpenBCI Cyton")
    assert muse_source_id("00:55:DA:B0:0B:61") == "Muse00:55:DA:B0:0B:61"  # muselsl's 'Muse%s' % address
    with pytest.raises(UsageError, match="Bluetooth address"):
        MuseSource(address="not-a-mac")


@pytest.mark.slow
def test_muselsl_accepts_every_flag_of_the_built_command():
    cmd = build_stream_command(
        "00:55:DA:B0:0B:61", model="Muse S Athena", name="Muse-0B61", backend="bleak", interface="hci0"
    )
    done = subprocess.run([*cmd[:4], "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    for flag in (arg for arg in cmd[4:] if arg.startswith("--")):
        assert flag in done.stdout, f"muselsl stream has no {flag}"
    assert "{auto,athena,legacy}" in done.stdout


STAND_IN = textwrap.dedent(
    """
    # Stands in for `muselsl stream --lsltime`: publishes like muselsl, then exits (a BLE drop).
    import sys, time
    from pathlib import Path
    import numpy as np
    import pylsl
    runs_file, address = Path(sys.argv[1]), sys.argv[2]
    run = int(runs_file.read_text()) if runs_file.exists() else 0
    runs_file.write_text(str(run + 1))
    info = pylsl.StreamInfo("Muse", "EEG", 5, 256, "float32", "Muse%s" % address)
    channels = info.desc().append_child("channels")
    for label in ("TP9", "AF7", "AF8", "TP10", "Right AUX"):
        ch = channels.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", "microvolts")
    outlet = pylsl.StreamOutlet(info, 12)
    print("Connected.", flush=True)
    outlet.wait_for_consumers(10)
    t0 = pylsl.local_clock()
    for k in range(0, 192, 12):  # 0.75 s
        idx = np.arange(k, k + 12)
        values = np.repeat((run * 10000 + idx)[:, None], 5, axis=1).astype(np.float32)
        outlet.push_chunk(values, (t0 + idx / 256).tolist())
        time.sleep(12 / 256)
    time.sleep(0.3)
    print("Disconnected.", flush=True)
    """
)


@pytest.mark.lsl
def test_child_exit_is_restarted_and_reading_continues_with_a_gap(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    address = fake_address()
    command = [sys.executable, "-c", STAND_IN, str(tmp_path / "runs"), address]
    source = MuseSource(
        address=address, command=command, restart_delay_s=0.2, lost_after_s=0.5, connect_timeout_s=30
    )
    try:
        d = source.open()
        assert d.source_id == muse_source_id(address)
        assert d.channels == ("TP9", "AF7", "AF8", "TP10") and d.aux_channels == ("Right AUX",)
        chunks = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            chunk = source.read(0.2)
            if chunk is not None:
                chunks.append(chunk)
                if chunk.data[-1, 0] >= 10000 + 191:  # the whole second run arrived
                    break
    finally:
        source.close()
    values = np.concatenate([c.data[:, 0] for c in chunks])
    first_run, second_run = values[values < 10000], values[(values >= 10000) & (values < 20000)]
    np.testing.assert_array_equal(first_run, np.arange(192))
    np.testing.assert_array_equal(second_run, 10000 + np.arange(192))
    assert source.restarts >= 1
    gaps = [g for c in chunks for g in c.gaps]
    assert len(gaps) >= 1 and gaps[0].end_ms > gaps[0].start_ms
    assert "muselsl exited" in caplog.text
    assert source._child is None  # closed: no child left behind


def test_open_fails_with_one_line_when_no_stream_appears():
    command = [sys.executable, "-c", "print('No Muses found.')"]
    source = MuseSource(address=fake_address(), command=command, connect_timeout_s=1.5, restart_delay_s=0.2)
    with pytest.raises(NoSourceError) as info:
        source.open()
    message = str(info.value)
    assert "\n" not in message and "No Muses found." in message and "--address" in message


def _script(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_list_muses_parses_muselsl_output():
    scan = list_muses(
        10,
        command=_script(
            """
            print("Searching for Muses, this may take up to 10 seconds...")
            print("Found device Muse-41D2, MAC Address 00:55:da:b0:41:d2")
            print("Found device Muse S-0B61, MAC Address 00:55:DA:B0:0B:61")
            """
        ),
        check_bluetooth=False,
    )
    assert [(m.name, m.address) for m in scan.muses] == [
        ("Muse-41D2", "00:55:DA:B0:41:D2"),
        ("Muse S-0B61", "00:55:DA:B0:0B:61"),
    ]
    assert scan.reason == ""


def test_list_muses_reports_why_it_is_empty_and_never_hangs():
    failed = list_muses(
        10,
        command=_script(
            """
            import sys
            print("Traceback (most recent call last):", file=sys.stderr)
            print("FileNotFoundError: [Errno 2] No such file or directory", file=sys.stderr)
            sys.exit(1)
            """
        ),
        check_bluetooth=False,
    )
    assert failed.muses == () and "Bluetooth unavailable" in failed.reason
    none = list_muses(10, command=_script("print('No Muses found.')"), check_bluetooth=False)
    assert none.muses == () and "no Muse headset found" in none.reason
    started = time.monotonic()
    hung = list_muses(0.5, command=_script("import time; time.sleep(60)"), check_bluetooth=False)
    assert hung.muses == () and "did not finish" in hung.reason
    assert time.monotonic() - started < 10


def test_list_muses_without_a_bluetooth_adapter_returns_at_once():
    if not bluetooth_problem():
        pytest.skip("this machine has a Bluetooth adapter")
    started = time.monotonic()
    scan = list_muses(30)
    assert scan.muses == () and scan.reason.startswith("Bluetooth unavailable")
    assert time.monotonic() - started < 2


def test_muselsl_is_not_imported_by_the_collector_or_the_muse_module():
    code = (
        "import sys, collector.cli, collector.devices.muse, collector.commands.devices;"
        "heavy = [m for m in ('muselsl', 'pandas', 'sklearn', 'seaborn') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-500:]


@pytest.mark.lsl
def test_devices_command_lists_visible_lsl_streams_as_json(capsys):
    import pylsl

    from collector.cli import main
    from collector.devices.player import make_eeg_info

    name = f"devices-{uuid.uuid4().hex[:10]}"
    outlet = pylsl.StreamOutlet(make_eeg_info(name, name, ["TP9", "AF7"], 256.0))
    try:
        assert main(["devices", "--no-bluetooth", "--json", "--timeout", "1"]) == 0
    finally:
        del outlet
    doc = json.loads(capsys.readouterr().out)
    ours = [s for s in doc["lsl_streams"] if s["source_id"] == name]
    assert len(ours) == 1
    assert ours[0]["labels"] == ["TP9", "AF7"] and ours[0]["sfreq"] == 256.0 and ours[0]["type"] == "EEG"
    assert doc["muse"]["headsets"] == [] and "skipped" in doc["muse"]["reason"]


PDEATH_CHILD = textwrap.dedent(
    """
    # Stands in for `muselsl stream`: notes its pid, publishes a stream, and would run forever.
    import os, sys, time
    import pylsl
    with open(sys.argv[1], "a") as f:
        f.write(f"{os.getpid()}\\n")
    info = pylsl.StreamInfo("Muse", "EEG", 4, 256, "float32", "Muse%s" % sys.argv[2])
    outlet = pylsl.StreamOutlet(info)
    print("Connected.", flush=True)
    while True:
        outlet.push_sample([0.0] * 4)
        time.sleep(0.05)
    """
)

PDEATH_PARENT = textwrap.dedent(
    """
    # A collector that opens the Muse source from a short-lived thread, then reads until killed.
    import sys, threading
    from collector.devices.muse import MuseSource
    child = [sys.executable, "-c", sys.argv[1], sys.argv[2], sys.argv[3]]
    source = MuseSource(address=sys.argv[3], command=child, connect_timeout_s=30, markers=None)
    opener = threading.Thread(target=source.open)
    opener.start()
    opener.join()
    print("open", flush=True)
    while True:
        source.read(0.5)
    """
)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's reaper may be slow or absent in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.lsl
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_a_sigkilled_collector_takes_the_muselsl_child_with_it(tmp_path):
    pids_file = tmp_path / "child-pids"
    address = fake_address()
    parent = subprocess.Popen(
        [sys.executable, "-c", PDEATH_PARENT, PDEATH_CHILD, str(pids_file), address],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "open"
        time.sleep(0.5)  # the thread that called open() has ended: the child must outlive it
        pids = [int(line) for line in pids_file.read_text().split()]
        assert len(pids) == 1 and _running(pids[0]), pids  # not killed and restarted
        parent.kill()  # SIGKILL: no cleanup code of ours runs
        parent.wait(10)
        deadline = time.monotonic() + 5
        while _running(pids[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(pids[0]), "the muselsl stand-in outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()
        for pid in [int(line) for line in pids_file.read_text().split()] if pids_file.exists() else []:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_bluetooth_failure_of_muselsl_says_what_to_check():
    """review13 #8: muselsl's "FileNotFoundError" (bleak finds no BlueZ/D-Bus) was passed on raw."""
    command = _script("""
        import sys
        print("FileNotFoundError: [Errno 2] No such file or directory", file=sys.stderr)
        sys.exit(1)
    """)
    source = MuseSource(address=fake_address(), command=command, connect_timeout_s=1.5, restart_delay_s=0.2)
    with pytest.raises(NoSourceError) as info:
        source.open()
    message = str(info.value)
    assert "\n" not in message and "within 1.5 s" in message
    assert "muselsl cannot use Bluetooth here" in message and "bluetoothctl show" in message


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adapters are only listed on Linux")
def test_fit_on_a_muse_without_an_adapter_stops_at_once_with_what_to_do(tmp_path):
    """review13 #8: `fit --device muse --timeout 3` ran muselsl for 60 s, then said FileNotFoundError."""
    if not bluetooth_problem():
        pytest.skip("this machine has a Bluetooth adapter")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLESSON_", "COLLECTOR_"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "collector", "fit", "--device", "muse", "--timeout", "3"],
        env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    took = time.monotonic() - started
    assert proc.returncode == 5, proc.stderr
    (line,) = proc.stderr.strip().splitlines()[-1:]
    assert line.startswith("collector: cannot reach a Muse: no Bluetooth adapter found"), line
    assert "bluetoothctl" in line and "Traceback" not in proc.stderr
    assert took < 15, took  # python start-up on a loaded machine; muselsl is never started
