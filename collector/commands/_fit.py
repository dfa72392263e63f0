"""The headset fit check as the user sees it (`collector fit`, and `collector run --fit-check`): drawn
live in a terminal, or one line a second for logs. The grades come from collector/core/fit.py."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from collector.capture.logformat import format_line
from collector.core.fit import ChannelFit, FitResult, run_fit_check
from collector.profiles.profile import Profile

GRADE_STYLE = {"good": "bold green", "fair": "bold yellow", "bad": "bold red"}


def fit_line(elapsed_s: float, channels: dict[str, ChannelFit], streak: int, needed: int) -> str:
    """One line per second for logs: `fit 00:05 TP9 good, AF7 fair (line noise) · good for 2/3 s`."""
    minutes, seconds = divmod(int(elapsed_s), 60)
    cells = ", ".join(f"{ch} {f.label()}" for ch, f in channels.items())
    return f"fit {minutes:02d}:{seconds:02d} {cells} · good for {min(streak, needed)}/{needed} s"


def fit_table(elapsed_s: float, channels: dict[str, ChannelFit], streak: int, needed: int, timeout_s: float):
    """The terminal view: one column per channel, in the order the headset lists them (left to right)."""
    from rich.table import Table

    table = Table(
        title=f"Headset fit · {int(elapsed_s)} s of {timeout_s:g} · "
        f"good for {min(streak, needed)}/{needed} s",
        caption="Ctrl-C to stop",
        expand=False,
    )
    for ch in channels:
        table.add_column(ch, justify="center")
    table.add_row(*(f"[{GRADE_STYLE[f.grade]}]{f.grade}[/]" for f in channels.values()))
    table.add_row(*(f.reason or "" for f in channels.values()))
    table.add_row(*(f"{f.ptp_uv:.0f} µV p-p" if f.ptp_uv is not None else "" for f in channels.values()))
    return table


def check_fit(
    source,
    description,
    profile: Profile,
    *,
    timeout_s: float,
    require: str,
    log_format: str,
    out: TextIO | None = None,
) -> FitResult:
    """Run the fit check on an open source, drawing it live in a terminal or one line a second."""
    out = out or sys.stdout
    needed = 3
    interactive = out.isatty() and log_format == "text"
    if interactive:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=out)
        with Live(console=console, auto_refresh=False, transient=False) as live:

            def draw(elapsed, channels, streak):
                live.update(fit_table(elapsed, channels, streak, needed, timeout_s), refresh=True)

            return run_fit_check(
                source, description, settings=profile.analysis.band_settings(), timeout_s=timeout_s,
                needed_s=needed, require=require, on_tick=draw,
            )  # fmt: skip

    def line(elapsed, channels, streak):
        # The collector's one line layout (collector/capture/logformat.py): time, level, message, event=fit.
        fields: dict[str, Any] = {"event": "fit"}
        if log_format == "json":
            fields |= {
                "elapsed_s": round(elapsed, 1), "good_for_s": min(streak, needed),
                "channels": {c: {"grade": f.grade, "reason": f.reason or None} for c, f in channels.items()},
            }  # fmt: skip
        text = format_line(log_format, "info", fit_line(elapsed, channels, streak, needed), fields)
        print(text, file=out, flush=True)

    return run_fit_check(
        source, description, settings=profile.analysis.band_settings(), timeout_s=timeout_s,
        needed_s=needed, require=require, on_tick=line,
    )  # fmt: skip


def describe_failure(result: FitResult, require: str) -> str:
    bad = result.not_good(require)
    listing = ", ".join(f"{ch} {f.label()}" for ch, f in bad.items())
    return f"{listing}. To fix: {result.advice(require)}."
