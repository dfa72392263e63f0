"""One layout for every log line the collector writes.

Text (terminals, journald, files):

    2026-11-30T07:55:01.123+00:00 INFO    capturing EEG from 'Muse' event=capture_started capture_id=…

time with its UTC offset, level, the message, then `key=value` fields (the event name is one of
them, `event=…`; values with spaces are quoted). JSON (`--log-format json`, lab machines): one
object per line with `ts` (Unix s), `time`, `level`, `message`, `event` and the fields.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any

LEVELS = ("debug", "info", "warning", "error", "critical")
# Events that carry a level of their own (the rest are info).
EVENT_LEVELS = {
    "warning": "warning",
    "delivery_busy": "warning",
    "screen_unavailable": "warning",
    "screen_paused": "warning",
    "fit_not_good": "warning",
    "error": "error",
    "pending": "warning",
    "paused": "error",
    "data_lost": "error",
    "failed": "error",  # a chunk rejected for good: it will not reach the server
    "worker_error": "error",
    "api_unreachable": "warning",  # the API stopped answering: capture goes on into the spool
    "parked": "error",
    "target_wrong": "error",
}


def iso_time(ts: float | None = None) -> str:
    """Local time with its UTC offset, to the millisecond: 2026-11-30T08:55:01.123+01:00."""
    return (
        datetime.fromtimestamp(time.time() if ts is None else ts)
        .astimezone()
        .isoformat(timespec="milliseconds")
    )


def _value(v: Any) -> str:
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str, separators=(",", ":"), ensure_ascii=False)
    text = str(v)
    if not text or any(c.isspace() for c in text) or '"' in text or "=" in text:
        return json.dumps(text, ensure_ascii=False)
    return text


def format_text(
    level: str, message: str, fields: dict[str, Any] | None = None, ts: float | None = None
) -> str:
    parts = [iso_time(ts), f"{level.upper():<7}", message]
    parts += [f"{k}={_value(v)}" for k, v in (fields or {}).items() if v not in (None, "", {}, [])]
    return " ".join(parts)


def format_json(
    level: str, message: str, fields: dict[str, Any] | None = None, ts: float | None = None
) -> str:
    ts = time.time() if ts is None else ts
    record = {"ts": round(ts, 3), "time": iso_time(ts), "level": level, "message": message}
    record.update(fields or {})
    return json.dumps(record, default=str, ensure_ascii=False)


def format_line(
    log_format: str, level: str, message: str, fields: dict[str, Any] | None = None, ts: float | None = None
) -> str:
    return (format_json if log_format == "json" else format_text)(level, message, fields, ts)


def record_event(record: logging.LogRecord) -> str:
    """The event a log record reports: `log.info(..., extra={"event": "marked"})`, else "log"."""
    return str(getattr(record, "event", None) or "log")


def record_message(record: logging.LogRecord) -> str:
    """The record's message; an exception is named on the same line, never as a traceback."""
    message = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        message += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
    return message or record.name


class LineFormatter(logging.Formatter):
    """logging.Formatter for the layout above (`log_format` "text" or "json")."""

    def __init__(self, log_format: str = "text") -> None:
        super().__init__()
        self.log_format = log_format

    def format(self, record: logging.LogRecord) -> str:
        fields = {"logger": record.name} if self.log_format == "json" or record.levelno < logging.INFO else {}
        fields = {"event": record_event(record), **fields}  # every line names its event, text or JSON
        return format_line(
            self.log_format, record.levelname.lower(), record_message(record), fields, record.created
        )


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the moment (a test harness may swap and close it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        import sys

        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property decides
        pass


def setup_logging(
    verbosity: int = 0, log_format: str = "text", handler: logging.Handler | None = None
) -> None:
    """Root logging for a command. 0: info; 1 (-v): the collector's own debug lines; 2 (-vv): also
    the HTTP and other libraries' debug lines (httpx, httpcore, uvicorn …)."""
    if handler is None:
        handler = StderrHandler()
        handler.setFormatter(LineFormatter(log_format))
    handler._collector_handler = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    # Replace our own handler of an earlier command in this process (the demo runs `run`);
    # leave others alone (a test harness's capture handlers).
    root.handlers = [h for h in root.handlers if not getattr(h, "_collector_handler", False)] + [handler]
    handler.setLevel(logging.DEBUG)
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
    own = logging.DEBUG if verbosity >= 1 else logging.INFO
    for name in ("collector", "devices", "profiles"):
        logging.getLogger(name).setLevel(own)
    libraries = logging.DEBUG if verbosity >= 2 else logging.WARNING
    for name in ("httpx", "httpcore", "hpack", "asyncio", "uvicorn", "PIL", "bleak", "muselsl"):
        logging.getLogger(name).setLevel(libraries)
