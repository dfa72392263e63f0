"""Subcommands of `collector`: one module per command, each with add_parser(subparsers) and run(args).

COMMANDS lists them in the order `collector --help` shows them, each with its module and its one-line
summary, so that `collector --help` imports no command module and `collector NAME` imports NAME's
module only (pip's layout). Plumbing that several commands share lives in the private modules
(`_common`, `_capture`, `_kept`, ...): a command never imports another command.
"""

from __future__ import annotations

from typing import NamedTuple


class CommandInfo(NamedTuple):
    module: str  # the module whose add_parser() registers the command
    summary: str  # its line in `collector --help`


COMMANDS: dict[str, CommandInfo] = {
    "fit": CommandInfo(
        "collector.commands.fit", "check the headset's fit: contact quality per channel, before recording"
    ),
    "run": CommandInfo("collector.commands.run", "capture EEG and screenshots into a workspace block"),
    "replay": CommandInfo(
        "collector.commands.replay",
        "replay a recording (XDF, muselsl/Mind Monitor CSV, EDF/BDF) into a workspace block (or to LSL)",
    ),
    # ~40 s: demo.DEMO_DURATION_S plus ~10 s of start-up, delivery, report (test_docs_agree.py).
    "demo": CommandInfo(
        "collector.commands.demo", "try it end to end: local sandbox + bundled Muse recording (~40 s)"
    ),
    "upload": CommandInfo("collector.commands.upload", "deliver the evidence waiting in the spool"),
    "status": CommandInfo("collector.commands.status", "show what waits in the spool, per capture"),
    "spool": CommandInfo(
        "collector.commands.spool", "drop a capture's pending items, or retarget them to another block"
    ),
    "sessions": CommandInfo(
        "collector.commands.sessions", "list the captures kept on this machine (newest last)"
    ),
    "review": CommandInfo(
        "collector.commands.review", "write a capture's review page (one offline HTML file)"
    ),
    "export": CommandInfo(
        "collector.commands.export", "write a capture's EEG as CSV (muselsl layout) or EDF+"
    ),
    "pause": CommandInfo("collector.commands.pause", "pause screen capture (EEG continues)"),
    "resume": CommandInfo("collector.commands.pause", "resume screen capture after `collector pause`"),
    "mark": CommandInfo(
        "collector.commands.mark", "mark this moment in the running capture (e.g. 'distracted')"
    ),
    "blocks": CommandInfo("collector.commands.blocks", "list the blocks of a workspace"),
    "workspace": CommandInfo("collector.commands.workspace", "create a workspace"),
    "report": CommandInfo("collector.commands.report", "performance analysis of a workspace"),
    "devices": CommandInfo(
        "collector.commands.devices",
        "list Muse headsets, visible LSL streams and the recording formats `replay` reads",
    ),
    "doctor": CommandInfo(
        "collector.commands.doctor",
        "check this machine: packages, liblsl, streams, Bluetooth, display, spool, API key",
    ),
    "sandbox": CommandInfo("collector.commands.sandbox", "run a local OpenLesson API for trying and testing"),
}


def summary(name: str) -> str:
    """The one-line help of command `name`, as `collector --help` lists it."""
    return COMMANDS[name].summary
