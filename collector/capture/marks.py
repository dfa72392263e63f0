"""The learner's own markers ("I got distracted here") on the running capture's EEG timeline.

`collector mark TEXT` (another terminal, a script, a key binding) appends one JSON line
{"time_ms": Unix ms, "value": TEXT} to `marks-<pid>.jsonl` in the pause state folder (the
folder where `collector run` leaves its pid file, see collector/capture/pause.py); the running capture
reads new lines between two reads of its EEG source and hands them to the chunker as events,
so they are delivered in the chunk that covers them like any LSL marker. Pressing `m` in the
terminal view adds one in-process through the same inbox.

The time is the moment the command ran: the mark process's start (Linux: its start time in
/proc, 10 ms resolution, taken before Python even loads), not the moment it got round to
writing the line some 100-300 ms later.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from collector.core.records import MARK_SOURCE, Event

log = logging.getLogger(__name__)
MAX_TEXT = 500  # characters of one mark; a marker is a note, not a document


def marks_path(state_dir: Path, pid: int) -> Path:
    return Path(state_dir) / f"marks-{pid}.jsonl"


def process_start_ms(pid: int | None = None) -> float | None:
    """Unix ms at which process `pid` (default: this one) started, from /proc; None elsewhere."""
    pid = os.getpid() if pid is None else pid
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat[stat.rfind(")") + 2 :].split()[19])  # field 22: start time after boot
        hz = os.sysconf("SC_CLK_TCK")
        since_boot_s = time.clock_gettime(time.CLOCK_BOOTTIME)
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return (time.time() - (since_boot_s - ticks / hz)) * 1000.0


def clean_text(text: str) -> str:
    return " ".join(text.split())[:MAX_TEXT]


def send_mark(state_dir: Path, pid: int, text: str, time_ms: float) -> None:
    """Append one mark for the capture `pid` (O_APPEND: concurrent marks never interleave)."""
    line = json.dumps({"time_ms": round(time_ms, 3), "value": clean_text(text)}) + "\n"
    # No O_CREAT: the capture creates its inbox once it records EEG (MarkInbox.accept).
    fd = os.open(marks_path(state_dir, pid), os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


class MarkInbox:
    """Marks for one running capture: from its file (other processes) and from `add` (this one)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._offset = 0
        self._partial = b""
        self._local: list[Event] = []
        self._lock = threading.Lock()
        self.received = 0
        if self.path is not None:
            try:  # a new capture starts with an empty inbox, whatever a dead one left
                self.path.unlink()
            except FileNotFoundError:
                pass

    def accept(self) -> None:
        """Create the (empty) inbox file: `collector mark` only writes to a capture that has one,
        i.e. one that records EEG."""
        if self.path is not None:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)

    def add(self, text: str, time_ms: float | None = None) -> Event:
        moment = time.time() * 1000.0 if time_ms is None else time_ms
        event = Event(time_ms=moment, value=clean_text(text), source=MARK_SOURCE)
        with self._lock:
            self._local.append(event)
        return event

    def take(self) -> list[Event]:
        """Marks that arrived since the last call, oldest first."""
        with self._lock:
            events, self._local = self._local, []
        events.extend(self._read_file())
        self.received += len(events)
        return sorted(events, key=lambda e: e.time_ms)

    def _read_file(self) -> list[Event]:
        if self.path is None:
            return []
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("cannot read marks from %s: %s", self.path, exc)
            return []
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()  # a line still being written
        out = []
        for raw in lines:
            try:
                item = json.loads(raw)
                value = clean_text(str(item["value"]))
                out.append(Event(time_ms=float(item["time_ms"]), value=value, source=MARK_SOURCE))
            except (ValueError, KeyError, TypeError):
                log.warning("ignored a malformed mark line in %s", self.path)
        return out

    def close(self) -> None:
        if self.path is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
