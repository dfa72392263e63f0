"""One capture: EEG source -> chunker -> spool, screen source -> spool, uploader draining the spool.

Used by `collector run` (live sources), `collector replay` (an XDF file) and `collector demo`.
Every chunk is written to the spool before any network call, so stopping (Ctrl-C, SIGTERM,
`--duration`) never loses what was captured: the uploader flushes within a deadline and leaves
the rest for `collector upload`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from collector import __version__
from collector.capture.pause import paused_since
from collector.core.chunk import HARD_MAX_CHUNK_BYTES, EegChunker, chunk_evidence
from collector.core.evidence import EvidenceChunk, screen_evidence
from collector.core.records import EegSource, SampleChunk, SourceEnded, StreamDescription
from collector.core.summary import SummaryBuilder
from collector.core.units import below_precision, zero_signal_message
from collector.delivery.local_record import CaptureInfo
from collector.errors import CollectorError, SpoolError, SpoolFullError, UsageError

log = logging.getLogger("collector.capture.pipeline")
_SPOOL_TRIES = 3  # a spool write that fails (locked, I/O error) is retried before it counts as a drop
MARK_HOLD_S = 2.0  # a chunk waits this long for marks made during it (`collector mark` start-up)


@dataclass
class CaptureStats:
    """Live figures for the status view and the end-of-session summary (written by one thread each)."""

    started_mono: float = field(default_factory=time.monotonic)
    stream: StreamDescription | None = None
    samples: int = 0
    eeg_chunks_spooled: int = 0
    eeg_chunks_dropped: int = 0
    markers: int = 0  # markers (events) inside spooled EEG chunks
    band_powers: dict[str, float] = field(default_factory=dict)
    channel_quality: dict[str, str] = field(default_factory=dict)
    screens_sent: int = 0
    screens_skipped: int = 0
    screens_dropped: int = 0
    marks: int = 0
    screen_state: str = "off"
    source_state: str = ""
    last_error: str = ""
    eeg_done: bool = False
    # (screen state, skipped so far) as of now, when a screen source runs: see Capture.screen_status.
    screen_now: Callable[[], tuple[str, int]] | None = field(default=None, repr=False)
    _rate_window: deque = field(default_factory=lambda: deque(maxlen=64))

    def note_samples(self, n: int) -> None:
        self.samples += n
        self._rate_window.append((time.monotonic(), self.samples))

    @property
    def measured_rate_hz(self) -> float | None:
        if len(self._rate_window) < 2:
            return None
        (t0, n0), (t1, n1) = self._rate_window[0], self._rate_window[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_mono


def _check_not_below_precision(chunk: SampleChunk, description: StreamDescription) -> bool:
    """True once a chunk holds a value the artifact can state; UsageError when every value of a
    non-zero chunk would round to 0.000 (see collector.core.units.below_precision)."""
    data = np.asarray(chunk.data, dtype=np.float64)
    finite = np.abs(data[np.isfinite(data)])
    if finite.size == 0:
        return False
    peak = float(finite.max())
    if below_precision(peak):
        raise UsageError(zero_signal_message(description.name, peak, description.unit or "microvolts"))
    return peak > 0.0


def _quality_word(flags: dict[str, Any]) -> str:
    """One word per channel for a learner, from the last window's quality flags."""
    if not flags:
        return "?"
    for key, word in (
        ("missing", "gap"),
        ("flat", "flat"),
        ("clipped", "railed"),
        ("excessive_amplitude", "noisy"),
        ("line_noise", "line-noise"),
    ):
        if flags.get(key):
            return word
    return "good"


class Capture:
    """Owns the capture threads of one `run`/`replay`; the uploader (if any) is owned by the caller."""

    def __init__(
        self,
        *,
        profile,
        workspace_id: str,
        block_id: str | None,
        spool,
        eeg_source: EegSource | None = None,
        screen_source=None,
        capture_id: str | None = None,
        marks=None,
        kind: str = "run",
        about: dict[str, Any] | None = None,
        chunk_max_bytes: int | None = None,
    ) -> None:
        """`kind`: run | replay | demo; `about`: block_title, source, ... for the local record."""
        self.profile = profile
        self.chunk_max_bytes = chunk_max_bytes  # None: the chunker's own bound (under the API's 10 MB)
        self.marks = marks  # collector.capture.marks.MarkInbox of a live run, or None
        self.workspace_id = workspace_id
        self.block_id = block_id
        self.spool = spool
        self.eeg_source = eeg_source
        self.screen_source = screen_source
        self.capture_id = capture_id or str(uuid.uuid4())
        self.stats = CaptureStats()
        self.stop_event = threading.Event()
        self._threads: list[threading.Thread] = []
        self._fatal: BaseException | None = None
        self._screen_index = 0
        self.kind = kind
        self.about = dict(about or {})
        self.started_ms = int(time.time() * 1000)
        self.summary = SummaryBuilder(capture_id=self.capture_id, kind=kind, collector_version=__version__)
        self._ended = False

    # ---- spooling ------------------------------------------------------------------------------

    def _spool(self, evidence: EvidenceChunk, data: bytes) -> bool:
        evidence = evidence.for_block(self.block_id or None)
        for attempt in range(_SPOOL_TRIES):
            try:
                self.spool.add(workspace_id=self.workspace_id, evidence=evidence, data=data)
                return True
            except SpoolFullError as err:  # the spool has counted the drop; say it loudly
                self.stats.last_error = str(err)
                log.error("%s", err)
                return False
            except SpoolError as err:  # a busy or failing disk: try again, then count it, go on
                if attempt + 1 < _SPOOL_TRIES:
                    time.sleep(0.5 * (attempt + 1))
                    continue
                try:
                    self.spool.record_drop(
                        self.capture_id, evidence.stream_id, str(err), evidence.chunk_index
                    )
                except SpoolError:
                    pass  # the status view still counts it
                self.stats.last_error = str(err)
                log.error("NOT SAVED: %s", err)
        return False

    # ---- EEG -----------------------------------------------------------------------------------

    def _eeg_loop(self, source: EegSource, description: StreamDescription) -> None:
        a = self.profile.analysis
        try:
            settings = a.band_settings()
            chunker = EegChunker(
                description,
                settings,
                capture_id=self.capture_id,
                stream_id=description.stream_id,
                chunk_s=a.chunk_s,
                hold_samples=round(MARK_HOLD_S * description.sfreq) if self.marks is not None else 0,
                max_bytes=self.chunk_max_bytes or HARD_MAX_CHUNK_BYTES,
            )
        except Exception as exc:  # nothing read yet, so nothing lost; say why and stop
            self._fatal = exc
            self.stats.last_error = str(exc)
            self.stats.eeg_done = True
            log.error("cannot process this EEG stream: %s", exc)
            return
        device_name = self.profile.device.name if self.profile.device.kind == "muse" else description.name

        def spool_chunks(outs) -> None:
            for out in outs:
                if self._spool(chunk_evidence(out, device_name), out.to_bytes()):
                    self.stats.eeg_chunks_spooled += 1
                    self.stats.markers += len(out.artifact["events"])
                else:
                    self.stats.eeg_chunks_dropped += 1
                self.summary.add_chunk(out.artifact)
                self.stats.band_powers = out.band_powers or self.stats.band_powers
                windows = out.artifact["windows"]
                if windows:
                    channels = windows[-1]["quality"].get("channels") or {}
                    self.stats.channel_quality = {ch: _quality_word(q) for ch, q in channels.items()}

        try:
            last_read = False
            signal_seen = False
            while not last_read:
                # After the stop, one last read takes what the inlet already holds (and its markers).
                last_read = self.stop_event.is_set()
                try:
                    chunk = source.read(timeout=0.0 if last_read else 0.2)
                except SourceEnded:
                    break
                # LslSource/MuseSource say when the stream is gone (they re-resolve it themselves).
                lost = getattr(source, "lost", False)
                self.stats.source_state = "stream lost, waiting" if lost else ""
                self._take_marks(chunker, description)
                if chunk is None or len(chunk) == 0:
                    continue
                if not signal_seen:  # a non-zero signal is never delivered as zeros (a unit problem)
                    signal_seen = _check_not_below_precision(chunk, description)
                self.stats.note_samples(len(chunk))
                spool_chunks(chunker.push(chunk))
        except CollectorError as err:
            self.stats.last_error = str(err)
            self._fatal = err
            log.error("%s", err)
        except Exception as exc:  # a bug in a worker must not take captured data with it
            log.exception("EEG capture failed")
            self._fatal = exc
        finally:
            # Whatever happened, samples already read go to the spool.
            try:
                spool_chunks(chunker.flush())
            except Exception as exc:
                log.exception("EEG capture could not save its last chunk")
                self._fatal = self._fatal or exc
            finally:
                self.stats.eeg_done = True

    def _take_marks(self, chunker, description: StreamDescription) -> None:
        """The learner's marks join the stream's events before the samples that follow them."""
        if self.marks is None:
            return
        events = self.marks.take()
        if events:
            import numpy as np

            empty = SampleChunk(np.zeros((0, len(description.channels))), np.zeros(0), events=tuple(events))
            chunker.push(empty)
            self.stats.marks += len(events)
            log.info("marked %s", ", ".join(repr(e.value) for e in events), extra={"event": "marked"})

    # ---- screen --------------------------------------------------------------------------------

    def _on_frame(self, frame) -> None:
        evidence = screen_evidence(
            frame,
            capture_id=self.capture_id,
            stream_id=f"screen:{frame.monitor}",
            chunk_index=self._screen_index,
            collector_version=__version__,
        )
        self.stats.screens_skipped += frame.skipped_before
        if self._spool(evidence, frame.image):
            self._screen_index += 1  # only sent frames count, so chunk_index stays contiguous
            self.stats.screens_sent += 1
            self.summary.add_screenshot(frame.time_ms, frame.skipped_before, frame.paused_periods)
        else:
            self.stats.screens_dropped += 1

    def _screen_loop(self) -> None:
        try:
            self.screen_source.run(self._on_frame, self.stop_event)
            # Frames skipped after the last sent one are in no frame's metadata: take the source's count.
            self.stats.screens_skipped = max(
                self.stats.screens_skipped, int(getattr(self.screen_source, "skipped_identical", 0) or 0)
            )
        except CollectorError as err:
            self.stats.screen_state = "stopped"
            self.stats.last_error = str(err)
            log.warning("screen capture stopped: %s (EEG continues)", err)
        except Exception:
            self.stats.screen_state = "stopped"
            log.exception("screen capture failed (EEG continues)")

    def screen_status(self) -> tuple[str, int]:
        """(state, skipped) now: "paused since 14:02 (35 s ago)" while the privacy pause is on, and
        near-identical frames counted as they are skipped (a frame's metadata only has them once the
        next frame is sent)."""
        src = self.screen_source
        skipped = max(self.stats.screens_skipped, int(getattr(src, "skipped_identical", 0) or 0))
        state = self.stats.screen_state
        control = getattr(src, "pause_control", None)
        if state == "capturing" and control is not None:
            state = paused_since(control) or state
        return state, skipped

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self, description: StreamDescription | None) -> None:
        self.stats.stream = description
        self._begin_record(description)
        if self.eeg_source is not None and description is not None:
            t = threading.Thread(
                target=self._eeg_loop, args=(self.eeg_source, description), name="eeg", daemon=True
            )
            self._threads.append(t)
        if self.screen_source is not None:
            self.stats.screen_state = "capturing"
            self.stats.screen_now = self.screen_status
            t = threading.Thread(target=self._screen_loop, name="screen", daemon=True)
            self._threads.append(t)
        for t in self._threads:
            t.start()

    @property
    def finished(self) -> bool:
        """All finite sources are done (a replay reached the end of its file)."""
        return self.eeg_source is not None and self.stats.eeg_done and self.screen_source is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the sources, then spool the session summary (last) and close the local record."""
        self.stop_event.set()
        for t in self._threads:
            t.join(timeout_s)
        if not self._ended:
            self._ended = True
            self._end_record()

    # ---- local record and session summary ---------------------------------------------------------

    def _device_name(self) -> str | None:
        d = self.stats.stream
        if d is None:
            return None
        return self.profile.device.name if self.profile.device.kind == "muse" else d.name

    def _begin_record(self, description: StreamDescription | None) -> None:
        try:
            self.spool.record.begin_capture(CaptureInfo(
                capture_id=self.capture_id, kind=self.kind, started_ms=self.started_ms,
                workspace_id=self.workspace_id, block_id=self.block_id,
                block_title=self.about.get("block_title"), workspace_title=self.about.get("workspace_title"),
                source=self.about.get("source"), device=self._device_name(),
                profile=getattr(self.profile, "name", None),
                retention_days=self.profile.delivery.retention_days,
            ))  # fmt: skip
        except Exception as exc:  # the record is a convenience; capture goes on without it
            log.warning("local record not started: %s", exc)

    def _end_record(self) -> None:
        # Frames skipped after the last sent one are in no frame's metadata: the run's own count
        # (the end line's) is the true one, so the summary says the same.
        self.summary.screenshots_skipped = max(self.summary.screenshots_skipped, self.stats.screens_skipped)
        if not self.summary.empty:
            fields, data = self.summary.evidence(self._device_name())
            self._spool(fields, data)
        s = self.summary
        counts = {
            "samples": self.stats.samples,
            "eeg_chunks": self.stats.eeg_chunks_spooled,
            "eeg_chunks_dropped": self.stats.eeg_chunks_dropped,
            "screenshots": self.stats.screens_sent,
            "screenshots_skipped": self.stats.screens_skipped,
            "screenshots_dropped": self.stats.screens_dropped,
            "markers": len(s.markers),
            "gaps": len(s.gaps),
            "data_start_ms": None if s.first_ms is None else int(s.first_ms),
            "data_end_ms": None if s.last_ms is None else int(math.ceil(s.last_ms)),
        }
        try:
            if self.spool.end_capture(self.capture_id, int(time.time() * 1000), counts):
                self.spool.record.prune()  # a lab service may run for weeks without reopening its spool
            else:  # a full disk: the spool writes it as soon as it can, at the latest when it closes
                log.info("local record of the capture is closed once the disk has room (at exit)")
        except Exception as exc:
            log.warning("local record not closed: %s", exc)

    @property
    def fatal(self) -> BaseException | None:
        return self._fatal
