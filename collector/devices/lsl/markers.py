"""Markers next to a live EEG stream: `MarkerFollower` reads one LSL marker stream in a thread.

Which marker stream goes with the EEG (auto: `<EEG name>-markers`, or the only one on its host)
is explained in the class; MNE-LSL's `<EEG name>-annotations` stream is followed beside it by a
second follower (annotations=True: one float channel per description, or with the player's
`annotations_encoding="string"` one string channel holding the description); its samples become
Events on the collector's Unix-ms time line.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from collector.core.clock import LslClock, StreamTimeMapper
from collector.core.records import Event, StreamDescription
from collector.devices.lsl.discovery import (
    build_predicate,
    describe_info,
    resolve,
    sort_key,
    type_term,
    xpath_literal,
)
from collector.devices.recordings.model import MarkerDecoder

log = logging.getLogger("collector.devices.lsl")


def _owner(info: Any) -> str | None:
    """The EEG stream a marker stream is named after ("X-markers" by name or source_id), else None."""
    for value in (info.name(), info.source_id()):
        if value and value.endswith("-markers") and len(value) > len("-markers"):
            return value[: -len("-markers")]
    return None


class MarkerFollower:
    """Follows one marker stream in a background thread and hands its samples over as Events.

    wanted: "auto" or the name of a stream. Auto follows `<EEG name>-markers` (or source_id
    `<EEG source_id>-markers`); failing that, the only string marker stream on the EEG's host,
    unless it is named after another EEG stream ("X-markers"). With several candidates it follows
    none and says how to pick one (--markers NAME): markers of another session are never guessed.
    The thread alone owns the marker inlet; the EEG reader only calls `take()`, which never blocks on LSL.
    """

    def __init__(
        self,
        wanted: str,
        eeg: StreamDescription,
        clock: LslClock,
        *,
        resolve_timeout_s: float = 1.0,
        retry_s: float = 5.0,
        poll_s: float = 0.1,
        annotations: bool = False,
    ) -> None:
        self.wanted = wanted
        self.annotations = annotations  # follow `<EEG name>-annotations` (MNE-LSL) instead
        self.eeg = eeg
        self.clock = clock
        self.resolve_timeout_s = resolve_timeout_s
        self.retry_s = retry_s
        self.poll_s = poll_s
        self.taken: str | None = None
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._said_ambiguous = False
        self._labels: tuple[str, ...] = ()
        self._one_hot = annotations
        self._strings = True
        self._said_latin1 = False
        self._decoder = MarkerDecoder((), annotations=annotations, numeric=False, sampled=False)

    @property
    def auto(self) -> bool:
        return self.wanted.strip().lower() == "auto"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lsl-markers", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 0.3) -> None:
        """Stop following. Does not wait out a resolve in flight: the thread ends by itself after it."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def take(self) -> tuple[Event, ...]:
        """Events received since the last call, in arrival order."""
        with self._lock:
            events, self._events = self._events, []
        return tuple(events)

    # -- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                opened = self._open()
                if opened is None:
                    self._stop.wait(self.retry_s)
                    continue
                inlet, correction_s = opened
                try:
                    self._follow(inlet, correction_s)
                finally:
                    self.taken = None
                    try:
                        inlet.close_stream()
                    except Exception:  # the stream is gone already
                        log.debug("close_stream of the marker inlet failed", exc_info=True)
                    del inlet
        except Exception:  # markers are a side channel: log, stop following, leave the EEG alone
            log.exception("following the marker stream failed; continuing without markers")
            self.taken = None

    def _candidates(self) -> list[Any]:
        import pylsl

        if not self.auto:
            return sorted(resolve(build_predicate(name=self.wanted), self.resolve_timeout_s), key=sort_key)
        # The preferred names first: such a resolve returns as soon as one answers.
        suffix, kind = ("-annotations", "annotations") if self.annotations else ("-markers", "Markers")
        names = [f"name={xpath_literal(f'{self.eeg.name}{suffix}')}"]
        if self.eeg.source_id:
            names.append(f"source_id={xpath_literal(f'{self.eeg.source_id}{suffix}')}")
        preferred = [
            i
            for i in resolve(f"{type_term(kind)} and ({' or '.join(names)})", self.resolve_timeout_s)
            if self.annotations or i.channel_format() == pylsl.cf_string
        ]
        if self.annotations:  # only the stream named after the EEG: no guessing
            return sorted(preferred, key=sort_key)
        if preferred:
            return sorted(preferred, key=sort_key)
        # Any other marker stream on the host: listen the whole second, so that "the only one" is true.
        found = resolve(
            build_predicate(type="Markers", hostname=self.eeg.hostname or None),
            self.resolve_timeout_s,
            minimum=1_000_000,
        )
        found = sorted((i for i in found if i.channel_format() == pylsl.cf_string), key=sort_key)
        # "X-markers" belongs to the EEG stream X (the player's and our own naming): never ours here.
        others = [i for i in found if _owner(i) is not None]
        if len(found) == 1 and not others:
            return found
        if found and not self._said_ambiguous:
            self._said_ambiguous = True
            why = (
                f"{len(found)} marker streams on host {self.eeg.hostname}"
                if len(found) > 1
                else f"the only marker stream on host {self.eeg.hostname} belongs to EEG stream "
                f"{_owner(found[0])!r}"
            )
            log.warning(
                "markers: following none: %s and none named %s-markers (%s). To carry one, pick it "
                "with --markers NAME.",
                why,
                self.eeg.name,
                "; ".join(describe_info(i) for i in found),
                extra={"event": "markers_not_followed"},
            )
        return []

    def _open(self) -> tuple[Any, float] | None:
        """An open inlet on the wanted stream and its first time correction, or None."""
        import pylsl

        for info in self._candidates():
            if self._stop.is_set():
                return None
            try:
                inlet = pylsl.StreamInlet(info, max_buflen=360, recover=True, processing_flags=0)
                inlet.open_stream(timeout=1.0)
            except Exception as exc:  # it went away between resolve and open
                log.debug("could not open marker stream %s: %s", describe_info(info), exc)
                continue
            # liblsl's first estimate takes ~0.6 s of probes; markers wait in the inlet meanwhile.
            try:
                correction_s = float(inlet.time_correction(timeout=2.0))
            except Exception:  # TimeoutError/LostError: same host, so 0 is right to a few µs
                log.debug("no time correction for the marker stream yet", exc_info=True)
                correction_s = 0.0
            self.taken = describe_info(info)
            # MNE-LSL's one-hot annotations are floats; with annotations_encoding="string" each
            # sample is the description itself, read like any marker.
            # (Decided by the stream, not by how it was found: `--markers NAME` may name one too.)
            self._one_hot = (
                info.type().strip().lower() == "annotations" and info.channel_format() != pylsl.cf_string
            )
            try:
                self._labels = tuple(inlet.info(timeout=1.0).get_channel_labels() or ())
            except Exception:  # no header: annotations are then named by their channel number
                self._labels = ()
            self._strings = info.channel_format() == pylsl.cf_string
            self._decoder = MarkerDecoder(
                self._labels,
                annotations=self._one_hot,
                numeric=info.channel_format() != pylsl.cf_string,
                sampled=info.nominal_srate() > 0,
            )
            what = "annotations" if self.annotations else "markers"
            log.info("%s: following LSL stream %s", what, self.taken, extra={"event": "markers_followed"})
            return inlet, correction_s
        return None

    def _decode(self, raw: Any) -> list[list[Any]]:
        """Samples as lists: numbers as they are; string values (bytes) as UTF-8, or as Latin-1
        (which maps every byte) for text that is not, said once per stream."""
        rows = np.asarray(raw).tolist()
        if not self._strings:
            return rows
        out = []
        for row in rows:
            values = []
            for v in row:
                if isinstance(v, bytes):
                    try:
                        v = v.decode("utf-8")
                    except UnicodeDecodeError:
                        v = v.decode("latin-1")
                        if not self._said_latin1:
                            self._said_latin1 = True
                            log.warning(
                                "markers: marker stream %s sent text that is not UTF-8 (as LSL strings "
                                "should be), e.g. %r: read as Latin-1",
                                self.taken,
                                v,
                            )
                values.append(v)
            out.append(values)
        return out

    def _follow(self, inlet: Any, correction_s: float) -> None:
        from pylsl.util import LostError

        mapper = StreamTimeMapper(self.clock, stream_label=f"marker stream {self.taken}")
        checked = time.monotonic()
        while not self._stop.is_set():
            try:
                # Raw values: pylsl's own str decoding is strict UTF-8, and one Latin-1 marker
                # raised here and ended the following (every later marker lost).
                raw, stamps = inlet.pull_chunk(
                    timeout=self.poll_s, max_samples=256, min_samples=1, as_numpy=True
                )
            except LostError:  # no source_id: liblsl cannot recover it, so resolve afresh
                log.warning("marker stream %s lost; looking for it again", self.taken)
                return
            if len(stamps) == 0:
                continue
            samples = self._decode(raw)
            now = time.monotonic()
            if now - checked >= 5.0:
                checked = now
                try:  # liblsl keeps it current in the background: timeout 0 never stalls the pulls
                    correction_s = float(inlet.time_correction(timeout=0.0))
                except Exception:  # TimeoutError/LostError: keep the last estimate
                    log.debug("marker time_correction unavailable", exc_info=True)
            times_ms = mapper.to_unix_ms(np.asarray(stamps, dtype=np.float64), correction_s)
            if self._decoder.level:  # a trigger line sampled at a rate: its code onsets
                events = [
                    Event(time_ms=float(times_ms[i]), value=value)
                    for i, value in self._decoder.onsets(np.asarray(samples, dtype=np.float64))
                ]
            else:
                events = [
                    Event(time_ms=float(t), value=value, duration_s=duration)
                    for t, sample in zip(times_ms, samples, strict=True)
                    for value, duration in self._decoder.events(sample)
                ]
            with self._lock:
                self._events.extend(events)
