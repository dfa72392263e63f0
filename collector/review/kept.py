"""What of a capture this machine can no longer read back, and where in time it was.

`collector review` and `collector export` read a capture from the local record (and the spool).
A delivered item's local copy may be gone (evicted, oldest first, to make room in the spool, or
pruned after `retention_days`) or damaged (its kept bytes no longer decompress or parse). They
then work from the rest, say so in one warning line, and mark where the missing EEG was: shaded
on the review page, a `BAD_NOT_KEPT` annotation in EDF+ (MNE skips every `BAD_*` annotation).
The spool's index still knows each delivered chunk's start and sample count, so the missing
spans and samples are known even when the bytes are gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from collector.core.summary import STREAM_ID as SUMMARY_STREAM_ID

NOT_KEPT_LABEL = "BAD_NOT_KEPT"


@dataclass
class Missing:
    """EEG chunks and screenshots of one capture that cannot be read here. Times are Unix ms."""

    eeg_chunks: int = 0  # EEG chunks not readable here (copy gone or damaged)
    eeg_total: int = 0  # EEG chunks the capture spooled (session summary aside)
    samples: int = 0  # samples those chunks held, from their delivery records
    damaged: int = 0  # items (any type) whose kept copy is unreadable
    screenshots: int = 0  # screenshots whose copy is gone or damaged
    spans_ms: list[tuple[float, float]] = field(default_factory=list)  # EEG time not readable

    @property
    def any(self) -> bool:
        return bool(self.eeg_chunks or self.screenshots)

    def describe(self, capture_id: str) -> str:
        """One sentence: how much is missing, when, and why (no leading 'warning')."""
        parts = []
        if self.eeg_chunks:
            when = ", ".join(f"{_hms(a)}–{_hms(b)}" for a, b in self.spans_ms[:3])
            when += ", …" if len(self.spans_ms) > 3 else ""
            parts.append(
                f"{self.eeg_chunks} of {self.eeg_total} EEG chunks ({self.samples:,} samples"
                + (f", {when}" if when else "")
                + ")"
            )
        if self.screenshots:
            parts.append(f"{self.screenshots} screenshot(s)")
        why = "evicted to make room in the spool or pruned after retention_days"
        if self.damaged:
            why += f"; {self.damaged} kept cop{'y is' if self.damaged == 1 else 'ies are'} damaged"
        return (
            f"part of capture {capture_id} is no longer on this machine: {' and '.join(parts)} ({why}). "
            "What was delivered is on the server; this covers the rest only"
        )


def _hms(unix_ms: float) -> str:
    return datetime.fromtimestamp(unix_ms / 1000).strftime("%H:%M:%S")


def find_missing(
    spool,
    capture_id: str,
    damaged: set[tuple[str, int]],
    sfreq: float | None,
    stream_id: str | None = None,
) -> Missing:
    """The capture's unreadable items: delivered ones with no local copy, plus `damaged`
    ((stream_id, chunk_index) of copies that could not be read). EEG only of `stream_id` when
    given. A missing EEG chunk spans from its first sample to the next chunk's first sample
    (the last one: its sample count / `sfreq`)."""
    missing = Missing(damaged=len(damaged))
    streams: dict[str, list] = {}
    for row in spool.record.item_rows(capture_id):
        lost = (row.state == "delivered" and not row.kept) or (row.stream_id, row.chunk_index) in damaged
        if row.type == "eeg" and row.stream_id != SUMMARY_STREAM_ID:
            if stream_id is None or row.stream_id == stream_id:
                streams.setdefault(row.stream_id, []).append((row, lost))
        elif row.type == "screen" and lost:
            missing.screenshots += 1
    for rows in streams.values():
        missing.eeg_total += len(rows)
        for i, (row, lost) in enumerate(rows):
            if not lost:
                continue
            missing.eeg_chunks += 1
            missing.samples += row.sample_count
            if row.timestamp_ms is None:
                continue
            start = float(row.timestamp_ms)
            nxt = rows[i + 1][0].timestamp_ms if i + 1 < len(rows) else None
            own = row.sample_count / sfreq * 1000 if sfreq else 0.0
            end = float(nxt) if nxt is not None else start + own
            if missing.spans_ms and abs(missing.spans_ms[-1][1] - start) < 1.0:
                missing.spans_ms[-1] = (missing.spans_ms[-1][0], end)  # one span for a run of chunks
            else:
                missing.spans_ms.append((start, end))
    missing.spans_ms.sort()
    return missing
