"""What the CSV readers (muselsl, Mind Monitor) share: reading the table, its dialect, and checks.

Parsed with pandas' C reader (exact float parsing, so every stamp is the exact double its text
names): pandas is already installed with muselsl, which writes these files with pandas,
and it reads an hour of 256 Hz rows in about a second where the csv module takes tens.
Separators `,`, `;` or tab, decimal commas, a truncated last line, non-numbers, rows out of time
order, missing and absurd values are handled (or refused with one line) here, and the sampling
rate is measured from the stamps (`rate_from_timestamps`), holes and packet bursts excluded.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from collector.devices.recordings.model import is_gzip
from collector.errors import UsageError

log = logging.getLogger("collector.devices.recordings.csv")

ABSURD_UV = 1e6  # 1 V: beyond any EEG amplitude; such a value is a broken sample or a unit mix-up
MIN_ROWS_FOR_RATE = 2  # two stamps a step apart are the least a rate can be measured from


def read_table(path: Path, string_columns: Any = (), optional_last: bool = False) -> Any:
    """The whole file as a DataFrame; UsageError for a file pandas cannot parse or that is cut short.

    string_columns: names, or a predicate on a name, of columns read as text (markers, dates).
    optional_last: rows may leave out the last column (Mind Monitor writes `Elements` only on
      rows that have one).
    """
    import pandas as pd

    sep, decimal = csv_dialect(path)
    with open_text(path) as handle:
        header = [c.strip() for c in handle.readline().rstrip("\r\n").split(sep)]
    keep_text = string_columns if callable(string_columns) else (lambda c: c in string_columns)
    # Exact parsing is pandas 3's default; pandas 2 needs "round_trip" (deprecated in 3).
    exact = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
    try:
        frame = pd.read_csv(
            path,
            **exact,
            dtype={c: str for c in header if keep_text(c)},
            sep=sep,
            decimal=decimal,
            skip_blank_lines=True,
            encoding="utf-8-sig",
            compression="gzip" if is_gzip(path) else "infer",
        )
    except pd.errors.EmptyDataError:
        raise UsageError(f"CSV file {path} is empty. Use a recording that holds samples.") from None
    except (EOFError, OSError) as exc:  # gzip.BadGzipFile is an OSError
        what = "is a damaged or truncated gzip file" if is_gzip(path) else "cannot be read"
        raise UsageError(f"CSV file {path} {what} ({exc}). Use the complete file.") from None
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        detail = " ".join(str(exc).split())[:160]
        raise UsageError(
            f"CSV file {path} cannot be read ({detail}). Use the file as the recorder wrote it."
        ) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    _check_last_line(path, len(frame.columns) - (1 if optional_last else 0), sep)
    return frame


def open_text(path: Path) -> Any:
    """The CSV as text (UTF-8, a BOM skipped, bad bytes replaced), through gzip when compressed."""
    if is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace")
    return open(path, encoding="utf-8-sig", errors="replace")


_DECIMAL_COMMA = re.compile(r"^-?\d+,\d+$")


def csv_dialect(path: Path) -> tuple[str, str]:
    """(field separator, decimal mark) of a CSV: `,`, `;` or tab, and `,` as the decimal mark when
    `;`/tab-separated numbers are written with a decimal comma (spreadsheets in many locales).

    The separator is csv.Sniffer's guess from the header line (the separator that splits it
    consistently); the decimal comma is seen in the first data line.
    """
    with open_text(path) as handle:
        first = handle.readline().rstrip("\r\n")
        data = handle.readline().rstrip("\r\n")
    try:
        sep = csv.Sniffer().sniff(first, delimiters=",;\t").delimiter
    except csv.Error:
        sep = ","
    decimal = "."
    if sep != "," and any(_DECIMAL_COMMA.match(field.strip()) for field in data.split(sep)):
        decimal = ","
    return sep, decimal


def _check_last_line(path: Path, n_columns: int, sep: str = ",") -> None:
    """A last line with fewer fields than the header: the writer stopped mid-row (a truncated file)."""
    if is_gzip(path):
        tail = b""
        with gzip.open(path, "rb") as stream:  # read through: a gzip stream cannot seek to its end
            while block := stream.read(1 << 20):
                tail = (tail + block)[-65536:]
    else:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 65536))
            tail = handle.read()
    lines = [line for line in tail.splitlines() if line.strip()]
    if not lines or tail.endswith(b"\n"):
        return
    fields = lines[-1].count(sep.encode()) + 1
    if fields < n_columns:
        raise UsageError(
            f"CSV file {path} is truncated: its last line has {fields} of {n_columns} fields "
            "(the recorder stopped mid-row). Use the complete file, or delete the partial last line."
        )


def numeric_column(frame: Any, column: str, path: Path) -> np.ndarray:
    import pandas as pd

    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(frame[column].notna().to_numpy() & np.isnan(values))
    if bad.size:
        row = int(bad[0])
        raise UsageError(
            f"CSV file {path}: column {column!r} holds {frame[column].iloc[row]!r} at row {row + 1}, "
            "not a number. Use the file as the recorder wrote it."
        )
    return values


# Backward steps up to this are stamp jitter (muselsl's packets step back by 1-30 ms), not damage.
JITTER_BACK_S = 0.05


def check_times(times: np.ndarray, path: Path, what: str) -> None:
    missing = np.flatnonzero(~np.isfinite(times))
    if missing.size:
        raise UsageError(
            f"CSV file {path}: data row {int(missing[0]) + 1} has no {what}. "
            "Use the file as the recorder wrote it (a cut or edited file loses rows' times)."
        )
    steps = np.diff(times)
    back = np.flatnonzero(steps < 0)
    moving = int(np.count_nonzero(steps))
    # A few backward steps (swapped or stray stamps, a clock set back) are repaired by the replay;
    # a quarter or more is a file whose rows are not in time order at all.
    if back.size and back.size * 4 >= moving:
        reverse = back.size == moving and _regular(-steps[steps != 0])
        raise UsageError(
            f"CSV file {path}: the {what}s run backwards at {back.size} of {steps.size} steps "
            + (
                "(every row is one step earlier: the rows are in reverse order, "
                if reverse
                else "(the rows are out of time order: sorted or shuffled, or the clock was broken, "
            )
            + "so nothing can be replayed reliably). Sort the rows by time, oldest first, and replay again."
        )
    if back.size:
        i = int(back[0]) + 1
        largest = float(-steps[back].min())
        # Packet stamps jitter (muselsl stamps each 12-sample packet on arrival): steps back by a few
        # milliseconds are the sender's clock, not damage; the replay's clock fit puts each sample
        # on the stream's fitted clock and repairs (and counts) only stamps off it.
        jitter = largest <= JITTER_BACK_S
        log.log(
            logging.INFO if jitter else logging.WARNING,
            "%s: %ss go backwards at data row %d (%.3f then %.3f; %d place(s) in all, by up to %.0f ms): "
            "rows kept in file order; %s",
            path.name,
            what,
            i + 1,
            times[i - 1],
            times[i],
            back.size,
            largest * 1000,
            "that is the sender's stamp jitter: each sample is put on the stream's fitted clock"
            if jitter
            else "the replay puts each sample on the stream's fitted clock and says how many stamps "
            "off it were repaired",
        )


def warn_values(data: np.ndarray, path: Path, *, missing_rows_logged: bool = False) -> None:
    """Say how many values are missing (empty, NaN, ±inf: delivered as null) and how many are
    finite but beyond ±ABSURD_UV (kept as they are; the quality flags mark their windows
    `excessive_amplitude`). data: (n_samples, n_channels), µV."""
    missing = int(np.count_nonzero(~np.isfinite(data)))
    if missing and not missing_rows_logged:
        log.warning(
            "%s: %d missing channel value(s) (empty, NaN or ±inf) kept as missing samples (null)",
            path.name,
            missing,
        )
    with np.errstate(invalid="ignore"):
        absurd = int(np.count_nonzero(np.isfinite(data) & (np.abs(data) > ABSURD_UV)))
    if absurd:
        log.warning(
            "%s: %d channel value(s) beyond ±%g µV (1 V; no EEG is that large) kept as they are; "
            "the windows holding them are flagged excessive_amplitude",
            path.name,
            absurd,
            ABSURD_UV,
        )


def check_rows(n: int, path: Path) -> None:
    if n < MIN_ROWS_FOR_RATE:
        raise UsageError(
            f"CSV file {path} has {_count(n, 'sample row')}: at least {MIN_ROWS_FOR_RATE} are "
            "needed to measure the sampling rate from the timestamps. Use a longer recording."
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _regular(steps: np.ndarray) -> bool:
    """True when the steps are one period apart (within half a period; packet bursts included)."""
    if steps.size == 0:
        return False
    median = float(np.median(steps))
    return median > 0 and float(np.percentile(np.abs(steps - median), 90)) <= 0.5 * median


STANDARD_RATES_HZ = (100.0, 125.0, 128.0, 200.0, 250.0, 256.0, 500.0, 512.0, 1000.0, 1024.0, 2000.0, 2048.0)
SNAP_TOLERANCE = 0.005  # a measured rate within 0.5 % of a standard rate is that rate
MIN_BREAK_S = 0.25  # shorter pauses are delivery bursts (BLE packets), not lost samples


def regular_segments(times_s: np.ndarray, break_s: float) -> tuple[tuple[int, int], ...]:
    """Inclusive index ranges split where consecutive stamps are more than `break_s` apart, or
    where time goes back by more than `break_s` (a clock set back: its own stretch)."""
    n = int(times_s.shape[0])
    if n == 0:
        return ()
    steps = np.diff(times_s)
    breaks = np.flatnonzero((steps > break_s) | (steps < -break_s))
    starts = [0, *(int(b) + 1 for b in breaks)]
    ends = [*(int(b) for b in breaks), n - 1]
    return tuple(zip(starts, ends, strict=True))


def rate_from_timestamps(
    times_s: np.ndarray, break_s: float | None = None
) -> tuple[float, float, tuple[tuple[int, int], ...]]:
    """(rate used, rate measured, segments) from sample stamps, holes excluded.

    The measured rate is samples over time inside the stretches without a hole (steps longer
    than `break_s`, by default 4 typical steps and at least MIN_BREAK_S, so that stamps given per
    BLE packet do not count as holes), never over the total span including holes; a rate within
    0.5 % of a standard EEG rate (256, 250, 500 Hz, ...) is taken as that rate.
    Shapes: times_s (n,), seconds.
    """
    n = int(times_s.shape[0])
    if n < 2:
        return 0.0, 0.0, ((0, n - 1),) if n else ()
    if break_s is None:
        steps = np.diff(times_s)
        positive = steps[steps > 0]
        typical = float(np.median(positive)) if positive.size else 0.0
        break_s = max(4.0 * typical, MIN_BREAK_S)
    segments = regular_segments(times_s, break_s)
    counted = sum(b - a for a, b in segments)
    covered = sum(float(times_s[b] - times_s[a]) for a, b in segments)
    if counted <= 0 or covered <= 0:
        return 0.0, 0.0, segments
    measured = counted / covered
    for rate in STANDARD_RATES_HZ:
        if abs(measured - rate) <= SNAP_TOLERANCE * rate:
            return rate, measured, segments
    return measured, measured, segments
