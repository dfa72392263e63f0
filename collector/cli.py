"""`collector` entry point: builds the parser of the command being run and maps errors to exits.

Each command lives in `collector/commands/<name>.py` with `add_parser(subparsers)` and
`run(args) -> int`; collector/commands/__init__.py lists them with their one-line summaries. Only
the module of the command being run is imported (pip's way): `collector --help` lists every
command from that table alone, so it starts fast whatever the commands import.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from collector import __version__
from collector.api import redaction
from collector.capture.logformat import setup_logging
from collector.commands import COMMANDS
from collector.commands._outcome import ended_quietly_on_closed_stdout, run_reporting_errors
from collector.errors import EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, as for every other bad input
        self.exit(EXIT_USAGE, f"collector: {message} (see `{self.prog} --help`)\n")


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser of `collector`, with the full parser of each command in `commands` (all when None).

    Every other command gets a stand-in that only carries its name and summary: enough for
    `collector --help` and for the list of choices in a usage error, without importing its module.
    """
    parser = _Parser(
        prog="collector",
        description="Capture EEG and screen evidence and deliver it to an OpenLesson workspace.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    wanted = set(COMMANDS) if commands is None else set(commands) & set(COMMANDS)
    modules = {COMMANDS[name].module for name in wanted}
    for name, info in COMMANDS.items():  # in the table's order, which `collector --help` keeps
        if name in sub.choices:
            continue  # registered by its module with an earlier command (`pause` adds `resume`)
        if info.module in modules:
            importlib.import_module(info.module).add_parser(sub)
        else:
            sub.add_parser(name, help=info.summary)
    return parser


def _command_in(argv: list[str]) -> list[str]:
    """The command named in argv: its first word that is not an option. `collector` itself takes no
    option with a value, so that word is the command (or a bad one, which the parser reports)."""
    return [word for word in argv if not word.startswith("-")][:1]


def _quiet_liblsl() -> None:
    """liblsl prints INFO lines at start-up; use a quieter config unless the user has their own."""
    if os.environ.get("LSLAPICFG"):
        return
    own = (Path("lsl_api.cfg"), Path.home() / "lsl_api" / "lsl_api.cfg", Path("/etc/lsl_api/lsl_api.cfg"))
    if not any(p.is_file() for p in own):
        os.environ["LSLAPICFG"] = str(resources.files("collector.data") / "lsl_api.cfg")


# numpy's and scipy's OpenBLAS start a worker thread per core at import, and each busy-waits ~0.1 s
# of CPU after it starts and after each threaded call. The collector's arrays are small: one thread
# does the same work without it (0.08 s less CPU at every start, issue 23). Set any of these
# yourself to change it: then none is set here (OpenBLAS reads OMP_NUM_THREADS when its own is
# unset, so setting the others to 1 would override a user's OMP_NUM_THREADS).
_BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


def _one_blas_thread() -> None:
    """Before numpy is imported (no command module is yet): BLAS/OpenMP pools of one thread,
    unless the user set any of `_BLAS_THREADS`."""
    if any(name in os.environ for name in _BLAS_THREADS):
        return
    for name in _BLAS_THREADS:
        os.environ[name] = "1"


def _http_library_logs(verbosity: int) -> None:
    """httpx/httpcore debug lines (headers, bodies' sizes) only at -vv; keys masked at every level."""
    redaction.install()
    level = logging.DEBUG if verbosity >= 2 else logging.WARNING
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(level)


def main(argv: list[str] | None = None) -> int:
    return ended_quietly_on_closed_stdout(lambda: _main(argv))


def _main(argv: list[str] | None = None) -> int:
    _quiet_liblsl()
    _one_blas_thread()
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_in(words))
    args, extra = parser.parse_known_args(words)
    if extra:  # reported by the command's own parser, so the hint is `collector COMMAND --help`
        commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        own = commands[0].choices.get(getattr(args, "command", None) or "") if commands else None
        (own or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    # -v: the collector's own debug lines; -vv: also the HTTP library's (httpx, httpcore).
    setup_logging(int(getattr(args, "verbose", 0) or 0), getattr(args, "log_format", "text"))
    _http_library_logs(int(getattr(args, "verbose", 0) or 0))  # keys masked in every record
    return run_reporting_errors(lambda: args.func(args), getattr(args, "log_format", "text"))


if __name__ == "__main__":
    raise SystemExit(main())
