"""The live status view and the log lines (pure rendering, no devices)."""

from __future__ import annotations

import io
import json

from collector.capture import CaptureStats
from collector.status_view import StatusOutput, render_terminal, snapshot
from devices.base import StreamDescription


def _stats() -> CaptureStats:
    stats = CaptureStats()
    stats.stream = StreamDescription(
        name="Muse", type="EEG", source_id="m", sfreq=256.0, channels=("TP9", "AF7")
    )
    stats.note_samples(256)
    stats.band_powers = {"delta": 0.2, "theta": 0.1, "alpha": 0.4, "beta": 0.2, "gamma": 0.1}
    stats.channel_quality = {"TP9": "good", "AF7": "flat"}
    stats.eeg_chunks_spooled = 3
    return stats


def test_terminal_view_shows_what_a_learner_glances_at():
    snap = snapshot(_stats(), {"delivered": 2, "pending": 30, "limit_per_min": 100.0})
    text = "\n".join(render_terminal(snap))
    assert "Muse" in text and "256 Hz nominal" in text
    assert "TP9 good" in text and "AF7 flat" in text
    assert "alpha" in text and "40.0%" in text
    assert "2 delivered, 30 pending" in text and "~18 s to deliver" in text


def test_replay_progress_line():
    snap = snapshot(_stats(), {"delivered": 0, "pending": 0})
    snap.update(read_pct=42.0, read_eta_s=7.0)
    text = "\n".join(render_terminal(snap))
    assert "42.0% read" in text and "7 s left" in text


def test_headless_logs_json_lines_once_per_interval():
    out = io.StringIO()
    view = StatusOutput(out, log_format="json", interactive=False, log_every_s=3600)
    snap = snapshot(_stats(), {"delivered": 1, "pending": 0})
    view.update(snap)  # within the interval: nothing
    view.update(snap, force=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "status" and record["delivered"] == 1 and record["stream"] == "Muse"


def test_log_records_keep_the_chosen_format_and_redraw_below():
    import logging

    from collector.status_view import LogToStatus

    out = io.StringIO()
    view = StatusOutput(out, log_format="json", interactive=False)
    logger = logging.getLogger("test.status.view")
    logger.addHandler(LogToStatus(view))
    logger.propagate = False
    try:
        logger.warning("stream lost, waiting")
    finally:
        logger.handlers.clear()
    record = json.loads(out.getvalue())
    assert record == {**record, "event": "log", "level": "warning", "message": "stream lost, waiting"}

    tty = io.StringIO()
    live = StatusOutput(tty, interactive=True)
    live.update(snapshot(_stats(), {"delivered": 0, "pending": 0}))
    drawn = len(tty.getvalue().splitlines())
    live.log("log", level="warning", message="stream lost, waiting")
    tail = tty.getvalue().split("\x1b[J", 1)[1]  # after clearing the block: message, then the block again
    assert tail.startswith("warning: stream lost, waiting\n") and len(tail.splitlines()) == drawn + 1
