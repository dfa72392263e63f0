"""`collector` entry point: builds the parser from the command modules and maps errors to exits.

Each command lives in `collector/commands/<name>.py` with `add_parser(subparsers)` and
`run(args) -> int`. Command modules import heavy packages (numpy, pylsl, muselsl) inside `run`,
so that `collector --help` and `collector blocks` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from collector import __version__
from collector.api import redaction
from collector.errors import EXIT_FAILURE, EXIT_USAGE, CollectorError

# Order is the order `collector --help` lists them in.
COMMAND_MODULES = (
    "fit",
    "run",
    "replay",
    "demo",
    "upload",
    "status",
    "sessions",
    "review",
    "export",
    "pause",
    "mark",
    "blocks",
    "workspace",
    "report",
    "devices",
    "doctor",
    "sandbox",
)

log = logging.getLogger("collector")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, as for every other bad input
        self.exit(EXIT_USAGE, f"collector: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="collector",
        description="Capture EEG and screen evidence and deliver it to an OpenLesson workspace.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"collector.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"collector.commands.{name}":
                raise
            continue  # not built yet
        module.add_parser(sub)
    return parser


def _quiet_liblsl() -> None:
    """liblsl prints INFO lines at start-up; use a quieter config unless the user has their own."""
    import os
    from importlib import resources
    from pathlib import Path

    if os.environ.get("LSLAPICFG"):
        return
    own = (Path("lsl_api.cfg"), Path.home() / "lsl_api" / "lsl_api.cfg", Path("/etc/lsl_api/lsl_api.cfg"))
    if not any(p.is_file() for p in own):
        os.environ["LSLAPICFG"] = str(resources.files("collector.data") / "lsl_api.cfg")


def _http_library_logs(verbosity: int) -> None:
    """httpx/httpcore debug lines (headers, bodies' sizes) only at -vv; keys masked at every level."""
    redaction.install()
    level = logging.DEBUG if verbosity >= 2 else logging.WARNING
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(level)


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what `seq 1 1000000 | head -1` gives for seq


def _stdout_closed() -> int:
    """The reader of our output went away (e.g. `collector sessions | head -1`): stop quietly, as
    tools killed by SIGPIPE do. stdout is pointed at /dev/null so the interpreter's own flush at
    exit does not fail again (Python's documented recipe for SIGPIPE)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout has no file descriptor (embedded use): nothing to flush
        pass
    return EXIT_BROKEN_PIPE


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: the last lines may be what meets the closed pipe
        return code
    except BrokenPipeError:
        return _stdout_closed()


def _main(argv: list[str] | None = None) -> int:
    _quiet_liblsl()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from collector.capture.logformat import setup_logging

    # -v: the collector's own debug lines; -vv: also the HTTP library's (httpx, httpcore).
    setup_logging(int(getattr(args, "verbose", 0) or 0), getattr(args, "log_format", "text"))
    _http_library_logs(int(getattr(args, "verbose", 0) or 0))  # keys masked in every record
    try:
        return int(args.func(args) or 0)
    except CollectorError as err:
        if getattr(args, "log_format", "text") == "json":  # lab logs stay machine-readable
            from collector.capture.logformat import format_json

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
        return 130
    except BrokenPipeError:
        raise  # main() ends quietly
    except Exception as exc:  # unexpected: one line plus where to look, never the key
        log.debug("unexpected failure", exc_info=True)
        print(
            f"collector: unexpected failure: {type(exc).__name__}: {redaction.redact(str(exc))}. "
            "Run again with --verbose for details and report it.",
            file=sys.stderr,
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
