"""A board driven by BrainFlow (https://brainflow.org, MIT) as an EEG source.

Kept as one piece: `BrainFlowSource` is one class whose read path (ring buffer, time repair, counter
breaks, gaps, markers, rate re-check) shares its state; splitting it would pass that state around.

BrainFlow talks to many EEG boards directly (OpenBCI Cyton/Ganglion, Muse over BLE, BrainBit,
Unicorn, ...) and has two boards without hardware: SYNTHETIC_BOARD (a generator) and
PLAYBACK_FILE_BOARD (replays a file written by `DataFilter.write_file`). Everything goes through
`brainflow.board_shim.BoardShim`; `brainflow` is imported only inside functions, so importing this
module costs nothing.

Board data: `BoardShim.get_board_data()` returns (num_rows, n_samples) float64; the rows of one
board (EEG, timestamp, marker, sample counter, ...) are given by `get_eeg_channels`,
`get_timestamp_channel`, `get_marker_channel` and `get_package_num_channel`, per preset
(BrainFlowPresets DEFAULT / AUXILIARY / ANCILLARY). EEG rows are in µV ("BrainFlow returns uV
wherever possible"); timestamps are Unix seconds (host clock, µs precision), turned into Unix ms.

Time: the stamps go through the same live clock fit as an LSL stream's (`core.time_repair.LiveRepair`,
model in `core.clock_fit`): jitter of the host stamps is smoothed by the fitted line, a step back
of the host clock is repaired or becomes a gap, never a decreasing time; the fit holds back about
0.75 s of samples (its look-ahead) until later ones or a quiet read decide them. A step longer
than `gap_threshold_s(sfreq)` (4 periods, at least 20 ms) is a Gap (last sample before, first
after). Boards with a sample counter (package_num row) also show lost packets: a skip in the
counter worth at least the same 4 periods is a Gap even when the host stamps hide it; smaller
skips are counted (`lost_samples`) and logged. A board that stops sending is not an error: after
`lost_after_s` without samples the source logs "<board> stopped sending, waiting" and keeps reading.

Markers: BrainFlow markers are floats written into the marker row of the next sample. Text marks
(`insert_marker("distracted")`) get a numeric code (1, 2, ...; 0 is reserved by BrainFlow) and the
Event carries the text back, as the user's own mark (source "mark"), at the moment the mark was
made when `insert_marker` was told it (`collector mark` starts some 300 ms before the board's next
sample); codes not given out here become their number as text ("1.0" -> "1").
A playback file's own marker row is not replayed by BrainFlow (it writes live markers there).

Logging: BrainFlow's C++ logger writes INFO lines to stderr by default. The first source opened
sends it to a file (`log_file`, default brainflow.log in platformdirs' user log folder) at
level ERROR; the reason for a failed `prepare_session` is only in that log (the exception text is
the same for every failure), so it is read back into the one-line NoSourceError.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from collector.core.channels import fill_labels
from collector.core.clock import gap_threshold_s
from collector.core.records import MARK_SOURCE, Event, Gap, SampleChunk, SourceEnded, StreamDescription
from collector.core.time_repair import IMPLAUSIBLE_JUMP_S, LiveRepair, RateMeter, rate_to_use, rate_warning
from collector.devices.brainflow.boards import (
    EXIT_HINTS,
    FILE_FIELD,
    PARAM_FLAGS,
    PARAM_WORDS,
    log_detail,
    log_size,
    preset_name,
    quiet_brainflow,
    resolve_board,
    short_name,
)
from collector.errors import NoSourceError, UsageError

log = logging.getLogger(__name__)

POLL_S = 0.02  # longest sleep between two looks at BrainFlow's ring buffer
HOLD_WAIT_S = 0.05  # how long samples held back by the time repair wait for the next ones
MAX_RING_SAMPLES = 86400 * 250  # BrainFlow's MAX_CAPTURE_SAMPLES for start_stream
LOSS_LOG_S = 60.0  # lost-packet counts are logged at most this often


def _marker_text(value: float) -> str:
    v = float(value)
    return str(int(v)) if v.is_integer() else repr(v)


class BrainFlowSource:
    """EegSource over a BrainFlow board (BoardShim). See the module docstring for time and loss.

    board: BoardIds name ("SYNTHETIC_BOARD"), short name ("synthetic", "cyton", "muse_s_athena",
        "playback_file"; case-insensitive) or id (-1, "0"). Unknown: UsageError with close matches.
    serial_port, mac_address, serial_number, ip_address, ip_port, other_params (other_info),
    file, master_board, timeout_s: BrainFlowInputParams fields; which a board needs is in
        BrainFlow's board docs. `file` goes into file / file_aux / file_anc by the preset.
    board_preset: BrainFlowPresets name (DEFAULT, AUXILIARY, ANCILLARY); the preset must carry EEG.
    config: BoardShim.config_board() commands sent after prepare_session, before start_stream
        (e.g. "old_timestamps" for PLAYBACK_FILE_BOARD keeps the file's stamps).
    buffer_s: seconds of samples BrainFlow's ring buffer holds between two reads.
    lost_after_s: seconds without samples before "board stopped sending" is logged.
    log_file: where BrainFlow's own log goes (default: the user log folder; see `quiet_brainflow`).
    """

    def __init__(
        self,
        board: str | int,
        *,
        serial_port: str | None = None,
        mac_address: str | None = None,
        serial_number: str | None = None,
        ip_address: str | None = None,
        ip_port: int | None = None,
        board_preset: str | None = None,
        other_params: str | None = None,
        file: str | Path | None = None,
        master_board: str | int | None = None,
        timeout_s: float | None = None,
        config: Sequence[str] = (),
        buffer_s: float = 600.0,
        lost_after_s: float = 3.0,
        log_file: str | Path | None = None,
    ) -> None:
        self.board_name, self.board_id = resolve_board(board)
        if self.board_name == "PLAYBACK_FILE_BOARD" and (file is None or master_board is None):
            raise UsageError(
                "BrainFlow PLAYBACK_FILE_BOARD needs the file to play (file) and the board that recorded "
                "it (master_board, e.g. SYNTHETIC_BOARD)."
            )
        self.master_name, self.master_id = (
            resolve_board(master_board) if master_board is not None else (self.board_name, self.board_id)
        )
        if timeout_s is not None and not timeout_s >= 0:
            raise UsageError(f"BrainFlow timeout must be 0 or more seconds, {timeout_s!r} is invalid.")
        self.preset_name = preset_name(board_preset)
        self.serial_port = serial_port
        self.mac_address = mac_address
        self.serial_number = serial_number
        self.ip_address = ip_address
        self.ip_port = ip_port
        self.other_params = other_params
        self.file = Path(file) if file is not None else None
        self.timeout_s = timeout_s
        self.config = tuple(config)
        self.buffer_s = buffer_s
        self.lost_after_s = lost_after_s
        self.log_file = log_file
        self.description: StreamDescription | None = None
        self.lost = False
        self.lost_samples = 0  # samples the board's counter says never arrived
        self._board: Any = None
        self._preset: Any = None
        self._eeg_rows: list[int] = []
        self._ts_row = -1
        self._marker_row: int | None = None
        self._counter_row: int | None = None
        self._counter_last: float | None = None
        self._sfreq = 0.0
        self._num_rows = 0
        self._gap_s = float("inf")
        self._repair: LiveRepair | None = None
        self._rate_meter = RateMeter()
        self._span_counts: deque[tuple[float, int, int]] = deque()  # (last stamp, samples, lost so far)
        self._rate_checked: float | None = None
        self._rate_warned = False
        self._measured: float | None = None
        self._last_ms: float | None = None
        self._last_data_mono = 0.0
        self._codes: dict[float, str] = {}
        self._code_of: dict[str, float] = {}
        self._mark_times: dict[float, deque[float | None]] = {}  # per code: when each mark was made
        self._marker_lock = threading.Lock()
        self._expected: int | None = None  # samples in a playback file (None: not a finite source)
        self._delivered = 0
        self._loss_unlogged = 0
        self._loss_logged_at: float | None = None
        self._log_path: Path | None = None

    # -- EegSource ----------------------------------------------------------------------------
    def open(self) -> StreamDescription:
        """prepare_session + config_board + start_stream (BoardShim), and describe the stream.

        Returns the StreamDescription: name "BrainFlow <BoardIds name>", type "EEG", source_id
        "brainflow:<short board name>:<serial number / MAC / port / address / file, or 'synthetic'
        / 'auto'>", channels from get_eeg_names (ch1.. when the board names none), sfreq from
        get_sampling_rate, unit microvolts, model the board's BrainFlow name (get_board_descr).
        Raises NoSourceError (one line: what happened, what to check) when BrainFlow cannot open
        the board, UsageError for a preset without EEG rows.
        """
        if self._board is not None:
            assert self.description is not None
            return self.description
        from brainflow.board_shim import BoardShim, BrainFlowInputParams, BrainFlowPresets
        from brainflow.exit_codes import BrainFlowError

        self._log_path = quiet_brainflow(self.log_file)
        self._preset = BrainFlowPresets[self.preset_name]
        self._describe_rows()
        if self.file is not None and self.board_name == "PLAYBACK_FILE_BOARD":
            if not self.file.is_file():
                raise NoSourceError(
                    f"BrainFlow playback file {str(self.file)!r} does not exist or is no file."
                )
            self._expected = self._count_file_samples()
            if self._expected == 0:  # BrainFlow would skip every line and end at once, silently
                raise UsageError(
                    f"BrainFlow playback file {str(self.file)!r} has no line in "
                    f"{self.master_name}'s layout ({self._num_rows} tab-separated values, as "
                    "DataFilter.write_file writes them); check --master-board, the board that recorded it."
                )
        params = BrainFlowInputParams()
        params.serial_port = self.serial_port or ""
        params.mac_address = self.mac_address or ""
        params.serial_number = self.serial_number or ""
        params.ip_address = self.ip_address or ""
        params.ip_port = int(self.ip_port or 0)
        params.other_info = self.other_params or ""
        params.timeout = int(math.ceil(self.timeout_s)) if self.timeout_s else 0
        if self.file is not None:
            setattr(params, FILE_FIELD[self.preset_name], str(self.file))
        if self.master_id != self.board_id:
            params.master_board = self.master_id
        since = log_size(self._log_path)
        board = None
        try:
            board = BoardShim(self.board_id, params)
            board.prepare_session()
            for command in self.config:
                board.config_board(command)
            ring = int(min(MAX_RING_SAMPLES, max(1000, self._sfreq * self.buffer_s)))
            board.start_stream(ring)
        except BrainFlowError as err:
            if board is not None:
                self._release(board)
            del board
            raise NoSourceError(self._open_failure(err, log_detail(self._log_path, since))) from None
        self._board = board
        self._repair = LiveRepair(1.0 / self._sfreq)
        self._gap_s = gap_threshold_s(self._sfreq)
        self._last_data_mono = time.monotonic()
        labels = self._labels()
        description = StreamDescription(
            name=f"BrainFlow {self.board_name}",
            type="EEG",
            source_id=f"brainflow:{short_name(self.board_name).lower()}:{self._identity()}",
            sfreq=self._sfreq,
            channels=labels,
            unit="microvolts",
            model=self._model(),
            nominal_sfreq=self._sfreq,
        )
        self.description = description
        log.info(
            "BrainFlow %s (%s): %d EEG channels (%s), %.6g Hz; BrainFlow's log: %s",
            self.board_name,
            description.source_id,
            len(labels),
            ", ".join(labels),
            self._sfreq,
            self._log_path or "off",
            extra={"event": "stream_opened"},
        )
        return description

    def read(self, timeout: float) -> SampleChunk | None:
        """Samples since the last read, waiting up to `timeout` seconds for the first of them.

        Sleeps in steps of at most POLL_S (no busy polling), then drains BrainFlow's ring buffer
        (get_board_data). data: (n_samples, n_channels) float64 µV; times_ms: (n_samples,) Unix ms.
        Returns None when nothing came within `timeout`. Raises SourceEnded after the last sample
        of a PLAYBACK_FILE_BOARD file (unless config loops it), RuntimeError before open().
        """
        if self._board is None or self._repair is None:
            raise RuntimeError("BrainFlowSource.read() before open()")
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            count = self._board.get_board_data_count(self._preset)
            if count > 0:
                break
            left = deadline - time.monotonic()
            quiet = time.monotonic() - self._last_data_mono >= HOLD_WAIT_S
            if self._repair.held and (left <= 0 or (self._repair.suspect and quiet)):
                # Nothing more came: decide about the samples held back (the clock fit's look-ahead
                # when the read's timeout passed, as an LSL source does; after a suspicious jump
                # already when the board was quiet for HOLD_WAIT_S).
                return self._chunk(np.zeros((self._num_rows, 0)), final=True)
            if self._finished():
                raise SourceEnded(f"BrainFlow playback of {self.file} ended")
            if left <= 0:
                self._on_silence()
                return None
            time.sleep(min(left, POLL_S))
        rows = self._board.get_board_data(None, self._preset)
        self._last_data_mono = time.monotonic()
        if self.lost:
            self.lost = False
            log.info("BrainFlow %s sends again; continuing", self.board_name, extra={"event": "stream_back"})
        return self._chunk(rows, final=False)

    def close(self) -> None:
        """stop_stream + release_session (BoardShim). Idempotent; errors are only logged."""
        board, self._board = self._board, None
        if board is not None:
            self._release(board)
            del board
        if self._loss_unlogged:
            self._log_loss(closing=True)

    def __enter__(self) -> BrainFlowSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- markers ------------------------------------------------------------------------------
    def insert_marker(self, value: str, time_ms: float | None = None) -> float:
        """Put `value` on the board's marker row at the next sample it sends (BoardShim.insert_marker).

        BrainFlow markers are floats: each distinct text gets a code (1.0, 2.0, ...) and the Event
        in the chunk carries the text, with source "mark" and the time `time_ms` (Unix ms: when the
        mark was made) when given and not after that sample, else the sample's time. Returns the
        code. Raises UsageError for empty text and NoSourceError when the stream is not running
        (or the preset has no marker row).
        """
        text = " ".join(str(value).split())
        if not text:
            raise UsageError("The marker text is empty; say what happened, e.g. 'distracted'.")
        if self._board is None:
            raise NoSourceError(
                f"BrainFlow {self.board_name} is not streaming, so there is no timeline to mark."
            )
        if self._marker_row is None:
            raise NoSourceError(
                f"BrainFlow {self.board_name} has no marker row in preset {self.preset_name}."
            )
        from brainflow.exit_codes import BrainFlowError

        with self._marker_lock:
            code = self._code_of.get(text)
            if code is None:
                code = float(len(self._codes) + 1)
                self._codes[code] = text
                self._code_of[text] = code
            try:
                self._board.insert_marker(code, self._preset)
            except BrainFlowError as err:
                raise NoSourceError(
                    f"BrainFlow {self.board_name} refused marker {text!r} ({err}); "
                    "is the stream still running?"
                ) from None
            self._mark_times.setdefault(code, deque()).append(time_ms)
        return code

    # -- internals ----------------------------------------------------------------------------
    def _describe_rows(self) -> None:
        from brainflow.board_shim import BoardShim
        from brainflow.exit_codes import BrainFlowError

        bid, preset = self.master_id, self._preset
        try:
            self._sfreq = float(BoardShim.get_sampling_rate(bid, preset))
            self._ts_row = int(BoardShim.get_timestamp_channel(bid, preset))
        except BrainFlowError:
            raise UsageError(
                f"BrainFlow board {self.master_name} has no preset {self.preset_name}; use DEFAULT."
            ) from None
        try:
            self._eeg_rows = list(BoardShim.get_eeg_channels(bid, preset))
        except BrainFlowError:
            self._eeg_rows = []
        if not self._eeg_rows:
            raise UsageError(
                f"BrainFlow board {self.master_name}, preset {self.preset_name}, carries no EEG channels; "
                "use the DEFAULT preset."
            )
        self._marker_row = self._optional_row(BoardShim.get_marker_channel)
        self._counter_row = self._optional_row(BoardShim.get_package_num_channel)
        self._num_rows = int(BoardShim.get_num_rows(bid, preset))

    def _optional_row(self, getter: Any) -> int | None:
        from brainflow.exit_codes import BrainFlowError

        try:
            return int(getter(self.master_id, self._preset))
        except BrainFlowError:
            return None

    def _labels(self) -> tuple[str, ...]:
        from brainflow.board_shim import BoardShim
        from brainflow.exit_codes import BrainFlowError

        try:
            names: list[str] | None = list(BoardShim.get_eeg_names(self.master_id, self._preset))
        except BrainFlowError:  # the board names no electrodes
            names = None
        return fill_labels(names, len(self._eeg_rows))

    def _model(self) -> str:
        from brainflow.board_shim import BoardShim

        try:
            return str(BoardShim.get_board_descr(self.master_id, self._preset).get("name", self.master_name))
        except Exception:  # a description without a name: the enum name will do
            return self.master_name

    def _identity(self) -> str:
        if self.serial_number:
            return self.serial_number
        if self.mac_address:
            return self.mac_address
        if self.serial_port:
            return self.serial_port
        if self.ip_address:
            return f"{self.ip_address}:{self.ip_port}" if self.ip_port else self.ip_address
        if self.file is not None:
            return self.file.name
        if self.board_name == "SYNTHETIC_BOARD":
            return "synthetic"
        return "auto"

    def _count_file_samples(self) -> int | None:
        """Lines BrainFlow will play (those with one field per row of the master board)."""
        if any(c.startswith(("loopback_true", "set_index_percentage")) for c in self.config):
            return None  # looped or seeked: no end we can count
        assert self.file is not None
        count = 0
        with self.file.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                sep = "\t" if "\t" in line else ","
                if len(line.rstrip("\r\n").split(sep)) == self._num_rows:
                    count += 1
        return count

    def _finished(self) -> bool:
        return self._expected is not None and self._delivered >= self._expected

    def _open_failure(self, err: Exception, detail: str) -> str:
        code = int(getattr(err, "exit_code", 17))
        where = self._where()
        what = f"BrainFlow could not open {self.board_name}{where}"
        if code == 13:
            param = self._missing_param(detail)
            hint = (
                f"{PARAM_FLAGS.get(param, param)} is missing or wrong; set it"
                if param
                else "a setting is missing or wrong: check --serial-port / --mac-address / --board-file"
            )
        else:
            hint = EXIT_HINTS.get(code, "see BrainFlow's log")
        says = f" BrainFlow says: {detail.rstrip('.')}." if detail else ""
        logged = f" (log: {self._log_path})" if self._log_path else ""
        return f"{what}: {hint} [exit code {code}].{says}{logged}".replace("\n", " ")

    def _where(self) -> str:
        parts = []
        if self.serial_port:
            parts.append(f"serial port {self.serial_port}")
        if self.mac_address:
            parts.append(f"MAC {self.mac_address}")
        if self.serial_number:
            parts.append(f"serial number {self.serial_number}")
        if self.ip_address:
            parts.append(f"address {self.ip_address}" + (f":{self.ip_port}" if self.ip_port else ""))
        if self.file is not None:
            parts.append(f"file {self.file}")
        return f" on {', '.join(parts)}" if parts else ""

    def _missing_param(self, detail: str) -> str:
        low = detail.lower()
        for word, param in PARAM_WORDS:
            if word in low:
                return param
        return ""

    def _release(self, board: Any) -> None:
        for step in ("stop_stream", "release_session"):
            try:
                if step == "stop_stream" or board.is_prepared():
                    getattr(board, step)()
            except Exception:  # not streaming / not prepared: nothing to undo
                log.debug("BrainFlow %s failed while closing", step, exc_info=True)

    def _on_silence(self) -> None:
        silent_s = time.monotonic() - self._last_data_mono
        if silent_s >= self.lost_after_s and not self.lost:
            self.lost = True
            log.warning(
                "BrainFlow %s stopped sending, waiting (no samples for %.1f s): check that the board is on "
                "and in range; the hole becomes a gap when it sends again",
                self.board_name,
                silent_s,
                extra={"event": "stream_lost"},
            )

    def _chunk(self, rows: np.ndarray, *, final: bool) -> SampleChunk | None:
        """Board rows (num_rows, n) -> repaired Unix-ms times, EEG data, gaps and markers."""
        assert self._repair is not None
        n = rows.shape[1]
        # Data columns fed through the repair together: EEG, then the counter and the marker.
        extra = [r for r in (self._counter_row, self._marker_row) if r is not None]
        cols = np.asarray(rows[self._eeg_rows + extra], dtype=np.float64).T.reshape(
            n, len(self._eeg_rows) + len(extra)
        )
        stamps = np.asarray(rows[self._ts_row], dtype=np.float64).reshape(n)
        times_s, cols, repaired, resets = self._repair.feed(stamps, cols, final=final)
        n_out = times_s.shape[0]
        if n_out == 0:
            return None
        n_eeg = len(self._eeg_rows)
        data = np.ascontiguousarray(cols[:, :n_eeg])
        times_ms = times_s * 1000.0
        counter = cols[:, n_eeg] if self._counter_row is not None else None
        marks = cols[:, -1] if self._marker_row is not None else None
        events: tuple[Event, ...] = ()
        if marks is not None:
            hit = np.flatnonzero(marks != 0.0)
            with self._marker_lock:
                events = tuple(self._event(float(marks[i]), float(times_ms[i])) for i in hit)
        gaps = self._gaps(times_ms, resets, counter)
        self._delivered += n_out
        return SampleChunk(
            data=data,
            times_ms=times_ms,
            gaps=gaps,
            events=events,
            repaired=tuple(repaired),
            sfreq=self._recheck_rate(times_s),
        )

    def _event(self, code: float, sample_ms: float) -> Event:
        """The Event of a marker code found on a sample at `sample_ms` (caller holds _marker_lock)."""
        text = self._codes.get(code)
        if text is None:  # the board's own marker, not one given out here
            return Event(time_ms=sample_ms, value=_marker_text(code))
        made = self._mark_times.get(code)
        made_ms = made.popleft() if made else None
        when = made_ms if made_ms is not None and made_ms <= sample_ms else sample_ms
        return Event(time_ms=when, value=text, source=MARK_SOURCE)

    def _counter_breaks(self, counter: np.ndarray | None) -> list[int]:
        """Positions i (break between i and i+1; -1: before the first) where the sample counter
        skipped at least a gap's worth of samples. Smaller skips are counted in `lost_samples`."""
        if counter is None or counter.shape[0] == 0:
            return []
        seq = counter if self._counter_last is None else np.concatenate(([self._counter_last], counter))
        offset = 0 if self._counter_last is None else 1
        self._counter_last = float(counter[-1])
        steps = np.diff(seq)
        # 0: several samples of one packet; 1: the next one; < 0: the counter wrapped (not counted).
        skipped = np.where(steps > 1, steps - 1, 0)
        total = int(skipped.sum())
        if total:
            self.lost_samples += total
            self._loss_unlogged += total
            self._log_loss()
        big = max(1, int(math.ceil(self._gap_s * self._sfreq))) if math.isfinite(self._gap_s) else 1
        return [int(i) - offset for i in np.flatnonzero(skipped >= big)]

    def _log_loss(self, *, closing: bool = False) -> None:
        now = time.monotonic()
        if closing or self._loss_logged_at is None or now - self._loss_logged_at >= LOSS_LOG_S:
            log.warning(
                "BrainFlow %s: its sample counter shows %d lost sample(s) (%d in this capture so far): "
                "a weak radio link, or a reader that fell behind",
                self.board_name,
                self._loss_unlogged,
                self.lost_samples,
            )
            self._loss_unlogged = 0
            self._loss_logged_at = now

    def _gaps(
        self, times_ms: np.ndarray, resets: Sequence[int], counter: np.ndarray | None
    ) -> tuple[Gap, ...]:
        """Steps over the gap threshold, clock resets and counter skips, as Gaps (times increase)."""
        gap_ms = self._gap_s * 1000.0
        breaks = set(self._counter_breaks(counter))
        if self._last_ms is not None and (times_ms[0] - self._last_ms > gap_ms or 0 in resets):
            breaks.add(-1)
        if times_ms.shape[0] > 1:
            breaks |= set(np.flatnonzero(np.diff(times_ms) > gap_ms).tolist())
        breaks |= {r - 1 for r in resets if r > 0}
        gaps: list[Gap] = []
        for i in sorted(breaks):
            start = self._last_ms if i < 0 else float(times_ms[i])
            if start is None:
                continue
            end = float(times_ms[i + 1])
            if end <= start:
                continue
            gaps.append(Gap(start_ms=start, end_ms=end))
            if end - start > IMPLAUSIBLE_JUMP_S * 1000.0:
                log.warning(
                    "gap in BrainFlow %s: its stamps jumped %.0f s forward (the host clock was set?); "
                    "kept as a gap",
                    self.board_name,
                    (end - start) / 1000.0,
                )
            else:
                log.info("gap in BrainFlow %s: %.0f ms", self.board_name, end - start)
        self._last_ms = float(times_ms[-1])
        return tuple(gaps)

    def _counted_rate(self) -> float | None:
        """Samples over stamped time in the last minute, when the board's counter shows none lost.

        BrainFlow stamps a sample when its reading thread takes it; a thread that stalls (a loaded
        machine) and then catches up leaves long steps followed by dense ones. RateMeter leaves the
        long steps out as gaps and would read the dense ones as a faster device; the counter proves
        that no sample is missing, so every step counts here.
        """
        if len(self._span_counts) < 2:
            return None
        (t0, _, lost0), (t1, _, lost1) = self._span_counts[0], self._span_counts[-1]
        n = sum(c for _, c, _ in list(self._span_counts)[1:])
        if lost1 != lost0 or t1 - t0 < 1.0 or n < 20:  # lost samples: RateMeter measures instead
            return None
        return round(n / (t1 - t0), 6)

    def _recheck_rate(self, times_s: np.ndarray) -> float | None:
        """The rate the stamps show over the last minute, re-checked every 10 s; warns once."""
        assert self._repair is not None
        self._rate_meter.add(times_s, self._repair.period_s)
        self._span_counts.append((float(times_s[-1]), times_s.shape[0], self.lost_samples))
        while self._span_counts and self._span_counts[0][0] < float(times_s[-1]) - 60.0:
            self._span_counts.popleft()
        if self._rate_checked is not None and float(times_s[-1]) - self._rate_checked < 10.0:
            return self._measured
        lossless = (
            self._counter_row is not None
            and len(self._span_counts) > 1
            and self._span_counts[0][2] == self._span_counts[-1][2]
        )
        # A board whose counter shows nothing lost is measured by its count (not before a second).
        measured = self._counted_rate() if lossless else self._rate_meter.rate()
        if measured is None:
            return self._measured
        self._rate_checked = float(times_s[-1])
        if rate_to_use(self._sfreq, measured) != self._sfreq and not self._rate_warned:
            self._rate_warned = True
            log.warning("%s", rate_warning(f"BrainFlow {self.board_name}", self._sfreq, measured))
        self._measured = measured
        return measured
