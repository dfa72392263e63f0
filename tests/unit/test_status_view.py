"""The live status view (rich) and the log lines' layout (pure rendering, no devices)."""

from __future__ import annotations

import io
import json
import logging
import re
import time

from rich.console import Console

from collector.capture.logformat import LineFormatter, format_text
from collector.capture.pipeline import CaptureStats
from collector.capture.status_view import LogToStatus, StatusOutput, render_terminal, snapshot
from collector.core.records import StreamDescription

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d (DEBUG|INFO|WARNING|ERROR)\s+\S")


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


def text_of(renderable) -> str:
    console = Console(record=True, width=100, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_terminal_view_shows_what_a_learner_glances_at():
    snap = snapshot(_stats(), {"delivered": 2, "pending": 30, "limit_per_min": 100.0})
    text = text_of(render_terminal(snap))
    assert "Muse" in text and "256 Hz nominal" in text
    assert "TP9 good" in text and "AF7 flat" in text
    assert "alpha" in text and "40.0%" in text
    assert "2 delivered, 30 pending" in text and "~18 s to deliver" in text
    assert "/min" not in text  # no adaptive rate reported: none shown


def test_view_shows_the_uploaders_current_rate_when_it_gives_one():
    snap = snapshot(_stats(), {"delivered": 2, "pending": 30, "limit_per_min": 100.0, "rate_per_min": 60.0})
    text = text_of(render_terminal(snap))
    assert "delivery ok at 60/min" in text and "~30 s to deliver" in text


def test_replay_progress_is_a_rich_progress_bar():
    out = io.StringIO()
    view = StatusOutput(out, interactive=True)
    snap = snapshot(_stats(), {"delivered": 0, "pending": 0})
    snap.update(read_pct=42.0, read_eta_s=7.0)
    view.update(snap)
    view.end_view()
    assert view._file_progress is not None  # noqa: SLF001 - the bar is rich's Progress
    assert "42%" in out.getvalue() and "read" in out.getvalue()


def test_a_snapshot_is_due_always_on_a_terminal_and_once_per_interval_in_a_log():
    assert StatusOutput(io.StringIO(), interactive=True).update_due()
    view = StatusOutput(io.StringIO(), log_format="json", interactive=False, log_every_s=0.2)
    view.update(snapshot(_stats(), {"delivered": 1, "pending": 0}), force=True)
    assert not view.update_due()  # a line was just written: building the next one can wait
    time.sleep(0.25)
    assert view.update_due()


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
    assert record["level"] == "info" and record["message"].startswith("00:00 capturing: 256 EEG samples")
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$", record["time"])


def test_text_lines_have_one_layout_time_level_message_fields():
    out = io.StringIO()
    view = StatusOutput(out, interactive=False, log_every_s=0)
    view.update(snapshot(_stats(), {"delivered": 1, "pending": 0}))
    view.log("capture_started", capture_id="c-1", stream="Muse One", message="capturing EEG")
    view.log("flushing", pending=3)  # no message given: the event is said in words, never empty
    lines = out.getvalue().splitlines()
    assert all(LINE.match(line) for line in lines), lines
    assert " INFO    00:00 capturing: 256 EEG samples" in lines[0] and " event=status " in lines[0]
    assert lines[1].endswith('INFO    capturing EEG event=capture_started capture_id=c-1 stream="Muse One"')
    assert lines[2].endswith("INFO    flushing event=flushing pending=3")
    assert format_text("warning", "x", {"event": "warning"}).split()[1:] == ["WARNING", "x", "event=warning"]


def test_log_records_keep_the_chosen_format_and_scroll_above_the_block():
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
    live.log("log", level="warning", message="stream lost, waiting")
    live.update(snapshot(_stats(), {"delivered": 5, "pending": 0}))
    live.end_view()
    screen = tty.getvalue()
    assert "\x1b[" in screen  # drawn in place by rich's Live
    message_at = screen.index("stream lost, waiting")
    assert screen.rindex("5 delivered") > message_at  # the block is drawn again below the message


def test_formatter_for_plain_commands():
    record = logging.LogRecord("collector.core.fit", logging.DEBUG, __file__, 1, "window %d", (3,), None)
    line = LineFormatter("text").format(record)
    assert LINE.match(line) and line.endswith("DEBUG   window 3 event=log logger=collector.core.fit")
    as_json = json.loads(LineFormatter("json").format(record))
    assert as_json["message"] == "window 3" and as_json["level"] == "debug" and as_json["event"] == "log"
    record.event = "marked"  # log.info(..., extra={"event": "marked"}) names what happened
    assert (
        LineFormatter("text")
        .format(record)
        .endswith("DEBUG   window 3 event=marked logger=collector.core.fit")
    )
    assert json.loads(LineFormatter("json").format(record))["event"] == "marked"


def test_the_m_prompt_has_the_same_limit_as_collector_mark_and_says_so():
    """issue 20 #3: the prompt cut marks at 200 characters without a word; `collector mark` allows
    500 (collector/capture/marks.py MAX_TEXT). One limit, shown in the prompt once reached."""
    from collector.capture.marks import MAX_TEXT

    view = StatusOutput(io.StringIO(), interactive=True)
    marks: list[str] = []
    view._on_key("m", lambda text, ms: marks.append(text))  # noqa: SLF001 - the key handler itself
    for ch in "é" * (MAX_TEXT + 20):
        view._on_key(ch, None)  # noqa: SLF001
    snap = snapshot(_stats(), {"delivered": 0, "pending": 0})
    text = text_of(render_terminal(snap, prompt=view._prompt))  # noqa: SLF001
    assert f"at most {MAX_TEXT} characters" in text
    view._on_key("\r", lambda text, ms: marks.append(text))  # noqa: SLF001
    assert marks == ["é" * MAX_TEXT]
    short = text_of(render_terminal(snap, prompt="é" * 200))
    assert "at most" not in short and "Enter saves, Esc cancels" in short
