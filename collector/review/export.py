"""A capture's EEG samples as files other tools read: CSV in muselsl's layout, or EDF+.

    load_samples(spool, capture_id) -> Samples      every kept (or still spooled) sample, in order
    write_csv(samples, path)                        muselsl's `timestamps,<channels...>,Marker`
    write_edf(samples, path) -> EdfReport           EDF+C through edfio, markers as annotations

CSV: `timestamps` in Unix seconds (to the microsecond), one column per channel label in µV (to
0.001 µV, as delivered), `Marker` = 0, or the marker's value on the sample nearest to it (as
muselsl's `record` does; two markers on one sample are joined with "|"). Gaps stay gaps: rows
are the delivered samples only, so the timestamps jump across a gap. A value the source did not
deliver (non-finite; null in the chunk) is written `nan` (pandas and numpy read NaN; replay, missing).

EDF+: written with edfio (EDF+C; MNE, EDFbrowser and pyEDFlib read it). EDF stores 16-bit
integers: each channel's physical range is its own min..max (0 included), so the resolution is
(max - min) / 65535 µV, stated per channel in the report. EDF+C is continuous, and EDF+D (which
could hold gaps) is not written by edfio nor read correctly by MNE; so a gap is written as a
stretch of 0 µV covered by a `BAD_ACQ_SKIP` annotation (MNE's own name for "not acquired",
which its functions skip by default), never as invented signal. The last data record is
completed the same way, and so is a sample the source did not deliver (a non-finite value, null
in the chunk): 0 µV, its row under BAD_ACQ_SKIP (an annotation has no channel; the row's finite
channels keep their values). A channel whose range EDF's 8-character physical minimum/maximum
cannot state (edfio decides; it rounds a range that fits only lossily outward, and the step
reported is the written range's) is refused with a ValueError that says to use CSV. The start
time is UTC, to the microsecond (EDF+ subsecond start).
EEG acquired but no longer on this machine (evicted, pruned or damaged: collector/review/kept.py) is
also 0 µV, under `BAD_NOT_KEPT`, and the file starts at the capture's first sample even when
that part is gone. A data record is the shortest whole number of seconds that holds a whole
number of samples (`_record_samples`). Both files are written owner-only (0600).
"""

from __future__ import annotations

import csv
import math
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from collector.core.clock import gap_threshold_s
from collector.core.summary import STREAM_ID as SUMMARY_STREAM_ID
from collector.review.kept import NOT_KEPT_LABEL, Missing, find_missing

GAP_LABEL = "BAD_ACQ_SKIP"


@dataclass
class Samples:
    """Delivered EEG of one stream: times (n,) Unix s; data (n, n_channels) µV."""

    channels: list[str]
    sfreq: float
    times_s: np.ndarray
    data: np.ndarray
    markers: list[tuple[float, str]] = field(default_factory=list)  # (Unix s, value)
    durations: list[float | None] = field(default_factory=list)  # per marker: s (an annotation's), or None
    unit: str = "microvolts"  # the artifact's `device.unit` (another when the stream is not a voltage)
    stream_id: str = ""
    missing: Missing = field(default_factory=Missing)  # chunks no longer readable here (kept.py)


@dataclass
class EdfReport:
    path: Path
    resolution_uv: dict[str, float]  # per channel: one 16-bit step, µV
    gaps: int  # stretches not acquired (BAD_ACQ_SKIP), the last record's completion aside
    padded_samples: int
    not_kept: int = 0  # stretches acquired but no longer on this machine (BAD_NOT_KEPT)
    undelivered: int = 0  # samples (rows) with a non-finite value: 0 µV under BAD_ACQ_SKIP
    undelivered_stretches: int = 0  # the stretches those rows make


def load_samples(spool, capture_id: str) -> Samples | None:
    """Every EEG sample of the capture's (largest) EEG stream, in time order; None if none kept.

    Reads the local record and items still in the spool; chunks of any length. A chunk whose
    kept copy is damaged is skipped and, like chunks evicted or pruned, counted in `missing`.
    """
    import json

    by_stream: dict[str, list[dict]] = {}
    damaged: set[tuple[str, int]] = set()
    for art in spool.record.artifacts(capture_id, "eeg"):
        if art.stream_id == SUMMARY_STREAM_ID:
            continue
        try:
            if art.damaged:
                raise ValueError(art.damaged)
            chunk = json.loads(art.data)
            chunk["samples"], chunk["device"]["channels"], chunk["t0_ms"]  # noqa: B018 - the fields used
        except (ValueError, KeyError, TypeError):
            damaged.add((art.stream_id, art.chunk_index))
            continue
        if chunk.get("kind"):  # an accelerometer, gyroscope or PPG stream: the export is the EEG
            continue
        by_stream.setdefault(art.stream_id, []).append(chunk)
    if not by_stream:
        return None
    stream_id, chunks = max(by_stream.items(), key=lambda kv: sum(len(c["samples"]) for c in kv[1]))
    chunks.sort(key=lambda c: c["chunk_index"])
    device = chunks[0]["device"]
    times = [c["t0_ms"] + np.asarray(c["times_ms"], dtype=float) for c in chunks if c["samples"]]
    data = [np.asarray(c["samples"], dtype=float) for c in chunks if c["samples"]]
    events = sorted(
        ((e["time_ms"] / 1000.0, str(e["value"]), e.get("duration_s")) for c in chunks for e in c["events"]),
        key=lambda e: (e[0], e[1]),
    )
    return Samples(
        channels=list(device["channels"]),
        sfreq=float(device["sfreq"]),
        times_s=np.concatenate(times) / 1000.0 if times else np.zeros(0),
        data=np.concatenate(data) if data else np.zeros((0, len(device["channels"]))),
        markers=[(t, value) for t, value, _ in events],
        durations=[duration for _, _, duration in events],
        unit=str(device.get("unit") or "microvolts"),
        stream_id=stream_id,
        missing=find_missing(spool, capture_id, damaged, float(device["sfreq"]) or None, stream_id),
    )


def marker_column(times_s: np.ndarray, markers: list[tuple[float, str]]) -> list[str]:
    """muselsl's Marker column: "0", or the value(s) of the markers nearest to each sample."""
    column = ["0"] * len(times_s)
    if not len(times_s):
        return column
    for t, value in markers:
        i = int(np.searchsorted(times_s, t))
        if i == len(times_s) or (i > 0 and t - times_s[i - 1] <= times_s[i] - t):
            i -= 1
        column[i] = value if column[i] == "0" else f"{column[i]}|{value}"
    return column


def open_private(path: Path, text: bool = False):
    """Open `path` for writing, readable by the owner only, whether it is new, already there
    (0644 or not) or a symlink (its target is changed): exports hold EEG, like the spool."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "w", newline="", encoding="utf-8") if text else os.fdopen(fd, "wb")


def write_csv(samples: Samples, path: Path) -> None:
    """muselsl's CSV layout; see the module docstring. Raises OSError if `path` cannot be written."""
    marks = marker_column(samples.times_s, samples.markers)
    with open_private(path, text=True) as f:
        writer = csv.writer(f, lineterminator="\n")  # as muselsl writes its own files (pandas to_csv)
        writer.writerow(["timestamps", *samples.channels, "Marker"])
        for t, row, mark in zip(samples.times_s, samples.data, marks, strict=True):
            writer.writerow([f"{t:.6f}", *(f"{v:.3f}" for v in row), mark])


MAX_RECORD_S = 100  # longest EDF data record tried (EDF's duration field has 8 characters)
# The widest physical range EDF's 8-character fields hold ("-9999999", "99999999"); for messages:
# edfio decides what fits (_physical_range_fits).
EDF_PHYSICAL_MIN, EDF_PHYSICAL_MAX = -9_999_999.0, 99_999_999.0


def _record_samples(sfreq: float) -> tuple[int, float]:
    """(samples per data record, record duration s): the shortest whole-second data record that
    holds a whole number of samples, e.g. 256 Hz -> 256 in 1 s, 92.88 Hz -> 2322 in 25 s.

    Raises ValueError when no record of 1 to `MAX_RECORD_S` s does (e.g. a measured 255.9873 Hz);
    EDF cannot store that rate without resampling, which would invent samples.
    """
    for seconds in range(1, MAX_RECORD_S + 1):
        n = sfreq * seconds
        if abs(n - round(n)) < 1e-6:
            return int(round(n)), float(seconds)
    raise ValueError(
        f"EDF needs a whole number of samples in each data record and no record of 1 to {MAX_RECORD_S} s "
        f"holds one at {sfreq:g} Hz (resampling would invent samples). Use --format csv, which keeps "
        "every sample and its timestamp"
    )


def write_edf(samples: Samples, path: Path) -> EdfReport:
    """EDF+C through edfio; gaps, undelivered (non-finite) samples and the last record's padding
    as 0 µV under BAD_ACQ_SKIP (see the module docstring).

    Raises ValueError for an irregular stream (sfreq 0), one with no samples, a rate no data record
    of 1 to 100 s holds whole, or a channel whose range EDF's physical min/max fields cannot state.
    """
    from edfio import Edf, EdfAnnotation, EdfSignal, Patient, Recording

    if samples.sfreq <= 0:
        raise ValueError("an irregular stream (no nominal sampling rate) cannot be written as EDF")
    n = len(samples.times_s)
    if n == 0:
        raise ValueError("no samples to write")
    sfreq = samples.sfreq
    not_kept = [(a / 1000.0, b / 1000.0) for a, b in samples.missing.spans_ms]
    # A missing stretch before the first kept sample is placed too, so it can be marked.
    t0 = min([float(samples.times_s[0])] + [a for a, _ in not_kept])
    # Place each continuous segment at its time; a gap leaves unrecorded positions between them.
    breaks = np.flatnonzero(np.diff(samples.times_s) > gap_threshold_s(sfreq)) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [n]])
    positions = []
    skips: list[tuple[int, int]] = []  # (first position, count) not acquired
    next_free = 0
    for a, b in zip(starts, ends, strict=True):
        at = max(next_free, int(round((samples.times_s[a] - t0) * sfreq)))
        if at > next_free:
            skips.append((next_free, at - next_free))
        positions.append((at, a, b))
        next_free = at + (b - a)
    per_record, record_s = _record_samples(sfreq)
    total = int(math.ceil(next_free / per_record) * per_record)
    padded = total - next_free
    grid = np.zeros((total, len(samples.channels)))
    for at, a, b in positions:
        grid[at : at + (b - a)] = samples.data[a:b]
    # A non-finite value is a sample the source did not deliver (null in the chunk): like a gap, 0 µV
    # under BAD_ACQ_SKIP. An annotation has no channel, so it covers the whole row; the row's finite
    # channels keep their values.
    undelivered = ~np.isfinite(grid)
    grid[undelivered] = 0.0
    undelivered_rows = undelivered.any(axis=1)
    not_acquired = undelivered_rows.copy()
    not_acquired[next_free:] = True  # the last record's completion
    annotations = []
    for first, count in skips:
        a, b = t0 + first / sfreq, t0 + (first + count) / sfreq
        if any(x < b and y > a for x, y in not_kept):  # acquired, but no longer on this machine
            annotations.append(EdfAnnotation(first / sfreq, count / sfreq, NOT_KEPT_LABEL))
        else:
            not_acquired[first : first + count] = True
    # One annotation per stretch not acquired: a gap, undelivered samples and the padding that touch
    # are one stretch.
    annotations += [
        EdfAnnotation(first / sfreq, count / sfreq, GAP_LABEL) for first, count in _runs(not_acquired)
    ]
    resolution: dict[str, float] = {}
    signals = []
    # µV unless the stream was not a voltage (its unit kept as declared; EDF allows 8 ASCII chars).
    dimension = "uV" if samples.unit == "microvolts" else samples.unit.encode("ascii", "replace").decode()[:8]
    for ci, (label, edf_label) in enumerate(
        zip(samples.channels, _edf_labels(samples.channels), strict=True)
    ):
        lo = min(float(grid[:, ci].min()), 0.0)
        hi = max(float(grid[:, ci].max()), 0.0)
        if hi - lo < 1e-6:
            lo, hi = lo - 1.0, hi + 1.0
        if not _physical_range_fits(lo, hi):
            unit = "µV" if samples.unit == "microvolts" else samples.unit
            raise ValueError(
                f"channel {label} ranges from {lo:g} to {hi:g} {unit}, more than EDF's 8-character physical "
                f"minimum and maximum can state ({EDF_PHYSICAL_MIN:.0f} to {EDF_PHYSICAL_MAX:.0f}), likely a "
                "unit or scaling problem in the source; use --format csv, which writes every value as "
                "delivered"
            )
        signal = EdfSignal(
            grid[:, ci], sfreq, label=edf_label, physical_dimension=dimension, physical_range=(lo, hi),
            transducer_type="EEG electrode",
        )  # fmt: skip
        # edfio rounds the range outward to fit its 8 characters; the step is the written range's.
        lo, hi = signal.physical_range
        resolution[label] = (hi - lo) / 65535
        signals.append(signal)
    durations = samples.durations or [None] * len(samples.markers)
    annotations += [
        EdfAnnotation(round(t - t0, 6), duration, value)
        for (t, value), duration in zip(samples.markers, durations, strict=True)
    ]
    start = datetime.fromtimestamp(t0, tz=timezone.utc)
    edf = Edf(
        signals,
        patient=Patient(),
        recording=Recording(startdate=start.date()),
        starttime=start.time().replace(tzinfo=None),
        data_record_duration=record_s,
        annotations=sorted(annotations, key=lambda a: a.onset),
    )
    with open_private(path) as f:
        edf.write(f)
    n_not_kept = sum(a.text == NOT_KEPT_LABEL for a in annotations)
    return EdfReport(
        Path(path),
        resolution,
        len(skips) - n_not_kept,
        padded,
        n_not_kept,
        undelivered=int(undelivered_rows.sum()),
        undelivered_stretches=len(_runs(undelivered_rows)),
    )


def _edf_labels(channels: Sequence[str]) -> list[str]:
    """Each channel's EDF label: EDF allows 16 printable ASCII characters, so accents are dropped
    ("Fpé" -> "Fpe"), other characters become "_", and labels made equal get "-2", "-3", ..."""
    out: list[str] = []
    for label in channels:
        plain = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
        plain = "".join(c if c.isprintable() else "_" for c in plain)[:16] or "_"
        base, k = plain, 2
        while plain in out:
            plain = f"{base[: 16 - len(str(k)) - 1]}-{k}"
            k += 1
        out.append(plain)
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first index, length) of each run of True in the boolean `mask` (n,)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _physical_range_fits(lo: float, hi: float) -> bool:
    """Whether edfio can state `lo`..`hi` in EDF's 8-character physical minimum and maximum fields
    (rounded outward as it does): asked of edfio itself, so its own rule decides."""
    from edfio import EdfSignal

    try:
        EdfSignal(np.array([lo, hi]), 1.0, physical_range=(lo, hi))
    except ValueError:
        return False
    return True


def write_export(samples: Samples, fmt: str, path: Path):
    """Write `samples` as `fmt` ("csv" | "edf")."""
    if fmt == "csv":
        write_csv(samples, path)
        return None
    return write_edf(samples, path)
