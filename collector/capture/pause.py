"""Privacy pause for screen capture; EEG is never paused.

One small state file in a per-user runtime folder says whether screen capture is paused:
`collector pause` / `collector resume` write it from any terminal, and the running capture
(`collector run`) reads it before every screenshot. The running capture also writes a pid file
so pause/resume can signal it (SIGUSR1 pauses, SIGUSR2 resumes) and it logs the change at once;
a user can send those signals directly too (`kill -USR1 <pid>`).

The state file is JSON: {"paused": bool, "since_ms": int, "until_ms": int | null}, Unix ms of
the start of the current (or last) pause and of its end. Unreadable state counts as paused:
privacy fails closed, and `collector resume` rewrites it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from collector.errors import CollectorError

APP_NAME = "openlesson-collector"
STATE_FILE = "screen-pause.json"
PID_FILE = "collector-run.pid"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PauseState:
    paused: bool
    since_ms: int | None = None  # start of the current pause, or of the last one
    until_ms: int | None = None  # end of the last pause; None while paused


def default_state_dir() -> Path:
    """$XDG_RUNTIME_DIR/openlesson-collector on Linux, the platform's runtime folder elsewhere."""
    from platformdirs import user_runtime_path

    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR platformdirs warns and falls back to /tmp/runtime-<uid>;
        # _ensure_private_dir() then checks that folder is ours.
        warnings.simplefilter("ignore")
        return user_runtime_path(APP_NAME, appauthor=False)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _process_start_ticks(pid: int) -> str | None:
    """Start time of a process (Linux /proc), to tell our collector from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) counts from after the ")" that closes the command name.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


class PauseControl:
    """Reads and writes the pause state; cheap enough to ask before every screenshot (one stat + read)."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.state_path = self.state_dir / STATE_FILE
        self.pid_path = self.state_dir / PID_FILE
        self._lock = threading.RLock()  # a signal handler may run while the main thread holds it

    # ---- state ---------------------------------------------------------------------------------

    def state(self) -> PauseState:
        try:
            raw = self.state_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return PauseState(False)
        except OSError as exc:
            log.warning("cannot read %s (%s): screen capture stays paused", self.state_path, exc)
            return PauseState(True)
        try:
            data = json.loads(raw)
            since = data.get("since_ms")
            until = data.get("until_ms")
            return PauseState(
                bool(data["paused"]),
                int(since) if since is not None else None,
                int(until) if until is not None else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("%s is not valid pause state: screen capture stays paused", self.state_path)
            return PauseState(True)

    def is_paused(self) -> bool:
        return self.state().paused

    def pause(self) -> PauseState:
        """Pause screen capture (idempotent: an ongoing pause keeps its start time)."""
        with self._lock:
            current = self.state()
            if current.paused and current.since_ms is not None:
                return current
            new = PauseState(True, _now_ms(), None)
            self._write(new)
            return new

    def resume(self) -> PauseState:
        """End the pause; the state keeps its start and end so the capture can record it."""
        with self._lock:
            current = self.state()
            if not current.paused:
                return current
            now = _now_ms()
            new = PauseState(False, current.since_ms if current.since_ms is not None else now, now)
            self._write(new)
            return new

    def _write(self, state: PauseState) -> None:
        payload = json.dumps({"paused": state.paused, "since_ms": state.since_ms, "until_ms": state.until_ms})
        self._write_private(self.state_path, payload)

    # ---- the running capture -------------------------------------------------------------------

    def register_running(self, pid: int | None = None, *, handle_signals: bool = True) -> None:
        """Called by `collector run` (main thread): lets pause/resume find and signal this process.

        Installs the SIGUSR1/SIGUSR2 handlers first; the pid file says whether they are in place,
        because an unhandled SIGUSR1 would end the capture instead of pausing it.
        """
        handled = False
        if pid is None:
            pid = os.getpid()
            if handle_signals and threading.current_thread() is threading.main_thread():
                handled = self.install_signal_handlers()
        start = _process_start_ticks(pid) or "-"
        self._write_private(self.pid_path, f"{pid} {start} {int(handled)}\n")

    def unregister_running(self) -> None:
        if self.running_pid() == os.getpid():
            try:
                self.pid_path.unlink()
            except FileNotFoundError:
                pass

    def running_pid(self) -> int | None:
        """The pid of a running `collector run`, or None (no pid file, stale, or a reused pid)."""
        return self._running()[0]

    def _running(self) -> tuple[int | None, bool]:
        """(pid of the running capture or None, whether it handles SIGUSR1/SIGUSR2)."""
        try:
            parts = self.pid_path.read_text(encoding="utf-8").split()
            pid = int(parts[0])
        except (OSError, ValueError, IndexError):
            return None, False
        handles_signals = len(parts) > 2 and parts[2] == "1"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None, False
        except PermissionError:  # alive but not ours: never signal it
            return None, False
        recorded = parts[1] if len(parts) > 1 else "-"
        actual = _process_start_ticks(pid)
        if recorded != "-" and actual is not None and recorded != actual:
            return None, False  # the collector died and its pid was reused by another program
        return pid, handles_signals

    def notify_running(self, paused: bool) -> int | None:
        """Signal the running capture so it logs the change now; returns its pid, or None."""
        sig = getattr(signal, "SIGUSR1" if paused else "SIGUSR2", None)
        pid, handles_signals = self._running()
        if sig is None or pid is None or not handles_signals:
            return None
        try:
            os.kill(pid, sig)
        except OSError:
            return None
        return pid

    def install_signal_handlers(self) -> bool:
        """SIGUSR1 pauses, SIGUSR2 resumes. Main thread only; False where the signals don't exist."""
        if not hasattr(signal, "SIGUSR1"):
            return False

        def on_pause(signum: int, frame: object) -> None:
            self.pause()
            log.info("screen capture paused on request (EEG continues)")

        def on_resume(signum: int, frame: object) -> None:
            self.resume()
            log.info("screen capture resumed on request")

        signal.signal(signal.SIGUSR1, on_pause)
        signal.signal(signal.SIGUSR2, on_resume)
        return True

    # ---- files ---------------------------------------------------------------------------------

    def _ensure_private_dir(self) -> None:
        try:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = self.state_dir.stat()
        except OSError as exc:
            raise CollectorError(
                f"Cannot create the pause state folder {self.state_dir} ({exc.strerror or exc}). "
                "Check its permissions or set XDG_RUNTIME_DIR."
            ) from exc
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise CollectorError(
                f"The pause state folder {self.state_dir} belongs to another user. "
                "Set XDG_RUNTIME_DIR to a folder of your own."
            )

    def _write_private(self, path: Path, text: str) -> None:
        """Atomic 0600 write, so a reader never sees half a file."""
        self._ensure_private_dir()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except OSError as exc:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise CollectorError(
                f"Cannot write {path} ({exc.strerror or exc}). Check the folder's permissions."
            ) from exc


def pause_notice(control: PauseControl | None = None, now_ms: int | None = None) -> str | None:
    """One line for a person when screen capture is paused, else None.

    For `collector run` (at start), `status`, `doctor` and `sessions`: a pause left on silently
    removes screenshots from every later session, so each of them says so, with since when and
    how to end it.
    """
    state = (control or PauseControl()).state()
    if not state.paused:
        return None
    return f"Screen capture is paused {_since(state.since_ms, now_ms)}; `collector resume` turns it back on."


def paused_since(control: PauseControl | None = None) -> str | None:
    """'paused since 14:02 (35 s ago)' while screen capture is paused, else None (the live view's word)."""
    state = (control or PauseControl()).state()
    return f"paused {_since(state.since_ms)}" if state.paused else None


def pause_fields(control: PauseControl | None = None) -> dict:
    """The pause as JSON fields: {"paused": bool, "since_ms": int | None, "since": ISO-8601 | None}."""
    state = (control or PauseControl()).state()
    since = state.since_ms if state.paused else None
    iso = None
    if since is not None:
        from datetime import datetime

        iso = datetime.fromtimestamp(since / 1000).astimezone().isoformat(timespec="seconds")
    return {"paused": state.paused, "since_ms": since, "since": iso}


def _since(since_ms: int | None, now_ms: int | None = None) -> str:
    """'since 14:02 (35 min ago)', 'since 2026-11-28 14:02 (2 days ago)'; local time."""
    if since_ms is None:
        return "(since an unknown time: the pause state file was unreadable)"
    now_ms = _now_ms() if now_ms is None else now_ms
    age_s = max(0.0, (now_ms - since_ms) / 1000)
    same_day = time.localtime(since_ms / 1000)[:3] == time.localtime(now_ms / 1000)[:3]
    clock = time.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M", time.localtime(since_ms / 1000))
    if age_s < 90:
        ago = f"{age_s:.0f} s ago"
    elif age_s < 5400:
        ago = f"{age_s / 60:.0f} min ago"
    elif age_s < 172800:
        ago = f"{age_s / 3600:.0f} h ago"
    else:
        ago = f"{age_s / 86400:.0f} days ago"
    return f"since {clock} ({ago})"
