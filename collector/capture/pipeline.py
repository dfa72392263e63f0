"""One capture: EEG source -> chunker -> spool, screen source -> spool, uploader draining the spool.

Used by `collector run` (live sources), `collector replay` (an XDF file) and `collector demo`.
Every chunk is written to the spool before any network call, so stopping (Ctrl-C, SIGTERM,
`--duration`) never loses what was captured: the uploader flushes within a deadline and leaves
the rest for `collector upload`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from collector import __version__
from collector.capture.aux_loop import aux_loop
from collector.capture.pause import paused_since
from collector.core.chunk import HARD_MAX_CHUNK_BYTES, EegChunker, chunk_evidence
from collector.core.evidence import EvidenceChunk, screen_evidence
from collector.core.motion import MotionTrack, flag_windows
from collector.core.records import EegSource, SampleChunk, SourceEnded, StreamDescription
from collector.core.summary import SummaryBuilder
from collector.core.units import PrecisionCheck
from collector.delivery.local_record import CaptureInfo
from collector.errors import CollectorError, SpoolError, SpoolFullError

log = logging.getLogger("collector.capture.pipeline")
_SPOOL_TRIES = 3  # a spool write that fails (locked, I/O error) is retried before it counts as a drop
MARK_HOLD_S = 2.0  # a chunk waits this long for marks made during it (`collector mark` start-up)
MOTION_WAIT_S = 1.5  # an EEG chunk waits at most this long for the motion sensors to reach its end
# An EEG read waits at most this long for samples (an LSL source for READ_BATCH_S of them): also how
# late the loop may notice a stop, before its last read.
EEG_READ_WAIT_S = 0.5


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
    black_frames: int = 0  # black or empty screenshots held back (collector.devices.screen.source)
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
        local: bool = False,
        aux_sources: Sequence[tuple[str, Any, StreamDescription]] = (),
    ) -> None:
        """`kind`: run | replay | demo; `about`: block_title, source, ... for the local record;
        `local` (`--local`): every item goes to the local record only, never to delivery.
        `aux_sources`: (kind, opened source, description) of the headset's accelerometer,
        gyroscope and PPG streams (collector.capture.aux_loop)."""
        self.local = local
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
        self._wake_on_end: list[threading.Event] = []  # `wake_on_end`
        self._fatal: BaseException | None = None
        self._screen_index = 0
        self.kind = kind
        self.about = dict(about or {})
        self.started_ms = int(time.time() * 1000)
        self.summary = SummaryBuilder(capture_id=self.capture_id, kind=kind, collector_version=__version__)
        self._ended = False
        self.aux_sources = list(aux_sources)
        self.aux_stats: dict[str, dict[str, Any]] = {}
        self.motion = MotionTrack()
        self._motion_kinds = {k for k, _, _ in self.aux_sources if k in ("accelerometer", "gyroscope")}

    def device_name_for(self, description: StreamDescription) -> str:
        return self.profile.device.name if self.profile.device.kind == "muse" else description.name

    # ---- spooling ------------------------------------------------------------------------------

    def _spool(self, evidence: EvidenceChunk, data: bytes, local_copy: bytes | None = None) -> bool:
        evidence = evidence.for_block(self.block_id or None)
        for attempt in range(_SPOOL_TRIES):
            try:
                self.spool.add(
                    workspace_id=self.workspace_id,
                    evidence=evidence,
                    data=data,
                    local_only=self.local,
                    local_copy=local_copy,
                )
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
            self._eeg_ended()
            log.error("cannot process this EEG stream: %s", exc)
            return
        device_name = self.device_name_for(description)

        def spool_chunks(outs) -> None:
            for out in outs:
                out = self._flag_movement(out)
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
            # A non-zero signal (or channel) is never delivered as zeros: a unit problem.
            precision = PrecisionCheck(description.name, description.channels, description.unit, log)
            while not last_read:
                # After the stop, one last read takes what the inlet already holds (and its markers).
                last_read = self.stop_event.is_set()
                try:
                    chunk = source.read(timeout=0.0 if last_read else EEG_READ_WAIT_S)
                except SourceEnded:
                    break
                # LslSource/MuseSource say when the stream is gone (they re-resolve it themselves).
                lost = getattr(source, "lost", False)
                self.stats.source_state = "stream lost, waiting" if lost else ""
                self._take_marks(chunker, description, source)
                if chunk is None:
                    continue
                if len(chunk) == 0:
                    # No samples yet (a live source's clock fit holds them back) but markers or a
                    # gap may ride along: the chunker keeps them for the chunk their time falls in.
                    if chunk.events or chunk.gaps:
                        spool_chunks(chunker.push(chunk))
                    continue
                precision.check(chunk.data)
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
                self._eeg_ended()

    def wake_on_end(self, event: threading.Event) -> None:
        """Set `event` when the EEG capture ends (its file read, or a fatal error), so a loop that
        waits on it notices at once rather than at its next look."""
        self._wake_on_end.append(event)

    def _eeg_ended(self) -> None:
        self.stats.eeg_done = True
        for event in self._wake_on_end:
            event.set()

    def _flag_movement(self, out):
        """`quality.movement` on the chunk's windows when a motion sensor is captured (else as is)."""
        windows = out.artifact["windows"]
        if not self._motion_kinds or not windows:
            return out
        end = float(windows[-1]["end_ms"])
        deadline = time.monotonic() + MOTION_WAIT_S
        while time.monotonic() < deadline and not self._motion_done():
            reached = self.motion.reached_ms()
            if reached is not None and reached >= end - 1000.0:
                break
            time.sleep(0.05)
        flag_windows(out.artifact, self.motion, self.profile.analysis.window_s)
        return dataclasses.replace(out, encoded=None)

    def _motion_done(self) -> bool:
        return all(self.aux_stats.get(k, {}).get("done") for k in self._motion_kinds)

    def _take_marks(self, chunker, description: StreamDescription, source=None) -> None:
        """The learner's marks join the stream's events before the samples that follow them.

        A source with its own marker channel (BrainFlow's `insert_marker`) gets them there: the mark
        lands on the next sample the board sends and comes back as an event of its chunk, at the
        moment the mark was made.
        """
        if self.marks is None:
            return
        events = self.marks.take()
        insert = getattr(source, "insert_marker", None)
        if events and insert is not None:
            left = []
            for e in events:
                try:
                    insert(e.value, e.time_ms)
                except CollectorError as err:  # not streaming right now: keep the mark as an event
                    log.warning("%s; the mark is kept at the time it was made", err)
                    left.append(e)
            self.stats.marks += len(events) - len(left)
            if len(left) < len(events):
                log.info(
                    "marked %s (on the board's marker channel)",
                    ", ".join(repr(e.value) for e in events if e not in left),
                    extra={"event": "marked"},
                )
            events = left
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
        self.stats.black_frames += int(frame.extra.get("black_frames", 0) or 0)
        if self._spool(evidence, frame.image, frame.local_copy):
            self._screen_index += 1  # only sent frames count, so chunk_index stays contiguous
            self.stats.screens_sent += 1
            self.summary.add_screenshot(
                frame.time_ms,
                frame.skipped_before,
                frame.paused_periods,
                int(frame.extra.get("black_frames", 0) or 0),
            )
        else:
            self.stats.screens_dropped += 1

    def _screen_loop(self) -> None:
        try:
            self.screen_source.run(self._on_frame, self.stop_event)
            # Frames skipped after the last sent one are in no frame's metadata: take the source's count.
            self.stats.screens_skipped = max(
                self.stats.screens_skipped, int(getattr(self.screen_source, "skipped_identical", 0) or 0)
            )
            self._take_black_count()
        except CollectorError as err:
            self._take_black_count()
            self.stats.screen_state = "stopped"
            self.stats.last_error = str(err)
            log.warning("screen capture stopped: %s (EEG continues)", err)
        except Exception:
            self.stats.screen_state = "stopped"
            log.exception("screen capture failed (EEG continues)")

    def _take_black_count(self) -> None:
        """Black frames held back after the last sent one are in no frame's metadata: the source's count."""
        self.stats.black_frames = max(
            self.stats.black_frames, int(getattr(self.screen_source, "black_frames", 0) or 0)
        )

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
        backend = getattr(src, "backend", None)
        if state == "capturing" and isinstance(backend, str):
            state = f"capturing via {backend}"
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
        for kind, source, aux_description in self.aux_sources:
            t = threading.Thread(
                target=aux_loop,
                args=(self, kind, source, aux_description, self.motion),
                name=kind,
                daemon=True,
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
        return self.device_name_for(d)

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
        self.summary.black_frames = max(self.summary.black_frames, self.stats.black_frames)
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
            "black_frames": self.stats.black_frames,
            "screen_backend": getattr(self.screen_source, "backend", None),
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
