"""Drives one capture from start to summary: signals, uploader, status view, graceful stop.

Shared by `collector run`, `collector replay` and `collector demo`, so all three stop, flush and
report the same way.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from collector.capture.pipeline import Capture
from collector.capture.status_view import StatusOutput, snapshot
from collector.delivery.spool import DeliveryBusyError, Loss
from collector.errors import EXIT_AUTH, EXIT_DATA_LOST, EXIT_NOT_FOUND, EXIT_OK, EXIT_PENDING, CollectorError

log = logging.getLogger("collector.capture.session")


@dataclass
class SessionResult:
    exit_code: int
    pending: int
    summary: dict[str, Any]


class _Signals:
    """First Ctrl-C/SIGTERM: stop capturing and flush. Second Ctrl-C: stop at once (spool kept)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.now = threading.Event()
        self.wake = threading.Event()  # set by a signal too: the session loop waits on it
        self._old: dict[int, Any] = {}

    def _handle(self, signum, _frame) -> None:
        if self.stop.is_set():
            self.now.set()
        self.stop.set()
        self.wake.set()

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            # SIGHUP: the terminal was closed; still flush rather than die with a chunk in memory.
            for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", signal.SIGTERM)):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _note_delivery(output: StatusOutput, counters: dict[str, Any], *, first: bool) -> None:
    """One line on a replay's remaining delivery: items left, current rate, time left at that rate."""
    pending, rate = counters.get("pending") or 0, counters.get("rate_per_min") or 0.0
    # A 429 hold (Retry-After) or a retry's backoff comes first, then the rest at the current rate.
    eta_s = round((counters.get("hold_s") or 0.0) + 60.0 * pending / rate) if rate else None
    lead = "the recording is read; delivering" if first else "delivering"
    left = f", about {eta_s} s left" if eta_s is not None else ""
    output.log(
        "delivering",
        pending=pending,
        delivered=counters.get("delivered"),
        rate_per_min=rate,
        eta_s=eta_s,
        message=f"{lead} {pending} item(s) at {rate:.0f} requests/min{left} "
        "(Ctrl-C stops now; the rest stays in the spool for `collector upload`)",
    )


def run_session(
    capture: Capture,
    *,
    uploader=None,
    description=None,
    duration_s: float | None = None,
    flush_timeout_s: float = 30.0,
    output: StatusOutput,
    progress=None,
    stop_event: threading.Event | None = None,
    recording_s=None,
    offline: bool = False,
    deliver_all: bool = False,
    local: bool = False,
) -> SessionResult:
    """Run until --duration, a signal, the end of a file, or `stop_event`; then flush and summarise.

    `progress()` (replay) returns extra fields for the status line; `uploader` is None offline.
    `recording_s()` (replay) is the recording time replayed: the summary then gives it and the
    wall time separately (`recording_s`, `wall_s`) instead of one `duration_s`.
    `deliver_all` (replay without --flush-timeout): once the source has ended, keep delivering
    until nothing is pending (progress and time left at the current rate); a signal then stops
    at once, leaving the rest in the spool.
    Exit code, first that applies: the capture's own fatal error; 3/4 when delivery was refused
    (key, workspace) with items left; 7 when chunks of this capture were lost (refused by the
    spool, rejected for good), named in the closing line; 6 when items wait in the spool (not with
    `offline`: spooling everything is what `--offline` asked for); else 0. A capture whose
    deferred target check proved the target wrong exits with that error's code (4, 3 or 2).
    `local` (`--local`): nothing is pending; the closing line says where the capture is kept.
    """

    def delivery() -> dict[str, Any]:
        if uploader is None:
            return {"offline": True, "pending": capture.spool.pending_count()}
        return uploader.counters()

    with _Signals() as signals:
        capture.wake_on_end(signals.wake)  # a replay's end is seen at once, not up to 0.5 s later
        if uploader is not None:
            try:
                uploader.start()
            except DeliveryBusyError as err:
                # Capture anyway: the other process picks up new items; the rest waits in the spool.
                output.log(
                    "delivery_busy",
                    message=f"{err} This capture is spooled; it is not delivered by this run.",
                )
                uploader = None
        capture.start(description)
        stream = description.name if description else None
        screen_state = capture.screen_status()[0]  # "paused since …" when the privacy pause is on
        output.log(
            "capture_started",
            capture_id=capture.capture_id,
            stream=stream,
            screen=screen_state,
            message=f"capturing {'EEG from ' + repr(stream) if stream else 'no EEG'}, screen "
            f"{screen_state} (capture {capture.capture_id}); Ctrl-C to stop",
        )
        deadline = time.monotonic() + duration_s if duration_s else None
        delivering = False  # deliver_all: the source has ended, the loop now waits for delivery
        next_note = 0.0
        try:
            while True:
                if signals.stop.is_set() or (stop_event is not None and stop_event.is_set()):
                    output.log("stopping", reason="signal", message="stopping the capture; nothing is lost")
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if capture.finished or capture.fatal is not None:
                    if not (deliver_all and capture.fatal is None and uploader is not None):
                        break
                    if uploader.idle():
                        break
                    if time.monotonic() >= next_note:  # a line every 15 s: where delivery stands
                        next_note = time.monotonic() + 15.0
                        c = uploader.counters()
                        _note_delivery(output, c, first=not delivering)
                    delivering = True
                if output.update_due():
                    snap = snapshot(capture.stats, delivery())
                    if progress is not None:
                        snap.update(progress())
                    output.update(snap)
                wait_s = 1.0 if output.interactive else 0.5
                if deadline is not None:  # --duration ends on time, not up to one redraw late
                    wait_s = max(0.0, min(wait_s, deadline - time.monotonic()))
                signals.wake.wait(wait_s)  # a signal or the capture's end; the loop's checks say which
                signals.wake.clear()
        finally:  # whatever ended the loop, what was read reaches the spool and delivery gets its flush
            captured_s = capture.stats.elapsed_s  # the capture's length: the flush below is not in it
            output.end_view()
            capture.stop()  # flushes the chunker: every sample read is in the spool now
            pending = capture.spool.pending_count()
            if uploader is not None:
                # A signal while a replay delivers its backlog stops at once (it asked for no flush).
                stop_now = signals.now.is_set() or (delivering and signals.stop.is_set())
                # A replay that read its whole file delivers everything (the session summary too),
                # as it did its chunks: no time limit, and one Ctrl-C stops it at once.
                to_the_end = (
                    deliver_all and capture.finished and capture.fatal is None and not signals.stop.is_set()
                )
                timeout = 0.0 if stop_now else float("inf") if to_the_end else flush_timeout_s
                if pending and timeout:
                    limit = "until they are delivered" if to_the_end else f"for up to {timeout:g} s"
                    again = " again" if signals.stop.is_set() else ""  # "again" only after a first Ctrl-C
                    output.log(
                        "flushing",
                        message=f"delivering the last {pending} item(s), {limit} "
                        f"(Ctrl-C{again} to stop now; nothing is lost)",
                        pending=pending,
                    )
                # A second Ctrl-C during the flush ends it at once; the spool keeps the rest.
                pending = uploader.stop(timeout, abort=signals.stop if to_the_end else signals.now)
        snap = snapshot(capture.stats, delivery())

    # Exit 6 is about this capture; older captures' items (say, parked on a deleted workspace) are
    # mentioned, not allowed to turn every later run into a 6.
    mine = next((s.pending for s in capture.spool.stats() if s.capture_id == capture.capture_id), 0)
    others, pending = pending - mine, mine
    fatal = capture.fatal
    times = (
        # wall_s to the ms: a short file replayed at --speed max takes well under 0.1 s
        {"recording_s": round(recording_s(), 1), "wall_s": round(captured_s, 3)}
        if recording_s is not None
        else {"duration_s": round(captured_s, 1)}
    )
    try:
        losses = capture.spool.losses(capture.capture_id)
    except CollectorError as err:  # the closing line must not fail; the capture's own counts remain
        log.warning("could not read the spool's loss counts: %s", err)
        losses = []
    # A chunk whose refusal the spool could not even count (a failing disk) is still a loss.
    kept_as_failed = ("failed", "unreadable")  # in the spool, not on the server; the rest were refused
    uncounted = snap["dropped"] - sum(loss.count for loss in losses if loss.reason not in kept_as_failed)
    if uncounted > 0:
        losses.append(Loss(capture.capture_id, "this capture", "the spool could not be written", uncounted))
    refused_losses = [loss for loss in losses if loss.reason not in kept_as_failed]
    refused = sum(loss.count for loss in refused_losses)
    why_refused = ", ".join(
        dict.fromkeys(_REFUSED_WORDS.get(loss.reason, loss.reason) for loss in refused_losses)
    )
    summary = {
        "capture_id": capture.capture_id,
        **times,
        "samples": capture.stats.samples,
        "eeg_chunks": capture.stats.eeg_chunks_spooled,
        "markers": capture.stats.markers,
        "screenshots": capture.stats.screens_sent,
        "screenshots_skipped": capture.stats.screens_skipped,
        "black_frames": capture.stats.black_frames,
        # Every item the spool refused for this capture (its session summary too), as DATA LOST counts.
        "dropped": max(snap["dropped"], refused),
        "delivered": snap["delivered"],
        "pending": pending,
        "lost": sum(loss.count for loss in losses),
        "failed": sum(loss.count for loss in losses if loss.reason in kept_as_failed),
    }
    if recording_s is not None:
        ended = (
            f"Replay ended: {_minutes(summary['recording_s'])} of recording read in "
            f"{_minutes(summary['wall_s'])} wall time"
        )
    else:
        ended = f"Session ended after {_minutes(summary['duration_s'])}"
    sentence = (
        f"{ended}: {summary['samples']:,} EEG samples in "
        f"{summary['eeg_chunks']} chunks ({summary['markers']} markers), "
        + "".join(
            f"{a['samples']:,} {kind} samples in {a['chunks']} chunks, "
            for kind, a in sorted(getattr(capture, "aux_stats", {}).items())
        )
        + f"{summary['screenshots']} screenshots "
        f"({summary['screenshots_skipped']} near-identical skipped"
        + (f", {summary['black_frames']} black held back" if summary["black_frames"] else "")
        + "); "
        f"{summary['delivered']} items delivered"
        + (f", {pending} still in the spool" if pending else "")
        + (
            f", {summary['dropped']} item(s) NOT SAVED ({why_refused or 'spool full'})"
            if summary["dropped"]
            else ""
        )
        + "."
    )
    if output.interactive:
        output.print_line("\n" + sentence)
    else:
        output.log("summary", message=sentence, **summary)
    if losses:
        output.log(
            "data_lost",
            # describe() may end with the server's own sentence: one period, not two.
            message="DATA LOST: "
            + "; ".join(loss.describe() for loss in losses).rstrip(".")
            + ". These chunks are "
            f"not on the server; see `collector status --spool {capture.spool.root}`.",
            # Lab logs get the counts as data too; a text line stays one readable sentence.
            **({"lost": [loss.as_dict() for loss in losses]} if output.log_format == "json" else {}),
        )
    if pending:
        output.log(
            "pending",
            message=f"{pending} item(s) of this capture are "
            + ("waiting in the spool (--offline)" if offline else "still in the spool")
            + f". Send them with `collector upload --spool {capture.spool.root}`.",
            pending=pending,
        )
    if others:
        output.log(
            "pending_earlier",
            message=f"{others} item(s) from earlier captures are still waiting; see "
            f"`collector status --spool {capture.spool.root}`.",
        )
    if local:
        output.log(
            "kept_local",
            message=f"Kept on this machine only (--local), nothing to deliver: `collector review "
            f"{capture.capture_id[:8]} --spool {capture.spool.root}` or `collector export`.",
        )
    if isinstance(fatal, CollectorError):
        return SessionResult(fatal.exit_code, pending, summary)
    wrong = uploader.target_error(capture.capture_id) if uploader is not None else None
    if wrong is not None and pending:  # the deferred check proved the target wrong: items kept
        output.log(
            "target_wrong", message=f"{wrong} The {pending} item(s) of this capture are kept in the spool."
        )
        return SessionResult(wrong.exit_code, pending, summary)
    stuck = uploader.paused_error if uploader is not None else None
    if stuck is not None and pending:  # the key was refused mid-run: exit 3, as `collector upload` would
        output.log("paused", message=f"{stuck} The evidence is kept in the spool.")
        if stuck.exit_code in (EXIT_AUTH, EXIT_NOT_FOUND):
            return SessionResult(stuck.exit_code, pending, summary)
    if fatal is not None:
        return SessionResult(1, pending, summary)
    if losses:
        return SessionResult(EXIT_DATA_LOST, pending, summary)
    return SessionResult(EXIT_PENDING if pending and not offline else EXIT_OK, pending, summary)


# Why the spool refused items, in the closing line's few words (the DATA LOST line says more).
_REFUSED_WORDS = {
    "spool_full": "spool bound reached",
    "spool_full_screens_paused": "spool over 90 %, screenshots paused",
    "disk_full": "disk full",
}


def _minutes(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    if minutes:
        return f"{int(minutes)} min {rest:.0f} s"
    return f"{seconds:.1f} s" if seconds >= 1 else f"{seconds:.2g} s"
