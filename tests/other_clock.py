"""LSL outlets on another machine's clock: a child process in its own Linux time namespace.

liblsl stamps samples with its `local_clock()`, which is CLOCK_MONOTONIC. A process started with
`unshare --time --monotonic S` sees that clock S seconds ahead, exactly as a sender on another
machine does (each machine's clock counts from its own boot): an inlet in the test process then
measures a `time_correction()` of about -S s for its outlets, over real LSL on loopback.

    prefix = time_namespace(300.0)       # the command prefix, or None where it cannot be made
    with OtherClockOutlet(prefix, "markers", name, count=5) as child:
        ...                              # child.lines: what the child printed (one line per push)

Run as a script it is the child: `python other_clock.py eeg NAME SFREQ SECONDS` pushes a 2-channel
EEG stream (channel 0 = sample index) in real time; `python other_clock.py markers NAME COUNT
INTERVAL` pushes COUNT string markers to `NAME-markers`, each valued with the Unix ms (wall
clock, not namespaced) at which it was stamped. Both print `ready` once their outlet exists,
wait for a consumer, push, then stay until their stdin closes.

Needs Linux 5.6+ and either root or unprivileged user namespaces (`unshare --user`); where neither
works, `time_namespace` returns None and the test skips saying so.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def time_namespace(offset_s: float) -> tuple[str, ...] | None:
    """The command prefix that runs a process with CLOCK_MONOTONIC `offset_s` ahead, or None."""
    offset = str(int(offset_s))
    probe = [sys.executable, "-c", "import time; print(time.monotonic())"]
    for prefix in (
        ("unshare", "--time", "--monotonic", offset, "--boottime", offset),
        ("unshare", "--user", "--map-root-user", "--time", "--monotonic", offset, "--boottime", offset),
    ):
        try:
            here = time.monotonic()
            proc = subprocess.run([*prefix, *probe], capture_output=True, text=True, timeout=20)
            if proc.returncode == 0 and abs(float(proc.stdout) - here - offset_s) < 10.0:
                return prefix
        except (OSError, ValueError, subprocess.TimeoutExpired):
            continue
    return None


class OtherClockOutlet:
    """The child (see the module docstring) under `prefix`; `lines` collects what it prints."""

    def __init__(self, prefix: tuple[str, ...], kind: str, name: str, *args: object) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self._stderr = tempfile.TemporaryFile(mode="w+")  # a pipe nobody reads could fill up
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, str(Path(__file__).resolve()), kind, name, *map(str, args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env,
        )  # fmt: skip
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(20.0):
            said = self.stderr[-2000:]
            self.close()
            raise RuntimeError(f"the {kind} outlet on another clock did not start: {said}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip() == "ready":
                self._ready.set()
            else:
                self.lines.append(line.strip())

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(10.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    @property
    def stderr(self) -> str:
        """What the child wrote to stderr so far."""
        self._stderr.seek(0)
        return self._stderr.read()

    def __enter__(self) -> OtherClockOutlet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _child(kind: str, name: str, *args: str) -> None:
    import numpy as np
    import pylsl

    from collector.devices.player import make_eeg_info, make_marker_info

    if kind == "eeg":
        sfreq, seconds = float(args[0]), float(args[1])
        outlet = pylsl.StreamOutlet(make_eeg_info(name, name, ["A", "B"], sfreq))
    else:
        count, interval = int(args[0]), float(args[1])
        outlet = pylsl.StreamOutlet(make_marker_info(f"{name}-markers", f"{name}-markers"))
    print("ready", flush=True)
    outlet.wait_for_consumers(30.0)
    time.sleep(0.3)  # the inlet's stream opens after it is connected
    if kind == "eeg":
        n, i, t0 = int(sfreq * seconds), 0, pylsl.local_clock()
        while i < n:
            due = min(n, int((pylsl.local_clock() - t0) * sfreq) + 1)
            if due > i:
                k = np.arange(i, due, dtype=np.float64)
                outlet.push_chunk(np.column_stack([k, -k]).astype(np.float32), (t0 + k / sfreq).tolist())
                i = due
            time.sleep(0.01)
    else:
        for _ in range(count):
            stamp, wall_ms = pylsl.local_clock(), time.time() * 1000.0
            outlet.push_sample([f"{wall_ms:.3f}"], stamp)
            print(f"{stamp:.6f} {wall_ms:.3f}", flush=True)
            time.sleep(interval)
    sys.stdin.read()  # stay until the test is done with the stream


if __name__ == "__main__":
    _child(*sys.argv[1:])
