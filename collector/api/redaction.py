"""Keeps API keys out of every log line, whatever logger wrote it and at whatever verbosity.

Each `ApiKey` registers its value here when it is created. `install()` (called once by the CLI)
wraps the logging record factory, so every record (ours, httpx's, httpcore's, uvicorn's) has its
message rendered and masked before any handler sees it: no handler, formatter or JSON log can
print a key, even one a server echoed back in a header or a body. `redact()` is the same mask
for strings about to be stored (spool error texts, evidence ids).
"""

from __future__ import annotations

import logging
import re
import threading

_BEARER_RE = re.compile(r"(Bearer\s+)[^\s'\"\\,;)\]]+", re.IGNORECASE)
_lock = threading.Lock()
_secrets: dict[str, str] = {}  # secret -> what is shown instead (its prefix)
_installed = False


def register(secret: str, shown_as: str) -> None:
    """Mask `secret` as `shown_as` from now on (in log records and `redact()`)."""
    if len(secret) >= 6:  # a tiny "key" would mask ordinary words
        with _lock:
            _secrets[secret] = shown_as


def redact(text: str) -> str:
    """`text` with every registered key replaced by its prefix and any bearer token masked."""
    if not text:
        return text
    for secret, shown_as in list(_secrets.items()):
        if secret in text:
            text = text.replace(secret, shown_as)
    return _BEARER_RE.sub(r"\1…", text) if "earer" in text else text


def install() -> None:
    """Mask keys in every log record from here on (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    make_record = logging.getLogRecordFactory()

    def redacting_factory(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return record
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:  # a traceback may quote a header
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(redacting_factory)
