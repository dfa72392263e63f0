"""`collector doctor`'s checks as records: one Check per line, the exit code they add up to, and
the text they print; slow checks run side by side, each bounded in time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from collector import __version__
from collector.errors import EXIT_AUTH, EXIT_FAILURE, EXIT_NO_SOURCE, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE

OK, WARN, FAIL = "ok", "warn", "fail"
# The first in this list wins when several checks fail: fix the configuration before the hardware.
SEVERITY = (EXIT_AUTH, EXIT_NOT_FOUND, EXIT_NO_SOURCE, EXIT_USAGE, EXIT_FAILURE)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""
    exit_code: int = EXIT_OK  # for a fail: the exit code it stands for

    @classmethod
    def failed(cls, name: str, detail: str, fix: str = "", exit_code: int = EXIT_FAILURE) -> Check:
        return cls(name, FAIL, detail, fix, exit_code)


def overall_exit_code(checks: list[Check]) -> int:
    failed = {c.exit_code or EXIT_FAILURE for c in checks if c.status == FAIL}
    for code in SEVERITY:
        if code in failed:
            return code
    return EXIT_FAILURE if failed else EXIT_OK


def render_text(checks: list[Check], exit_code: int) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"collector doctor (openlesson-collector {__version__})"]
    for c in checks:
        lines.append(f"{c.status:<4}  {c.name:<{width}}  {c.detail}")
        if c.fix and c.status != OK:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {c.fix}")
    counts = {s: sum(c.status == s for c in checks) for s in (OK, WARN, FAIL)}
    verdict = "ready" if exit_code == EXIT_OK else f"not ready (exit {exit_code})"
    lines.append(f"{counts[OK]} ok, {counts[WARN]} warnings, {counts[FAIL]} failed: {verdict}.")
    return "\n".join(lines)


def run_side_by_side(jobs: dict[str, Callable[[], list[Check]]], limit_s: float) -> dict[str, list[Check]]:
    """Run each job in a daemon thread; one that hangs (a dead X server, a black-holed network)
    becomes a failed check instead of holding the doctor or the interpreter's exit."""
    results: dict[str, list[Check]] = {}

    def runner(name: str, job: Callable[[], list[Check]]) -> None:
        try:
            results[name] = job()
        except Exception as exc:  # a bug in one check must not hide the others
            results[name] = [
                Check.failed(
                    name,
                    f"the check itself failed: {type(exc).__name__}: {exc}",
                    "Run again with --verbose and report it.",
                )
            ]

    threads = [
        threading.Thread(target=runner, args=item, daemon=True, name=f"doctor-{item[0]}")
        for item in jobs.items()
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + limit_s
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    for name in jobs:
        if name not in results:
            results[name] = [
                Check.failed(
                    name, f"no answer within {limit_s:g} s", "Something hangs here; run again with --verbose."
                )
            ]
    return results
