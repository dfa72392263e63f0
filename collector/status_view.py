"""What a learner glances at during a session, and what a lab log gets once a minute."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any, TextIO

from collector.capture import CaptureStats

BAND_ORDER = ("delta", "theta", "alpha", "beta", "gamma")


def snapshot(stats: CaptureStats, delivery: dict[str, Any]) -> dict[str, Any]:
    """Plain figures, shared by the terminal view and the log lines."""
    s = stats.stream
    rate = stats.measured_rate_hz
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
        "screens_skipped": stats.screens_skipped,
        "screen": stats.screen_state,
        "eeg_chunks_spooled": stats.eeg_chunks_spooled,
        "dropped": stats.eeg_chunks_dropped + stats.screens_dropped,
        "delivered": delivery.get("delivered", 0),
        "pending": delivery.get("pending", 0),
        "delivery": delivery.get("paused_reason") or ("offline" if delivery.get("offline") else "ok"),
        # Delivery is bounded by the API's rate limit: at N requests/min, `pending` items take this long.
        "deliver_eta_s": round(60.0 * delivery["pending"] / delivery["limit_per_min"])
        if delivery.get("pending") and delivery.get("limit_per_min")
        else None,
        "last_error": stats.last_error or delivery.get("last_error") or None,
    }


def _bar(value: float, width: int = 20) -> str:
    filled = max(0, min(width, round(value * width)))
    return "█" * filled + "·" * (width - filled)


def render_terminal(snap: dict[str, Any]) -> list[str]:
    minutes, seconds = divmod(int(snap["elapsed_s"]), 60)
    rate = f"{snap['measured_hz']:.1f}" if snap["measured_hz"] is not None else "—"
    nominal = f"{snap['nominal_hz']:g}" if snap["nominal_hz"] else "—"
    lines = [f"collector · {minutes:02d}:{seconds:02d} · Ctrl-C to stop"]
    if snap["stream"]:
        state = f"  ({snap['source_state']})" if snap["source_state"] else ""
        lines.append(f"EEG     {snap['stream']}  {rate} Hz measured / {nominal} Hz nominal{state}")
        if snap["quality"]:
            lines.append("signal  " + "  ".join(f"{ch} {q}" for ch, q in snap["quality"].items()))
        for band in BAND_ORDER:
            if band in snap["band_powers"]:
                v = snap["band_powers"][band]
                lines.append(f"  {band:<6} {_bar(v)} {v:5.1%}")
    else:
        lines.append("EEG     off")
    if snap.get("read_pct") is not None:  # replay: how far through the file
        eta = f", {snap['read_eta_s']:.0f} s left" if snap.get("read_eta_s") is not None else ""
        lines.append(f"file    {_bar(snap['read_pct'] / 100, 30)} {snap['read_pct']:5.1f}% read{eta}")
    else:
        lines.append(
            f"screen  {snap['screen']}: {snap['screens_sent']} sent, {snap['screens_skipped']} skipped"
        )
    lines.append(
        f"chunks  {snap['eeg_chunks_spooled'] + snap['screens_sent']} spooled, "
        f"{snap['delivered']} delivered, "
        f"{snap['pending']} pending, delivery {snap['delivery']}"
        + (f", {snap['dropped']} DROPPED" if snap["dropped"] else "")
        + (f", ~{snap['deliver_eta_s']} s to deliver" if snap.get("deliver_eta_s") else "")
    )
    if snap["last_error"]:
        lines.append(f"last error: {snap['last_error']}")
    return lines


class StatusOutput:
    """Redraws a small block in a terminal every second; otherwise one log line per minute.

    Every line written during a session goes through here (log records too, see
    `LogToStatus`), so messages scroll above the live block instead of tearing it.
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
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.log_format = log_format
        self.log_every_s = log_every_s
        self._drawn = 0
        self._block: list[str] = []
        self._last_log = time.monotonic()
        # Re-entrant: a signal handler (pause/resume) may log while this thread is writing.
        self._lock = threading.RLock()

    def _write(self, text: str) -> None:
        """Clear the live block, write `text`, draw the block again below it."""
        with self._lock:
            clear = "\x1b[F" * self._drawn + "\x1b[J" if self._drawn else ""
            block = "".join(line + "\n" for line in self._block)
            try:
                self.stream.write(clear + text + block)
                self.stream.flush()
            except (OSError, ValueError):  # stderr closed (a dead pipe, a stopped journal): capture goes on
                return
            self._drawn = len(self._block)

    def update(self, snap: dict[str, Any], *, force: bool = False) -> None:
        if self.interactive:
            self._block = render_terminal(snap)
            self._write("")
        elif force or time.monotonic() - self._last_log >= self.log_every_s:
            self._last_log = time.monotonic()
            self.log("status", **snap)

    def end_view(self) -> None:
        """Leave the last block on screen; later lines go below it."""
        with self._lock:
            self._block, self._drawn = [], 0

    def log(self, event: str, **fields: Any) -> None:
        """A line for logs: JSON with `--log-format json`, `key=value` text otherwise."""
        if self.log_format == "json":
            line = json.dumps({"ts": round(time.time(), 3), "event": event, **fields}, default=str)
        elif event == "log":  # a log record: its level and message
            level, message = fields.get("level", "info"), fields.get("message", "")
            if self.interactive:
                line = message if level in ("info", "debug") else f"{level}: {message}"
            else:
                line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {level} {message}"
        elif self.interactive and "message" in fields:
            line = f"{event}: {fields['message']}"
        else:
            parts = [f"{k}={v}" for k, v in fields.items() if v not in (None, {}, "")]
            line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {event} " + " ".join(parts)
        self._write(line + "\n")


class LogToStatus(logging.Handler):
    """Sends log records through a StatusOutput (JSON lines with --log-format json)."""

    def __init__(self, output: StatusOutput, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.output = output

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:  # say why, in one line
                message += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            fields = {"level": record.levelname.lower(), "message": message}
            if self.output.log_format == "json":
                fields["logger"] = record.name
            self.output.log("log", **fields)
        except Exception:  # a log line must never break a capture
            self.handleError(record)
