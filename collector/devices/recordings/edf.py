"""The EDF/BDF reader: EDF, EDF+ and BDF files as a `Recording`, read with edfio.

edfio (MIT, by the MNE-Python developers; MNE's own EDF export uses it) reads EDF, EDF+C, BDF and
BDF+C with numpy alone and returns physical values (digital values scaled by each signal's
physical/digital range), the EDF+ annotations and the start date-time with EDF+'s sub-second
part. MNE's `read_raw_edf` would do the same but brings MNE's whole dependency tree for one reader.

Streams made from a file:
- `EEG`: every signal that is not named as another kind (EDF+ labels such as `EOG left`,
  `ECG`, `EMG`, `Resp`, `Temp`, `SpO2`, BioSemi's `Status`, ...) and has the most common rate
  among those; the EDF+ `EEG ` label prefix is dropped (`EEG Fpz-Cz` -> `Fpz-Cz`). Values in
  µV (mV, V and nV signals are scaled).
- one numeric stream per other signal, named by its label (`--stream "EOG horizontal"`), or any
  channels by label with `--stream "Fpz-Cz,Pz-Oz"`.
- `Annotations`: the EDF+/BDF+ annotations (onset, text) and, for BDF, changes of the trigger
  code in the low 16 bits of `Status` (BioSemi's trigger channel), as events; so are the code
  onsets of an EDF trigger channel (`Status`, `Trigger`, `STI 014`, `Stim`: MNE's stim channels).
  `BAD_ACQ_SKIP` annotations (MNE's "not acquired", as `collector export` marks gaps) are not events: the
  samples they cover were never recorded, so they are left out and the replay has a gap there.
Time anchor (`meas_date`): the header's start date and time, read as UTC as MNE does (EDF stores
no time zone); an anonymised start date (EDF+ `Startdate X`) leaves no anchor (replay then uses
now, or `--start-time`). EDF+D (discontinuous) files are refused: edfio reads them as if
continuous, which would misplace every record after the first break.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from collector.core.units import unit_scale
from collector.devices.recordings.edf_header import header_problem
from collector.devices.recordings.model import RecordedStream, Recording, marker_stream
from collector.errors import UsageError

log = logging.getLogger(__name__)

# EDF+ signal-type prefixes (and common labels) that are not EEG.
_NON_EEG = re.compile(
    r"^(EOG|ECG|EKG|EMG|RESP|RESPIRATION|TEMP|SPO2|SAO2|HR|PULSE|PLETH|POS|POSITION|LIGHT|SOUND|"
    r"EVENT|TRIG|TRIGGER|STATUS|MARKER|ACC|ACCEL|GYRO|BATTERY|SNORE|FLOW|THOR|ABDO|NASAL|OXY|PPG|"
    r"GSR|EDA|ERG|MEG|MISC|STIM|STI|DC\d*|HYPNOGRAM)\b",
    re.IGNORECASE,
)
SKIP_LABEL = "BAD_ACQ_SKIP"  # MNE's annotation for "not acquired" (also what `collector export` writes)


def _is_eeg(label: str) -> bool:
    return not _NON_EEG.match(label.strip())


def _is_trigger(label: str) -> bool:
    """A trigger channel by its label, as MNE's EDF reader finds stim channels (`Status`,
    `Trigger`), plus MNE's own `STI 014`-style names and `Stim`."""
    text = label.strip().lower()
    return text in ("status", "trigger", "trig", "stim") or text.startswith(("sti ", "sti0", "stim "))


def _eeg_label(label: str) -> str:
    text = label.strip()
    return text[4:].strip() if text.upper().startswith("EEG ") else text


def _status_events(values: np.ndarray, sfreq: float) -> list[tuple[float, str]]:
    """BioSemi Status: triggers are the low 16 bits (MNE's default mask; bits 16-23 are status bits,
    never events). The idle level is the most common 16-bit word (0, or e.g. 0xFF00 when unused
    trigger lines float high): neither it nor a return to it is an event, and its bits are taken
    off a pulse's word, so a pulse 0xFF01 on idle 0xFF00 is code 1. An event where the word changes
    to a value other than the idle level (MNE's `find_events` onsets)."""
    words = values.astype(np.int64) & 0xFFFF
    if words.size == 0:
        return []
    levels, counts = np.unique(words, return_counts=True)
    idle = int(levels[np.argmax(counts)])
    onsets = np.flatnonzero(np.diff(words) != 0) + 1
    starts = [0] if words[0] != idle else []
    out = []
    for i in [*starts, *onsets.tolist()]:
        word = int(words[i])
        if word == idle:
            continue
        code = word & ~idle & 0xFFFF if word & idle == idle else word
        out.append((i / sfreq, str(code)))
    return out


def _benign(message: str) -> bool:
    """edfio's warnings about files that are complete as written: a header that says -1 data
    records (the count is taken from the file, as edfio and MNE do), a signal whose physical
    minimum equals its maximum (left out here, by name)."""
    return (
        message.startswith("num_data_records=-1")
        or "header indicates -1 data records" in message
        or message.startswith("Physical minimum equals")
    )


_COUNT = re.compile(r"header indicates (-?\d+) data records, but file contains (\d+) records")
_SHORT_RECORD = "Incomplete data record at the end"


def _record_count_notes(messages: list[str], kind: str) -> tuple[list[str], list[str]]:
    """edfio's record-count warnings split into (the file is cut, notes on a complete file).

    Cut: a short last data record after the records the header announces (or after all of them
    when it says -1), or fewer whole records than the header says. Complete: a header whose count
    is lower than the records the file holds (0 or a placeholder: a recorder that did not update
    it when it stopped; edfio and MNE read them all), or a few stray bytes after exactly the
    records the header announces.
    """
    cut: list[str] = []
    notes: list[str] = []
    counts = [(int(m.group(1)), int(m.group(2))) for m in map(_COUNT.search, messages) if m]
    short = any(_SHORT_RECORD in m for m in messages)
    declared, found = counts[0] if counts else (None, None)
    if declared is not None and found is not None and declared >= 0:
        if declared > found:
            cut.append(f"the header says {declared} data records, the file holds {found}")
        elif short:
            cut.append(f"its last data record is cut short after {found} whole records")
        else:
            notes.append(
                f"the header says {declared} data records but the file holds {found} whole ones (a "
                f"recorder that did not update its header when it stopped); all {found} are read"
            )
    elif short:
        if declared == -1:
            cut.append(f"its last data record is cut short after {found} whole records")
        else:
            notes.append(f"a few bytes after its last data record are not part of any {kind} record; ignored")
    return cut, notes


def _decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # EDF+ says UTF-8; many writers use Latin-1, which maps every byte
        return raw.decode("latin-1")


def _annotations(edf: Any, path: Path) -> tuple[list[Any], bool]:
    """The EDF+/BDF+ annotations and whether the file is continuous (EDF+ timekeeping).

    Text that is not UTF-8 (Latin-1, as many writers store it) is read as Latin-1 rather than
    refused. edfio decodes TALs as UTF-8 only, so then they are read here with edfio's own TAL
    pattern over each data record (edfio 0.4's private `_annotation_signals`,
    `_ANNOTATIONS_PATTERN` and `_subsecond_offset`)."""
    import edfio
    from edfio.edf_annotations import _ANNOTATIONS_PATTERN

    try:
        return list(edf.annotations), bool(edf.is_continuous)
    except UnicodeDecodeError:
        pass
    out = []
    onsets = []
    for k, signal in enumerate(edf._annotation_signals):
        for record in signal.digital.reshape((-1, signal._bytes_per_data_record)):
            texts = []
            for onset, duration, joined in _ANNOTATIONS_PATTERN.findall(_decode_text(record.tobytes())):
                texts += [
                    (float(onset), float(duration) if duration else None, t) for t in joined.split("\x14")
                ]
            # The first annotation of the first signal in each record only keeps time (EDF+ spec).
            if k == 0 and texts:
                onsets.append(texts[0][0])
            out += texts[1:] if k == 0 else texts
    log.warning("%s: annotation text is not UTF-8; read as Latin-1", path.name)
    step = float(edf.data_record_duration)
    continuous = all(abs(b - a - step) < 1e-6 for a, b in zip(onsets, onsets[1:], strict=False))
    offset = float(edf._subsecond_offset)
    annotations = [
        edfio.EdfAnnotation(round(o - offset, 12), d, t) for o, d, t in sorted(out, key=lambda a: a[0])
    ]
    return annotations, continuous


def _acquired(times_s: np.ndarray, skips: list[tuple[float, float]], tolerance_s: float) -> np.ndarray:
    """False for samples inside a `BAD_ACQ_SKIP` stretch (not acquired), True elsewhere."""
    keep = np.ones(times_s.shape[0], dtype=bool)
    for onset, duration in skips:
        keep &= ~((times_s >= onset - tolerance_s) & (times_s < onset + duration - tolerance_s))
    return keep


def load_edf(path: str | Path, *, bdf: bool = False, strict: bool = True) -> Recording:
    """Read an EDF/EDF+ (bdf=False) or BDF/BDF+ (bdf=True) file; times_s are seconds from its start.

    Stream data shapes: (n_samples, n_channels) float64, µV for the EEG stream.
    strict: a file with fewer data records than its header says (cut short) is refused;
      strict=False reads the complete records, with a warning (edfio's repair).
    Raises UsageError (one line) for a corrupt, truncated, discontinuous or signal-less file.
    """
    import edfio

    path = Path(path)
    kind = "BDF" if bdf else "EDF"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            edf: edfio.Edf | edfio.Bdf = edfio.read_bdf(path) if bdf else edfio.read_edf(path)
            signals: list[edfio.EdfSignal | edfio.BdfSignal] = list(edf.signals)
            # A channel without a physical range cannot be scaled (MNE reads it uncalibrated).
            no_range = [s for s in signals if s.physical_min == s.physical_max]
            signals = [s for s in signals if s not in no_range]
            for s in signals:
                s.data  # noqa: B018 - load now, inside the error handling (edfio loads lazily)
            annotations, continuous = _annotations(edf, path)
    except Exception as exc:  # edfio raises ValueError, IndexError, struct errors... on bad headers
        found = header_problem(path)
        if found is not None and not found[1]:
            raise UsageError(
                f"{kind} file {path} has a broken header: {found[0]}. Use the file as the recorder wrote it."
            ) from None
        detail = found[0] if found is not None else " ".join(str(exc).split())[:160]
        raise UsageError(
            f"{kind} file {path} is corrupt or truncated ({detail}). Use the complete file as recorded."
        ) from None
    messages = [" ".join(str(w.message).split()) for w in caught if issubclass(w.category, UserWarning)]
    cut, notes = _record_count_notes(messages, kind)
    repairs = cut + [
        m for m in messages if not _benign(m) and not _COUNT.search(m) and _SHORT_RECORD not in m
    ]
    for note in notes:
        log.warning("%s: %s", path.name, note)
    if no_range and signals:
        log.warning(
            "%s: signal%s %s %s physical minimum = maximum, so %s values cannot be scaled; left out "
            "(the other signals are replayed)",
            path.name,
            "s" if len(no_range) > 1 else "",
            ", ".join(f"{s.label.strip()!r} ({s.physical_min:g})" for s in no_range),
            "have" if len(no_range) > 1 else "has",
            "their" if len(no_range) > 1 else "its",
        )
    if repairs:
        detail = "; ".join(repairs)[:200]
        if strict:
            raise UsageError(
                f"{kind} file {path} is corrupt or truncated ({detail}). Use the complete file as recorded."
            )
        log.warning("%s is damaged (%s); reading the complete data records", path.name, detail)
    if not continuous:
        raise UsageError(
            f"{kind} file {path} is {kind}+D (discontinuous): not read yet. Export it as {kind}+C "
            "(continuous) or XDF."
        )
    if not signals and no_range:
        raise UsageError(
            f"{kind} file {path}: every signal has physical minimum = maximum, so none can be scaled "
            "to its unit. Fix the physical range in the header (as the recorder should have written "
            "it), or export the file again."
        )
    if not signals:
        raise UsageError(f"{kind} file {path} holds no signals (only annotations). Use a recording with EEG.")
    try:
        start: datetime | None = edf.startdatetime.replace(tzinfo=timezone.utc)
    except edfio.AnonymizedDateError:
        start = None
        log.warning("%s: the start date is anonymised; there is no recording time to anchor to", path.name)

    source_id = f"{kind.lower()}:{path.name}"
    streams: list[RecordedStream] = []
    eeg_rates = Counter(s.sampling_frequency for s in signals if _is_eeg(s.label))
    eeg_rate = eeg_rates.most_common(1)[0][0] if eeg_rates else None
    eeg_signals = [s for s in signals if _is_eeg(s.label) and s.sampling_frequency == eeg_rate]
    skips = [(float(a.onset), float(a.duration or 0.0)) for a in annotations if a.text == SKIP_LABEL]
    events: list[tuple[float, str]] = [(float(a.onset), a.text) for a in annotations if a.text != SKIP_LABEL]

    def numeric_stream(stream_id, name, stream_type, members, labels, scale_to_uv):
        sfreq = float(members[0].sampling_frequency)
        columns = []
        units = []
        for s in members:
            data = np.asarray(s.data, dtype=np.float64)
            unit = s.physical_dimension.strip()
            scale = unit_scale(unit)  # one table for every source (collector.core.units)
            factor = scale.factor if scale_to_uv and scale.known_voltage else None
            if factor is not None:
                data = data * factor
                unit = scale.unit
            # Not a voltage: kept, its unit stated; the replayed stream's warning names it once.
            columns.append(data)
            units.append(unit)
        n = min(c.shape[0] for c in columns)
        times = np.arange(n, dtype=np.float64) / sfreq
        keep = _acquired(times, skips, 0.5 / sfreq)
        return RecordedStream(
            stream_id=stream_id,
            name=name,
            type=stream_type,
            source_id=f"{source_id}:{name}" if name != "EEG" else source_id,
            hostname="",
            channel_format="double64",
            sfreq=sfreq,
            labels=tuple(labels),
            units=tuple(units),
            data=np.column_stack([c[:n] for c in columns])[keep],
            times_s=times[keep],
            segments=((0, int(keep.sum()) - 1),) if keep.any() else (),
            has_footer=True,
            footer_sample_count=None,
        )

    if eeg_signals:
        labels = [_eeg_label(s.label) for s in eeg_signals]
        if len(set(labels)) < len(labels):
            labels = [s.label.strip() for s in eeg_signals]
        streams.append(numeric_stream(1, "EEG", "EEG", eeg_signals, labels, True))
    for i, s in enumerate(x for x in signals if x not in eeg_signals):
        label = s.label.strip()
        if bdf and label.lower() == "status":
            events.extend(_status_events(np.asarray(s.digital), float(s.sampling_frequency)))
            continue
        if _is_trigger(label):  # an EDF trigger channel (MNE reads it as stim): its code onsets
            codes = np.rint(np.nan_to_num(np.asarray(s.data, dtype=np.float64))).astype(np.int64)
            events.extend(_status_events(codes, float(s.sampling_frequency)))
            continue
        kind_match = _NON_EEG.match(label)
        stream_type = kind_match.group(1).upper() if kind_match else "EEG"
        streams.append(numeric_stream(10 + i, label, stream_type, [s], [label], stream_type == "EEG"))
    events.sort(key=lambda e: e[0])
    if events or annotations:
        streams.append(
            marker_stream(
                "Annotations",
                f"{source_id}:annotations",
                [t for t, _ in events],
                [v for _, v in events],
                stream_id=99,
            )
        )
    eeg = streams[0] if streams and streams[0].name == "EEG" else None
    log.info(
        "%s: %s%s, %d signal(s); EEG: %s; %d event(s); start %s",
        path.name,
        kind,
        "+" if edf.reserved.startswith(("EDF+", "BDF+")) else "",
        len(signals),
        f"{len(eeg.labels)} channel{'' if len(eeg.labels) == 1 else 's'} at {eeg.sfreq:g} Hz, "
        f"{eeg.sample_count} samples"
        if eeg
        else "none",
        len(events),
        start.isoformat() if start else "anonymised",
    )
    return Recording(path=path, streams=tuple(streams), start=start)
