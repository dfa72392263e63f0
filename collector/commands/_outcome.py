"""How a command ends for the user: its exit code, and a failure as one line on stderr.

Used by `collector` itself (collector/cli.py) around the command it runs, and by `collector demo`
around the capture it runs inside its own process.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from collector.api import redaction
from collector.capture.logformat import format_json
from collector.errors import EXIT_FAILURE, CollectorError

log = logging.getLogger("collector")

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what `seq 1 1000000 | head -1` gives for seq
EXIT_INTERRUPTED = 130  # 128 + SIGINT


def run_reporting_errors(call: Callable[[], int | None], log_format: str = "text") -> int:
    """call()'s exit code; a CollectorError, Ctrl-C or a bug becomes one line on stderr and its exit
    code (never the API key: every line is masked). BrokenPipeError goes on to the caller."""
    try:
        return int(call() or 0)
    except CollectorError as err:
        if log_format == "json":  # lab logs stay machine-readable
            print(
                format_json(
                    "error", redaction.redact(str(err)), {"event": "error", "exit_code": err.exit_code}
                ),
                file=sys.stderr,
            )
        else:
            print(f"collector: {redaction.redact(str(err))}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("collector: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise  # the caller ends quietly: stdout_closed()
    except Exception as exc:  # unexpected: one line plus where to look, never the key
        log.debug("unexpected failure", exc_info=True)
        print(
            f"collector: unexpected failure: {type(exc).__name__}: {redaction.redact(str(exc))}. "
            "Run again with --verbose for details and report it.",
            file=sys.stderr,
        )
        return EXIT_FAILURE


def ended_quietly_on_closed_stdout(call: Callable[[], int]) -> int:
    """call()'s exit code, stdout flushed; when the reader of our output went away, EXIT_BROKEN_PIPE."""
    try:
        code = call()
        sys.stdout.flush()  # inside the try: the last lines may be what meets the closed pipe
        return code
    except BrokenPipeError:
        return stdout_closed()


def stdout_closed() -> int:
    """The reader of our output went away (e.g. `collector sessions | head -1`): stop quietly, as
    tools killed by SIGPIPE do. stdout is pointed at /dev/null so the interpreter's own flush at
    exit does not fail again (Python's documented recipe for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout has no file descriptor (embedded use): nothing to flush
        pass
    return EXIT_BROKEN_PIPE
