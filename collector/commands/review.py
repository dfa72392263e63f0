"""`collector review [CAPTURE_ID | --last] [--out FILE.html] [--spool DIR]`: one capture as a page."""

from __future__ import annotations

import argparse

from collector.commands import summary
from collector.commands._common import add_spool_option, add_verbose, spool_dir
from collector.commands._kept import add_capture_choice, open_capture, write_review_page


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "review",
        help=summary("review"),
        description="Write one self-contained HTML page for a capture: band powers over time with zoom, "
        "signal quality, markers, gaps and pauses, the screenshots on the same time axis, and averages "
        "per block of time. It opens offline and loads nothing from the network.",
    )
    add_capture_choice(parser)
    parser.add_argument(
        "--out", metavar="FILE.html", help="where to write (default: ./review-<capture>.html)"
    )
    add_spool_option(parser)
    add_verbose(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spool, session = open_capture(spool_dir(args), args.capture_id, args.last)
    print(write_review_page(spool, session, args.out))
    return 0
