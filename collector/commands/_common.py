"""Options and helpers that several commands share: API access, the spool's location, ids."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from collector.api.ids import is_uuid
from collector.api.settings import ENV_SPOOL_DIR, ApiSettings, resolve_api_key, resolve_base_url
from collector.errors import UsageError


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds above 0 (`--duration`, `--timeout`); a bad one is
    a one-line usage error naming the option (exit 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds above 0")
    return value


def tcp_port(text: str) -> int:
    """argparse type: a TCP port, 0 (any free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port: use 0-65535 (0 picks a free one)")
    return value


def add_api_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("API")
    group.add_argument(
        "--base-url", help="API origin (default: $OPENLESSON_BASE_URL or https://openlesson.academy)"
    )
    group.add_argument(
        "--api-key-file", metavar="PATH", help="read the API key from PATH instead of $OPENLESSON_API_KEY"
    )
    group.add_argument(
        "--timeout",
        type=positive_seconds,
        default=30.0,
        help="seconds a whole request may take: connect, send, wait and read (default 30)",
    )
    add_verbose(parser)


def add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="-v: the collector's debug lines; -vv: also the HTTP library's (API keys are masked in both)",
    )


def api_settings(args: argparse.Namespace) -> ApiSettings:
    return ApiSettings(
        base_url=resolve_base_url(args.base_url),
        api_key=resolve_api_key(args.api_key_file),
        timeout_s=args.timeout,
    )


def add_spool_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spool",
        metavar="DIR",
        help=f"spool folder (default: ${ENV_SPOOL_DIR} or the user data folder)",
    )


def spool_dir(args: argparse.Namespace) -> Path:
    """--spool, else $COLLECTOR_SPOOL_DIR, else the platform's user data folder. UsageError (exit 2)
    when the path given is a file (every command that takes --spool refuses it the same way)."""
    chosen = getattr(args, "spool", None) or os.environ.get(ENV_SPOOL_DIR)
    if chosen:
        return spool_folder(Path(chosen).expanduser())
    from platformdirs import user_data_path

    return user_data_path("openlesson-collector", appauthor=False) / "spool"


def require_uuid(value: str, what: str) -> str:
    """Malformed ids fail before any request is sent (exit 2)."""
    if not is_uuid(value):
        raise UsageError(
            f"{what} {value!r} is not a valid id (expected a UUID like 3f2b…-…). Check the value."
        )
    return value.lower()


def spool_folder(root: Path) -> Path:
    """root, the --spool folder; UsageError (exit 2) when the path is a file, e.g. the spool.db itself."""
    if root.exists() and not root.is_dir():
        hint = f"its folder: --spool {root.parent}" if root.name.startswith("spool.db") else "the folder"
        raise UsageError(f"{root} is a file, not a spool folder. Pass {hint}.")
    return root
