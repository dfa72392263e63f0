"""`collector sandbox`: a local OpenLesson API for trying the collector without an account.

Prints the base URL, a ready workspace with its blocks, a key and the `export` lines to use them,
then serves until Ctrl-C. Fault options default to the COLLECTOR_SANDBOX_* environment variables.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from collector.commands import summary
from collector.commands._common import add_verbose, tcp_port
from collector.errors import UsageError
from collector.sandbox import SandboxServer, faults_from_env


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sandbox",
        help=summary("sandbox"),
        description="Run a local OpenLesson API v2 sandbox (contract routes plus a sandbox-only "
        "GET .../workspaces/{id}/evidence listing). Data and keys persist under --data.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=tcp_port, default=8765, help="port (default 8765; 0 picks a free one)")
    parser.add_argument(
        "--data", metavar="DIR", help="data folder (default: the user data folder's sandbox/)"
    )
    parser.add_argument(
        "--rate-limit", type=int, default=120, metavar="N", help="requests per minute per key"
    )
    parser.add_argument(
        "--rate-window",
        type=float,
        default=60.0,
        metavar="S",
        help="sliding window of the limit, seconds (default 60; shorter keeps the per-minute ratio)",
    )
    parser.add_argument(
        "--no-retry-after",
        dest="rate_retry_after",
        action="store_false",
        help="answer the rate limit's 429 without Retry-After (as the API reference promises none)",
    )
    faults = parser.add_argument_group("fault injection (share of requests, 0..1)")
    faults.add_argument("--fail-503", type=float, metavar="SHARE", help="env COLLECTOR_SANDBOX_FAIL_503")
    faults.add_argument("--fail-429", type=float, metavar="SHARE", help="env COLLECTOR_SANDBOX_FAIL_429")
    faults.add_argument(
        "--lose-reply",
        type=float,
        metavar="SHARE",
        help="reply dropped after storing; env COLLECTOR_SANDBOX_LOSE_REPLY",
    )
    faults.add_argument(
        "--latency-ms", type=float, metavar="MS", help="added per request; env COLLECTOR_SANDBOX_LATENCY_MS"
    )
    faults.add_argument("--seed", type=int, help="seed of the fault draws; env COLLECTOR_SANDBOX_SEED")
    faults.add_argument(
        "--reject-chunk",
        type=int,
        metavar="N",
        help="answer validation_error to evidence with chunk_index N; env COLLECTOR_SANDBOX_REJECT_CHUNK",
    )
    add_verbose(parser)
    parser.set_defaults(func=run)


def _data_dir(args: argparse.Namespace) -> Path:
    if args.data:
        return Path(args.data).expanduser()
    from platformdirs import user_data_path

    return user_data_path("openlesson-collector", appauthor=False) / "sandbox"


def run(args: argparse.Namespace) -> int:
    try:
        options = faults_from_env()
        for name in ("fail_503", "fail_429", "lose_reply", "latency_ms", "seed", "reject_chunk"):
            if getattr(args, name) is not None:
                options[name] = getattr(args, name)
        server = SandboxServer(
            _data_dir(args),
            args.host,
            args.port,
            rate_limit_per_min=args.rate_limit,
            rate_window_s=args.rate_window,
            rate_retry_after=args.rate_retry_after,
            access_log=True,
            **options,
        )
    except ValueError as exc:
        raise UsageError(f"Bad sandbox setting: {exc}.") from None
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        raise UsageError(f"Cannot listen on {args.host}:{args.port} ({exc}). Pick another --port.") from None

    # Ctrl-C and SIGTERM both stop cleanly, even when started in the background with SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        print(banner(server), flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        print("collector sandbox: stopped.", file=sys.stderr)
    finally:
        server.stop()
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def banner(server) -> str:
    blocks = "\n".join(
        f"  {b['id']}  {b['title']}{'  (start)' if b['is_start'] else ''}" for b in server.blocks()
    )
    faults = {k: v for k, v in server.fault_settings().items() if v or (k == "reject_chunk" and v == 0)}
    return (
        f"OpenLesson API sandbox at {server.base_url}  (data: {server.data_dir})\n"
        f"Workspace {server.workspace_id} with blocks:\n{blocks}\n"
        f"Faults: {faults or 'none'}\n\n"
        "Use it from another shell:\n"
        f"  export OPENLESSON_BASE_URL={server.base_url}\n"
        f"  export OPENLESSON_API_KEY={server.api_key}\n"
        f"  collector blocks --workspace {server.workspace_id}\n\n"
        f"Other test keys are in {server.data_dir / 'keys.txt'}. Press Ctrl-C to stop."
    )
