"""A Muse headset as an EEG source: `muselsl stream --lsltime` as a managed child, read over LSL.

muselsl pulls heavy packages (pandas, scikit-learn) and BLE stacks, so it only ever runs in a
child process (`python -m muselsl ...`); nothing here imports it. The child is restarted when it
exits (muselsl ends itself 3 s after the headset stops sending: a BLE drop), and the LSL source
underneath waits for the same stream (source_id `Muse<address>`) to come back, reporting the gap.

The child must not outlive the collector, even a SIGKILLed one that runs no cleanup. On Linux the
kernel sees to it: the child is started with a parent-death signal (prctl PR_SET_PDEATHSIG,
SIGKILL). That needs no extra process and no polling, and cannot be missed the way a watchdog
(start_new_session plus a process that polls for the parent) can be when the watchdog itself is
killed with the group or lags. Two caveats are handled: the signal fires when the *thread* that
started the child ends, so every child is started by the supervisor thread, which lives as long as
the source; and a parent that dies between fork and prctl is caught by checking getppid() after.
SIGKILL, not SIGTERM, because once the parent is gone nobody is left to escalate.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.core.records import SampleChunk, StreamDescription
from collector.devices.lsl.source import LslSource
from collector.errors import NoSourceError, UsageError

log = logging.getLogger(__name__)

MUSELSL_STREAM_NAME = "Muse"  # muselsl names every outlet "Muse" (EEG, PPG, ACC, GYRO differ by type)
_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_FOUND_RE = re.compile(r"Found device (?P<name>.+?), MAC Address (?P<address>[0-9A-Fa-f:]{17})")


def muselsl_model(model: str | None) -> str:
    """Our model names (profiles say "Muse 2", "Muse S Athena", ...) -> muselsl's --model value."""
    text = (model or "auto").strip().lower()
    if text in ("", "auto"):
        return "auto"
    if "athena" in text:
        return "athena"
    if text in ("legacy",) or "muse" in text:
        return "legacy"
    raise UsageError(
        f"Muse model {model!r} is not known: use auto, Muse 2016, Muse 2, Muse S or Muse S Athena."
    )


def muse_source_id(address: str) -> str:
    """The source_id muselsl gives its outlets (`'Muse%s' % address`)."""
    return f"Muse{address}"


def build_stream_command(
    address: str | None = None,
    *,
    model: str = "auto",
    name: str | None = None,
    backend: str = "auto",
    interface: str | None = None,
    retries: int = 3,
    python: str = sys.executable,
    sensors: Sequence[str] = (),
) -> list[str]:
    """The `muselsl stream` command line: LSL-clock timestamps (--lsltime), EEG, and the auxiliary
    sensors asked for (`sensors`: accelerometer -> --acc, gyroscope -> --gyro, ppg -> --ppg, which
    on an Athena also turns on its optics stream, type PPG)."""
    cmd = [python, "-m", "muselsl", "stream", "--lsltime", "--model", muselsl_model(model)]
    for kind, flag in (("accelerometer", "--acc"), ("gyroscope", "--gyro"), ("ppg", "--ppg")):
        if kind in sensors:
            cmd.append(flag)
    if address:
        cmd += ["--address", address]
    if name:
        cmd += ["--name", name]
    if backend and backend != "auto":
        cmd += ["--backend", backend]
    if interface:
        cmd += ["--interface", interface]
    cmd += ["--retries", str(retries)]
    return cmd


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _linux_prctl() -> Any:
    """libc's prctl, loaded in the parent: the child between fork and exec must not dlopen."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not glibc/musl: no parent-death signal, close() still stops it
        log.debug("prctl unavailable", exc_info=True)
        return None


_PRCTL = _linux_prctl()


def die_with_parent() -> Callable[[], None] | None:
    """A Popen preexec_fn that has the kernel SIGKILL the child when this process dies; None off Linux.

    Called in the parent right before each spawn: the pid it checks against is the spawner's.
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()
    sig = int(signal.SIGKILL)

    def preexec() -> None:  # runs in the child between fork and exec: no imports, no locks
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: no signal will ever come
            os._exit(1)

    return preexec


class _Child:
    """One run of the child process; its output is logged at debug level and the tail kept."""

    def __init__(
        self, command: Sequence[str], env: dict[str, str] | None, tail: collections.deque[str]
    ) -> None:
        self.tail = tail  # shared across runs: the last words of a child that exited stay readable
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},  # its lines as they come
            preexec_fn=die_with_parent(),  # a SIGKILLed collector takes the child with it
        )
        self._reader = threading.Thread(target=self._read, name="muselsl-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                line = line.rstrip()
                if line:
                    self.tail.append(line)
                    log.debug("muselsl: %s", line)
        finally:
            self.proc.stdout.close()

    def last_line(self) -> str:
        return self.tail[-1] if self.tail else "no output"

    def stop(self, timeout_s: float = 3.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout_s)
        self._reader.join(1.0)


class MuseSource:
    """EegSource for a Muse headset through a supervised `muselsl stream --lsltime` child.

    command: the child's command line (default: `build_stream_command(...)`); tests inject a
    stand-in that publishes an LSL stream and exits.
    """

    def __init__(
        self,
        address: str | None = None,
        model: str = "auto",
        *,
        name: str | None = None,
        backend: str = "auto",
        interface: str | None = None,
        command: Sequence[str] | None = None,
        source_id: str | None = None,
        connect_timeout_s: float = 60.0,
        restart_delay_s: float = 2.0,
        max_restart_delay_s: float = 30.0,
        lost_after_s: float = 3.0,
        eeg_channels: Sequence[str] | None = None,
        aux_channels: Sequence[str] = (),
        env: dict[str, str] | None = None,
        markers: str | None = "auto",
        sensors: Sequence[str] = (),
    ) -> None:
        if address and not _MAC_RE.match(address) and not address.startswith("{"):
            # CoreBluetooth on macOS uses UUIDs instead of MACs; accept those as given.
            if not re.match(r"^[0-9A-Fa-f-]{36}$", address):
                raise UsageError(
                    f"Muse address {address!r} is not a Bluetooth address like 00:55:DA:B0:0B:61. "
                    "Run `collector devices` to list headsets."
                )
        self.address = address
        self.model = model
        self._default_command = not command  # a given command (tests, wrappers) may not need Bluetooth
        self.command = (
            list(command)
            if command
            else build_stream_command(
                address, model=model, name=name, backend=backend, interface=interface, sensors=sensors
            )
        )
        self.source_id = source_id or (muse_source_id(address) if address else None)
        self.connect_timeout_s = connect_timeout_s
        self.restart_delay_s = restart_delay_s
        self.max_restart_delay_s = max_restart_delay_s
        self.env = env
        self.restarts = 0
        self.description: StreamDescription | None = None
        display_model = model if model and model.lower() not in ("auto", "legacy", "athena") else "Muse"
        self._lsl = LslSource(
            stream_name=None if self.source_id else MUSELSL_STREAM_NAME,
            stream_type="EEG",
            source_id=self.source_id,
            resolve_timeout_s=1.0,
            eeg_channels=eeg_channels,
            aux_channels=aux_channels,
            model=display_model,
            lost_after_s=lost_after_s,
            markers=markers,  # muselsl sends none; a stimulus script's `Muse-markers` is followed
        )
        self._child: _Child | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=20)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._spawn_error: NoSourceError | None = None

    # -- EegSource -----------------------------------------------------------------------------
    def open(self) -> StreamDescription:
        if self._default_command:
            problem = bluetooth_problem()
            if problem:  # muselsl would fail and be restarted until the timeout: say why at once
                raise NoSourceError(f"cannot reach a Muse: {problem}. {BLUETOOTH_CHECKS}")
        shown = self.command[1:] if self.command[0] == sys.executable else self.command
        log.info("starting %s", " ".join(shown))
        self._stop.clear()
        # The supervisor starts every child, the first too: a child's parent-death signal fires when
        # the thread that started it ends, and the caller's thread may end before the source does.
        started = threading.Event()
        self._spawn_error = None
        self._supervisor = threading.Thread(
            target=self._supervise, args=(started,), name="muselsl-supervisor", daemon=True
        )
        self._supervisor.start()
        started.wait()
        if self._spawn_error is not None:
            self._supervisor.join(10.0)
            raise self._spawn_error
        deadline = time.monotonic() + self.connect_timeout_s
        while True:
            try:
                self.description = self._lsl.open()
                return self.description
            except NoSourceError:
                if time.monotonic() >= deadline:
                    said = self._tail[-1] if self._tail else "no output"
                    self.close()
                    if any(k in said for k in BLUETOOTH_ERRORS):  # e.g. FileNotFoundError: no BlueZ/D-Bus
                        raise NoSourceError(
                            f"no Muse EEG stream within {self.connect_timeout_s:g} s: muselsl cannot use "
                            f"Bluetooth here ({said[:120]}). {BLUETOOTH_CHECKS}"
                        ) from None
                    raise NoSourceError(
                        f"no Muse EEG stream appeared within {self.connect_timeout_s:g} s (muselsl: {said}). "
                        "Switch the headset on, check Bluetooth (`collector devices` lists headsets), "
                        "or pass --address MAC."
                    ) from None

    def read(self, timeout: float) -> SampleChunk | None:
        return self._lsl.read(timeout)

    @property
    def lost(self) -> bool:
        """The headset's stream is gone (a BLE drop); the supervisor is restarting muselsl."""
        return self._lsl.lost

    def close(self) -> None:
        self._stop.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(10.0)
        with self._lock:
            child, self._child = self._child, None
        if child is not None:
            child.stop()
        self._lsl.close()

    def __enter__(self) -> MuseSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- supervision ---------------------------------------------------------------------------
    def _spawn(self) -> None:
        try:
            child = _Child(self.command, self.env, self._tail)
        except OSError as exc:
            raise NoSourceError(
                f"cannot start muselsl ({exc}). Check the installation: pip install muselsl."
            ) from None
        with self._lock:
            self._child = child  # close() joins the supervisor first, then stops this one

    def _supervise(self, started: threading.Event) -> None:
        try:
            try:
                self._spawn()
            except NoSourceError as err:
                self._spawn_error = err
                return
            finally:
                started.set()
            self._restart_loop()
        finally:
            # Stopped here, by the thread that started it, before that thread's end signals it.
            with self._lock:
                child, self._child = self._child, None
            if child is not None:
                child.stop()

    def _restart_loop(self) -> None:
        delay = self.restart_delay_s
        while not self._stop.is_set():
            with self._lock:
                child = self._child
            if child is None:
                return
            if child.proc.poll() is None:
                self._stop.wait(0.2)
                continue
            child.stop()  # reaps it and collects the rest of its output
            lived_s = time.monotonic() - child.started
            if lived_s > 60:
                delay = self.restart_delay_s  # it streamed for a while: a fresh drop, not a loop
            log.warning(
                "muselsl exited (code %s, after %.0f s: %s); restarting it in %.0f s",
                child.proc.returncode,
                lived_s,
                child.last_line(),
                delay,
            )
            if self._stop.wait(delay):
                return
            try:
                self._spawn()
            except NoSourceError as err:
                log.error("%s", err)
                return
            self.restarts += 1
            delay = min(delay * 2, self.max_restart_delay_s)


@dataclass(frozen=True, slots=True)
class MuseInfo:
    name: str
    address: str


@dataclass(frozen=True, slots=True)
class MuseScan:
    muses: tuple[MuseInfo, ...]
    reason: str = ""  # why the list is empty (no Bluetooth, scan failed, none found); "" when not


# What muselsl's Bluetooth backends (bleak over BlueZ/D-Bus, pygatt) print when they cannot work:
# FileNotFoundError is bleak not finding the system D-Bus socket or BlueZ.
BLUETOOTH_ERRORS = ("FileNotFoundError", "DBus", "dbus", "BleakError", "BLEError", "org.bluez")
BLUETOOTH_CHECKS = (
    "Check that a Bluetooth adapter is present and powered (`bluetoothctl show`; `bluetoothctl power "
    "on`), that the bluetooth service runs (`systemctl status bluetooth`), then that `collector devices` "
    "lists the headset."
)


def bluetooth_problem() -> str:
    """A reason Bluetooth cannot work here, or "" when it may (only checkable on Linux)."""
    if sys.platform.startswith("linux"):
        adapters = Path("/sys/class/bluetooth")
        if not adapters.is_dir() or not any(adapters.iterdir()):
            return "no Bluetooth adapter found (/sys/class/bluetooth is empty); plug one in or enable it"
    return ""


def list_muses(
    timeout_s: float = 20.0,
    *,
    backend: str = "auto",
    command: Sequence[str] | None = None,
    check_bluetooth: bool = True,
) -> MuseScan:
    """Muse headsets in range, from `muselsl list` in a child process; never hangs or raises."""
    if check_bluetooth:
        problem = bluetooth_problem()
        if problem:
            return MuseScan((), f"Bluetooth unavailable: {problem}")
    cmd = list(command) if command else [sys.executable, "-m", "muselsl", "list", "--backend", backend]
    try:
        done = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    except subprocess.TimeoutExpired:
        return MuseScan((), f"the Bluetooth scan did not finish within {timeout_s:g} s")
    except OSError as exc:
        return MuseScan((), f"cannot run muselsl ({exc})")
    muses = tuple(
        MuseInfo(name=m["name"].strip(), address=m["address"].upper())
        for m in _FOUND_RE.finditer(done.stdout)
    )
    if muses:
        return MuseScan(muses)
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        last = lines[-1].strip() if lines else f"exit code {done.returncode}"
        if any(k in last for k in BLUETOOTH_ERRORS):
            return MuseScan((), f"Bluetooth unavailable: the scan failed ({last[:150]})")
        return MuseScan((), f"the scan failed ({last[:150]})")
    return MuseScan((), "no Muse headset found; switch it on, and disconnect it from other apps")
