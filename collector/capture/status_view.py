"""What a learner glances at during a session, and what a lab log gets once a minute.

In a terminal the block is drawn with rich's `Live` (log lines scroll above it; band powers and
the replay's file position are rich progress bars); headless, the same figures go out as one log
line per minute in the collector's line layout (collector/capture/logformat.py), text or JSON.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

from collector.capture.logformat import EVENT_LEVELS, format_line, record_event, record_message
from collector.capture.marks import MAX_TEXT
from collector.capture.pipeline import CaptureStats

if TYPE_CHECKING:  # rich is imported where the view is drawn: a log-only run never loads it
    from rich.console import Console
    from rich.live import Live
    from rich.progress import Progress, TaskID

BAND_ORDER = ("delta", "theta", "alpha", "beta", "gamma")
QUALITY_STYLE = {"good": "green", "gap": "red", "flat": "red", "railed": "red"}


def snapshot(stats: CaptureStats, delivery: dict[str, Any]) -> dict[str, Any]:
    """Plain figures, shared by the terminal view and the log lines."""
    s = stats.stream
    rate = stats.measured_rate_hz
    # The uploader's current request rate (adaptive, see uploader.counters()) when it gives one.
    per_min = delivery.get("rate_per_min") or delivery.get("limit_per_min")
    screen, skipped = stats.screen_now() if stats.screen_now else (stats.screen_state, stats.screens_skipped)
    return {
        "elapsed_s": round(stats.elapsed_s, 1),
        "stream": s.name if s else None,
        "nominal_hz": s.sfreq if s else None,
        "measured_hz": round(rate, 1) if rate is not None else None,
        "source_state": stats.source_state or None,
        "samples": stats.samples,
        "quality": dict(stats.channel_quality),
        "band_powers": {k: round(v, 3) for k, v in stats.band_powers.items()},
        "screens_sent": stats.screens_sent,
        "screens_skipped": skipped,
        "screen": screen,
        "eeg_chunks_spooled": stats.eeg_chunks_spooled,
        "marks": stats.marks,
        "dropped": stats.eeg_chunks_dropped + stats.screens_dropped,
        "delivered": delivery.get("delivered", 0),
        "pending": delivery.get("pending", 0),
        "delivery": delivery.get("paused_reason") or ("offline" if delivery.get("offline") else "ok"),
        "rate_per_min": round(delivery["rate_per_min"], 1) if delivery.get("rate_per_min") else None,
        # Delivery is bounded by the API's rate limit: at N requests/min, `pending` items take this long.
        "deliver_eta_s": round(60.0 * delivery["pending"] / per_min)
        if delivery.get("pending") and per_min
        else None,
        "last_error": stats.last_error or delivery.get("last_error") or None,
    }


def status_message(snap: dict[str, Any]) -> str:
    """The once-a-minute headless line's message (its figures follow as fields)."""
    minutes, seconds = divmod(int(snap["elapsed_s"]), 60)
    eeg = f"{snap['samples']:,} EEG samples, " if snap.get("stream") else ""
    return (
        f"{minutes:02d}:{seconds:02d} capturing: {eeg}{snap['screens_sent']} screenshots; "
        f"{snap['delivered']} delivered, {snap['pending']} pending"
    )


def render_terminal(
    snap: dict[str, Any], file_progress=None, prompt: str | None = None, mark_key: bool = False
):
    """The live block as a rich renderable (a Group of lines, bars and the replay's file progress)."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    minutes, seconds = divmod(int(snap["elapsed_s"]), 60)
    rate = f"{snap['measured_hz']:.1f}" if snap["measured_hz"] is not None else "—"
    nominal = f"{snap['nominal_hz']:g}" if snap["nominal_hz"] else "—"
    keys = " · m to mark" if mark_key else ""
    parts: list = [Text(f"collector · {minutes:02d}:{seconds:02d}{keys} · Ctrl-C to stop", style="bold")]
    if snap["stream"]:
        state = f"  ({snap['source_state']})" if snap["source_state"] else ""
        parts.append(Text(f"EEG     {snap['stream']}  {rate} Hz measured / {nominal} Hz nominal{state}"))
        if snap["quality"]:
            line = Text("signal  ")
            for i, (ch, q) in enumerate(snap["quality"].items()):
                line.append(("  " if i else "") + f"{ch} ")
                line.append(q, style=QUALITY_STYLE.get(q, "yellow"))
            parts.append(line)
        bands = Table.grid(padding=(0, 1))
        for band in BAND_ORDER:
            if band in snap["band_powers"]:
                v = snap["band_powers"][band]
                bands.add_row(f"  {band:<6}", ProgressBar(total=1.0, completed=v, width=20), f"{v:5.1%}")
        if bands.row_count:
            parts.append(bands)
    else:
        parts.append(Text("EEG     off"))
    if snap.get("read_pct") is not None:  # replay: how far through the file
        if file_progress is not None:
            parts.append(file_progress)
        else:
            eta = f", {snap['read_eta_s']:.0f} s left" if snap.get("read_eta_s") is not None else ""
            parts.append(Text(f"file    {snap['read_pct']:5.1f}% read{eta}"))
    else:
        parts.append(
            Text(f"screen  {snap['screen']}: {snap['screens_sent']} sent, {snap['screens_skipped']} skipped")
        )
    delivery = (
        f"chunks  {snap['eeg_chunks_spooled'] + snap['screens_sent']} spooled, "
        f"{snap['delivered']} delivered, {snap['pending']} pending, delivery {snap['delivery']}"
        + (f" at {snap['rate_per_min']:g}/min" if snap.get("rate_per_min") else "")
        + (f", ~{snap['deliver_eta_s']} s to deliver" if snap.get("deliver_eta_s") else "")
    )
    line = Text(delivery)
    if snap["dropped"]:
        line.append(f", {snap['dropped']} DROPPED", style="bold red")
    parts.append(line)
    if prompt is not None:
        line = Text("mark    ", style="bold")
        line.append(prompt + "▏")
        if len(prompt) >= MAX_TEXT:  # the same limit as `collector mark`, said rather than cut silently
            line.append(f"   at most {MAX_TEXT} characters: Enter saves these", style="bold yellow")
        else:
            line.append("   Enter saves, Esc cancels", style="dim")
        parts.append(line)
    elif snap.get("marks"):
        parts.append(Text(f"marks   {snap['marks']}"))
    if snap["last_error"]:
        parts.append(Text(f"last error: {snap['last_error']}", style="red"))
    return Group(*parts)


class StatusOutput:
    """Draws the live block in a terminal (rich `Live`); otherwise one log line per minute.

    Every line written during a session goes through here (log records too, see `LogToStatus`),
    so messages scroll above the live block instead of tearing it.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        log_format: str = "text",
        interactive: bool | None = None,
        log_every_s: float = 60.0,
    ) -> None:
        self.stream = stream or sys.stderr
        try:
            tty = self.stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        self.interactive = tty if interactive is None else interactive
        self.log_format = log_format
        self.log_every_s = log_every_s
        self._last_log = time.monotonic()
        self._lock = threading.RLock()  # a signal handler (pause/resume) may log while we write
        self._console: Console | None = None
        self._live: Live | None = None
        self._file_progress: Progress | None = None
        self._file_task: TaskID | None = None
        self._keys: KeyReader | None = None
        self._prompt: str | None = None  # the `m` prompt's text while it is open
        self._prompt_ms = 0.0
        self._last_snap: dict[str, Any] | None = None
        if self.interactive:
            from rich.console import Console

            # force_terminal: the caller decided this is a terminal (isatty, or a test's choice).
            # No soft wrap: rich wraps every line itself (log lines too), so it always knows how
            # many rows it printed and redraws the block in place (soft-wrapped lines left ghosts).
            self._console = Console(file=self.stream, highlight=False, force_terminal=True)

    # ---- the live block ------------------------------------------------------------------------

    def update_due(self) -> bool:
        """Whether `update` shows anything now: a terminal view always, a log line every `log_every_s`
        (so a capture without a terminal builds no snapshot, no spool query, between its lines)."""
        return self.interactive or time.monotonic() - self._last_log >= self.log_every_s

    def update(self, snap: dict[str, Any], *, force: bool = False) -> None:
        if self.interactive:
            with self._lock:
                self._draw(snap)
        elif force or self.update_due():
            self._last_log = time.monotonic()
            self.log("status", message=status_message(snap), **snap)

    def _draw(self, snap: dict[str, Any]) -> None:
        from rich.live import Live

        self._last_snap = snap
        if snap.get("read_pct") is not None:
            self._update_file_progress(snap["read_pct"])
        renderable = render_terminal(
            snap, self._file_progress, prompt=self._prompt, mark_key=self._keys is not None
        )
        if self._live is None:
            self._live = Live(
                renderable,
                console=self._console,
                auto_refresh=False,
                transient=False,
                redirect_stdout=False,  # every line goes through this console already
                redirect_stderr=False,
            )
            try:
                self._live.start()
            except (OSError, ValueError):
                self._live = None
                return
        self._live.update(renderable, refresh=True)

    def _update_file_progress(self, pct: float) -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

        if self._file_progress is None:
            self._file_progress = Progress(
                TextColumn("file   "),
                BarColumn(bar_width=30),
                TaskProgressColumn(),
                TextColumn("read,"),
                TimeRemainingColumn(),
                TextColumn("left"),
                console=self._console,
                auto_refresh=False,
            )
            self._file_task = self._file_progress.add_task("file", total=100.0)
        assert self._file_task is not None  # added with the progress bar
        self._file_progress.update(self._file_task, completed=pct)

    def end_view(self) -> None:
        """Leave the last block on screen; later lines go below it."""
        self.stop_keys()
        with self._lock:
            if self._live is not None:
                try:
                    self._live.stop()
                except (OSError, ValueError):
                    pass
                self._live = None

    # ---- the `m` key: a mark with a short prompt ---------------------------------------------------

    def enable_mark_key(self, on_mark, stdin: TextIO | None = None) -> bool:
        """In a terminal, pressing `m` asks for a short text and calls `on_mark(text, pressed_ms)`."""
        stdin = stdin or sys.stdin
        try:
            if not (self.interactive and stdin.isatty()):
                return False
        except (AttributeError, ValueError):
            return False
        self._keys = KeyReader(stdin, lambda key: self._on_key(key, on_mark))
        return self._keys.start()

    def _on_key(self, key: str, on_mark) -> None:
        """`m` opens a one-line prompt inside the live block; typed keys fill it, Enter saves, Esc
        cancels. The terminal stays in cbreak mode and the block keeps its place (no line editor)."""
        with self._lock:
            if self._prompt is None:
                if key in ("m", "M"):
                    self._prompt, self._prompt_ms = "", time.time() * 1000.0  # the moment, not the typing
                else:
                    return
            elif key in ("\r", "\n"):
                text, pressed_ms = self._prompt.strip(), self._prompt_ms
                self._prompt = None
                if text:
                    on_mark(text, pressed_ms)  # the capture logs it when it joins the EEG timeline
            elif key == "\x1b":
                self._prompt = None
            elif key in ("\x7f", "\x08"):
                self._prompt = self._prompt[:-1]
            elif typed_character(key) and len(self._prompt) < MAX_TEXT:
                self._prompt += key
            if self._last_snap is not None:
                self._draw(self._last_snap)

    def stop_keys(self) -> None:
        keys = self._keys
        if keys is not None:
            keys.stop()
            self._keys = None

    # ---- lines ---------------------------------------------------------------------------------

    def print_line(self, text: str) -> None:
        """A plain line (the end-of-session summary) above or after the live block."""
        with self._lock:
            try:
                if self._console is not None:
                    self._console.print(text, markup=False, highlight=False)
                else:
                    self.stream.write(text + "\n")
                    self.stream.flush()
            except (OSError, ValueError):  # stderr closed (a dead pipe, a stopped journal): capture goes on
                pass

    def log(self, event: str, **fields: Any) -> None:
        """One line in the collector's layout: time, level, message, then `event=` and the fields."""
        level = str(fields.pop("level", None) or EVENT_LEVELS.get(event, "info"))
        message = fields.pop("message", None) or event.replace("_", " ")
        fields = {"event": event, **fields}  # every line names its event, text or JSON
        if self.interactive and self.log_format != "json" and event == "status":
            fields = {}  # the live block shows the figures
        self.print_line(format_line(self.log_format, level, message, fields))


class LogToStatus(logging.Handler):
    """Sends log records through a StatusOutput (same layout; JSON lines with --log-format json)."""

    def __init__(self, output: StatusOutput, level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self.output = output

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"level": record.levelname.lower(), "message": record_message(record)}
            if self.output.log_format == "json" or record.levelno < logging.INFO:
                fields["logger"] = record.name
            self.output.log(record_event(record), **fields)
        except Exception:  # a log line must never break a capture
            self.handleError(record)


def typed_character(key: str) -> bool:
    """True for a character that belongs in a mark's text: anything but a control character, so
    accented letters, CJK and every code point of an emoji (joiners, variation selectors and skin
    tones included) are kept exactly as typed."""
    import unicodedata

    return len(key) == 1 and unicodedata.category(key) != "Cc"


class KeyReader:
    """Keys from a terminal (cbreak mode: no Enter needed, Ctrl-C still interrupts), one character
    at a time: the bytes are decoded as UTF-8 incrementally (`codecs.getincrementaldecoder`), so
    a character that arrives in several bytes (é, an emoji) is one key, never replacement marks."""

    def __init__(self, stdin: TextIO, on_key) -> None:
        self.stdin = stdin
        self.on_key = on_key
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved: list[Any] | None = None  # the terminal's attributes, restored by stop()

    def start(self) -> bool:
        try:
            import termios
            import tty

            fd = self.stdin.fileno()
            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
        except (ImportError, OSError, ValueError, AttributeError):  # not a POSIX terminal: no keys
            return False
        self._thread = threading.Thread(target=self._loop, name="keys", daemon=True)
        self._thread.start()
        return True

    def _loop(self) -> None:
        import codecs
        import os
        import select

        fd = self.stdin.fileno()
        # A multi-byte character may be split across reads: the decoder keeps its first bytes.
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.2)
                if not ready:
                    continue
                data = os.read(fd, 256)
            except (OSError, ValueError):
                return
            if not data:
                return  # end of input
            for key in decoder.decode(data):
                try:
                    self.on_key(key)
                except Exception:  # a failed prompt must not end the capture
                    logging.getLogger(__name__).warning("the key %r could not be handled", key, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(1.0)
        if self._saved is not None:
            try:
                import termios

                termios.tcsetattr(self.stdin.fileno(), termios.TCSADRAIN, self._saved)
            except (OSError, ValueError):
                pass
