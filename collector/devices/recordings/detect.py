"""Which kind of recording a file is, from its content, and the reader for it.

`collector replay` and the LSL player take XDF, muselsl CSV, Mind Monitor CSV and EDF/EDF+/BDF
files. Every reader returns the same `Recording` of `RecordedStream`s
(`collector.devices.recordings.model`: an EEG stream, other numeric streams, and a string marker
stream), so everything after loading (channel split, anchors, gaps, events, pacing) is shared.
`load_recording` is the one place that picks the reader for a file.

Detection looks at the bytes, not the name: `XDF:` (or gzip) is XDF, an EDF header starts with
`0` and seven spaces, a BDF header with 0xFF `BIOSEMI`; a text file is a muselsl CSV when its
header has a `timestamps` column and a Mind Monitor CSV when it has `TimeStamp` and `RAW_*`
columns. Anything else is refused with one line that names the formats accepted.
"""

from __future__ import annotations

import csv
import gzip
import logging
from datetime import datetime
from pathlib import Path

import numpy as np

from collector.devices.recordings.edf import load_edf
from collector.devices.recordings.mindmonitor_csv import load_mindmonitor_csv
from collector.devices.recordings.model import GZIP_MAGIC, RecordedStream, Recording
from collector.devices.recordings.muselsl_csv import load_muselsl_csv
from collector.devices.recordings.xdf import load_xdf
from collector.errors import UsageError

log = logging.getLogger(__name__)

ACCEPTED_FORMATS = "XDF (.xdf, .xdfz), muselsl CSV, Mind Monitor CSV, EDF, EDF+ or BDF"
# (format key, what a person calls it) in the order `collector devices` lists them.
FORMATS: tuple[tuple[str, str], ...] = (
    ("xdf", "XDF / XDFZ (LabRecorder)"),
    ("muselsl-csv", "muselsl CSV (`muselsl record`, Unix or --lsltime timestamps)"),
    ("mindmonitor-csv", "Mind Monitor CSV (raw EEG recording)"),
    ("edf", "EDF / EDF+ (continuous)"),
    ("bdf", "BDF / BDF+ (BioSemi, 24-bit)"),
)

_HEAD_BYTES = 4096


def _not_accepted(path: Path, what: str) -> UsageError:
    return UsageError(
        f"{path} {what}; collector replay reads {ACCEPTED_FORMATS} files. "
        "Check the path, or export the recording to one of these."
    )


def _gzip_head(path: Path) -> bytes:
    """The first bytes of a gzip file's content; b"" when it cannot be decompressed."""
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read(_HEAD_BYTES)
    except (OSError, EOFError):
        return b""


def _csv_kind(header: list[str] | None) -> str | None:
    """'muselsl-csv' or 'mindmonitor-csv' from a CSV's column names, None for anything else."""
    if not header:
        return None
    if "timestamps" in header:
        return "muselsl-csv"
    if "TimeStamp" in header and any(c.startswith("RAW_") for c in header):
        return "mindmonitor-csv"
    return None


def _csv_header(head: bytes) -> list[str] | None:
    """The column names of a CSV's first line, or None when the bytes are not a text table."""
    if b"\x00" in head:
        return None
    text = head.decode("utf-8-sig", errors="replace")
    first = text.splitlines()[0] if text.strip() else ""
    if not first:
        return None
    try:
        dialect = csv.Sniffer().sniff(first, delimiters=",;\t")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    return [c.strip() for c in next(csv.reader([first], delimiter=delimiter))]


def detect_format(path: str | Path) -> str:
    """'xdf', 'muselsl-csv', 'mindmonitor-csv', 'edf' or 'bdf', from the file's first bytes.

    Raises UsageError (one line) for a missing file, a directory, or a file that is none of these.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise UsageError(f"{path} is a directory, not a recording file. Give the path of a file in it.")
    if not path.is_file():
        raise UsageError(f"Recording file not found: {path}. Check the path.")
    with open(path, "rb") as handle:
        head = handle.read(_HEAD_BYTES)
    if head.startswith(GZIP_MAGIC):  # a compressed XDF (.xdfz) or a CSV saved as .csv.gz
        inner = _gzip_head(path)
        kind = None if inner.startswith(b"XDF:") else _csv_kind(_csv_header(inner))
        return kind or "xdf"  # the XDF reader names what is wrong with anything else
    if head.startswith(b"XDF:"):
        return "xdf"
    if head.startswith(b"\xffBIOSEMI"):
        return "bdf"
    if head.startswith(b"0       "):
        return "edf"
    if not head:
        raise _not_accepted(path, "is empty")
    header = _csv_header(head)
    kind = _csv_kind(header)
    if kind:
        return kind
    if path.suffix.lower() in (".xdf", ".xdfz"):
        raise _not_accepted(path, "does not start with 'XDF:', so it is not an XDF file")
    if header and path.suffix.lower() in (".csv", ".txt"):
        shown = ", ".join(header[:6]) + (", ..." if len(header) > 6 else "")
        raise _not_accepted(
            path,
            f"is a CSV file with columns {shown}, neither muselsl's (`timestamps`, channels, "
            "`Marker`) nor Mind Monitor's (`TimeStamp`, `RAW_TP9`, ...)",
        )
    raise _not_accepted(path, "is not a recording this collector knows")


def load_recording(
    path: str | Path,
    *,
    dejitter: bool = True,
    strict: bool = True,
    stream: str | None = None,
    start_time: str | datetime | None = None,
) -> Recording:
    """Load any accepted recording as a Recording (streams + start), whatever its format.

    stream: a `--stream` value; when it is a comma-separated list of channel labels (or one
      label) that no stream is named after, a stream of just those channels is added under that
      name, so `pick_eeg_stream(recording, stream)` finds it.
    start_time: the replay's anchor choice ("file", "now", ISO-8601, a datetime, or None when
      no anchor is needed, as for `--to-lsl`); files whose own times are not Unix time warn only
      when the anchor will be taken from them ("file").
    Raises UsageError (one line) for missing, unknown, truncated or inconsistent files.
    """
    path = Path(path).expanduser()
    kind = detect_format(path)
    if kind == "xdf":
        recording = load_xdf(path, dejitter=dejitter, strict=strict)
    elif kind == "muselsl-csv":
        recording = load_muselsl_csv(path, start_time=start_time)
    elif kind == "mindmonitor-csv":
        recording = load_mindmonitor_csv(path)
    else:
        recording = load_edf(path, bdf=kind == "bdf", strict=strict)
    if stream:
        # XDF streams have names of their own that pick_eeg_stream lists; in the other formats a
        # name that is neither a stream nor a channel is an unknown label.
        recording = with_channel_selection(recording, stream, labels_only=kind != "xdf")
    return recording


def _label_key(label: str) -> str:
    text = label.strip().lower()
    return text[4:] if text.startswith("eeg ") else text


def with_channel_selection(recording: Recording, stream: str, *, labels_only: bool = False) -> Recording:
    """`recording` plus a stream named `stream` made of the channels it lists, when it lists channels.

    Unchanged when `stream` already names a stream (name, type, source_id or stream id), or when
    it is one name that is no channel label and `labels_only` is false (pick_eeg_stream then
    reports the streams there are).
    Raises UsageError naming the unknown label(s) and the channel labels there are when a list
    of labels (or, with `labels_only`, one name) holds a label no channel has.
    """
    wanted_id = stream.strip()
    if any(
        s.name == stream
        or s.type.lower() == stream.lower()
        or (s.source_id and s.source_id == wanted_id)
        or (wanted_id.isdigit() and s.stream_id == int(wanted_id))
        for s in recording.streams
    ):
        return recording  # pick_eeg_stream finds it by name, type, source_id or stream id
    wanted = [w for w in (part.strip() for part in stream.split(",")) if w]
    numeric = [s for s in recording.streams if not s.is_string and s.sample_count > 0]
    found: list[tuple[RecordedStream, int]] = []
    unknown: list[str] = []
    for label in wanted:
        hits = [
            (s, i) for s in numeric for i, lab in enumerate(s.labels) if _label_key(lab) == _label_key(label)
        ]
        if hits:
            found.append(hits[0])
        else:
            unknown.append(label)
    if unknown:
        if not (labels_only or found or len(wanted) > 1):
            return recording
        raise _unknown_labels(recording, stream, unknown, numeric)
    base = found[0][0]
    if any(
        s.sample_count != base.sample_count or not np.array_equal(s.times_s, base.times_s) for s, _ in found
    ):
        raise UsageError(
            f"--stream {stream!r}: these channels are sampled at different rates or times in "
            f"{recording.path.name}; pick channels of one rate."
        )
    data = np.column_stack([np.asarray(s.data)[:, i] for s, i in found])
    selected = RecordedStream(
        stream_id=max((s.stream_id for s in recording.streams), default=0) + 1,
        name=stream,
        type="EEG",
        source_id=f"{base.source_id}:{stream}" if base.source_id else "",
        hostname=base.hostname,
        channel_format="double64",
        sfreq=base.sfreq,
        labels=tuple(s.labels[i] for s, i in found),
        units=tuple(s.units[i] if i < len(s.units) else "" for s, i in found),
        data=data,
        times_s=base.times_s,
        segments=base.segments,
        has_footer=True,
        footer_sample_count=None,
    )
    log.info("--stream %s: replaying channels %s", stream, ", ".join(selected.labels))
    return Recording(path=recording.path, streams=(*recording.streams, selected), start=recording.start)


def _unknown_labels(
    recording: Recording, stream: str, unknown: list[str], numeric: list[RecordedStream]
) -> UsageError:
    labels = list(dict.fromkeys(lab for s in numeric for lab in s.labels))
    names = ", ".join(repr(s.name) for s in numeric)
    quoted = ", ".join(repr(u) for u in unknown)
    what = "channel labelled" if "," in stream else "stream or channel named"
    return UsageError(
        f"--stream {stream!r}: {recording.path.name} has no {what} {quoted}. "
        f"Its channels: {', '.join(labels)}; its streams: {names}. "
        "Pass channel labels from these (comma-separated) or a stream name."
    )
