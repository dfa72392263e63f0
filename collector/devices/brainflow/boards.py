"""BrainFlow's boards by name or id, its presets, its exit codes as one-line hints, and its logger.

What `collector devices` lists and what `--board NAME|ID` accepts; `brainflow` is imported only
inside functions, so importing this module costs nothing.
"""

from __future__ import annotations

import difflib
import logging
import threading
from pathlib import Path
from typing import Any

from collector.errors import NoSourceError, UsageError

log = logging.getLogger(__name__)


_PRESETS = {
    "DEFAULT": "DEFAULT_PRESET",
    "AUXILIARY": "AUXILIARY_PRESET",
    "AUX": "AUXILIARY_PRESET",
    "ANCILLARY": "ANCILLARY_PRESET",
    "ANC": "ANCILLARY_PRESET",
}
FILE_FIELD = {"DEFAULT_PRESET": "file", "AUXILIARY_PRESET": "file_aux", "ANCILLARY_PRESET": "file_anc"}

# One line per BrainFlowExitCodes value: what happened, and what to check.
EXIT_HINTS = {
    1: "the port is already open (another program or collector uses it); close it and retry",
    2: "the port could not be opened: check the serial port / dongle / Bluetooth adapter (present, "
    "switched on, and yours to open: on Linux the dialout group for serial ports)",
    3: "serial port error: check the port name and that the dongle is plugged in",
    4: "could not send to the board: check the network address / connection and that the board is on",
    5: "the board sent something unexpected: power-cycle it and retry",
    6: "the board did not answer as expected at start: power-cycle it and check the port",
    7: "the board did not answer: is the board on and in range (and not connected to another app)?",
    8: "the stream is already running in this process",
    9: "invalid buffer size",
    10: "BrainFlow could not start its reading thread",
    11: "BrainFlow's reading thread is not running",
    12: "no data arrived from the board: is it on and in range?",
    14: "this board is not supported by the installed BrainFlow (pip install -U brainflow)",
    15: "the board session was not created",
    16: "another session with this board is open in this process",
    17: "the board reported an error: power-cycle it and retry",
    18: "timed out waiting for the board: is it on and in range?",
}
# Words in BrainFlow's INVALID_ARGUMENTS log line -> our parameter that supplies the value.
PARAM_WORDS = (
    ("serial port", "serial_port"),
    ("serial_port", "serial_port"),
    ("mac", "mac_address"),
    ("ip address", "ip_address"),
    ("ip_address", "ip_address"),
    ("ip port", "ip_port"),
    ("file", "file"),
    ("master board", "master_board"),
    ("other_info", "other_params"),
    ("other info", "other_params"),
    ("serial number", "serial_number"),
    ("serial_number", "serial_number"),
    ("timeout", "timeout_s"),
)
# Our parameter -> the `run`/`fit` option that sets it (the others only come from a profile's [device]).
PARAM_FLAGS = {
    "serial_port": "--serial-port",
    "mac_address": "--mac-address",
    "serial_number": "--serial-number",
    "file": "--board-file",
    "master_board": "--master-board",
}


# -- boards -------------------------------------------------------------------------------------


def _board_ids() -> Any:
    try:
        from brainflow.board_shim import BoardIds
    except ImportError:  # a broken install: say how to mend it rather than print a traceback
        raise NoSourceError(
            "BrainFlow is not installed in this Python; install it with `pip install 'brainflow>=5.23'`."
        ) from None
    return BoardIds


def _key(text: str) -> str:
    return "_".join(text.strip().upper().replace("-", " ").replace("_", " ").split())


def short_name(name: str) -> str:
    """SYNTHETIC_BOARD -> SYNTHETIC, NEUROPAWN_KNIGHT_BOARD_IMU -> NEUROPAWN_KNIGHT_IMU."""
    return name.replace("_BOARD", "")


def describe_boards() -> list[tuple[str, int]]:
    """Every board the installed BrainFlow supports: (BoardIds name, id), sorted by id.

    From `brainflow.board_shim.BoardIds`, without NO_BOARD. Any name here, its short form without
    "_BOARD" (case-insensitive, "-" or " " for "_") or its id is a valid `board` for BrainFlowSource.
    """
    return sorted(((b.name, int(b.value)) for b in _board_ids() if b.name != "NO_BOARD"), key=lambda x: x[1])


def resolve_board(board: str | int) -> tuple[str, int]:
    """`board` as given (name, short name or id, as int or text) -> (BoardIds name, id).

    Raises UsageError naming the closest board names when there is no such board.
    """
    boards = describe_boards()
    by_id = {i: name for name, i in boards}
    text = str(board).strip()
    try:
        number = int(text)
    except ValueError:
        number = None
    if number is not None:
        if number in by_id:
            return by_id[number], number
        raise UsageError(
            f"BrainFlow has no board with id {number}; `collector devices` lists the boards and their ids."
        )
    keys: dict[str, tuple[str, int]] = {}
    for name, i in boards:
        keys[name] = (name, i)
        keys.setdefault(short_name(name), (name, i))
    wanted = _key(text)
    if wanted in keys:
        return keys[wanted]
    if f"{wanted}_BOARD" in keys:
        return keys[f"{wanted}_BOARD"]
    shorts = [short_name(name).lower() for name, _ in boards]
    close = difflib.get_close_matches(short_name(wanted).lower(), shorts, n=3, cutoff=0.6)
    hint = f"Did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise UsageError(
        f"BrainFlow has no board named {text!r}. {hint}"
        "`collector devices` lists the boards BrainFlow supports."
    )


def preset_name(preset: str | None) -> str:
    if preset is None or not str(preset).strip():
        return "DEFAULT_PRESET"
    key = _key(str(preset))
    if key in _PRESETS.values():
        return key
    if key in _PRESETS:
        return _PRESETS[key]
    raise UsageError(
        f"BrainFlow preset {preset!r} is not known: use DEFAULT, AUXILIARY or ANCILLARY "
        "(BrainFlowPresets; most boards have only DEFAULT)."
    )


# -- logging ------------------------------------------------------------------------------------

_log_lock = threading.Lock()
_log_path: Path | None = None


def default_log_file() -> Path:
    from platformdirs import user_log_path

    return user_log_path("openlesson-collector", appauthor=False) / "brainflow.log"


def quiet_brainflow(log_file: str | Path | None = None) -> Path | None:
    """Send BrainFlow's board logger to `log_file` at level ERROR (never the terminal).

    Process-wide (BoardShim.set_log_file / set_log_level). Returns the log file, or None when it
    cannot be written (the logger is then switched off).
    """
    global _log_path
    from brainflow.board_shim import BoardShim, LogLevels

    path = Path(log_file) if log_file else default_log_file()
    with _log_lock:
        if _log_path == path:
            return path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            BoardShim.set_log_file(str(path))
            BoardShim.set_log_level(LogLevels.LEVEL_ERROR.value)
            _log_path = path
        except Exception as exc:  # unwritable folder, or BrainFlow refused the file
            log.debug("BrainFlow log file %s not usable (%s); BrainFlow's logger is off", path, exc)
            BoardShim.disable_board_logger()
            _log_path = None
        return _log_path


def log_size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path else 0
    except OSError:
        return 0


def log_detail(path: Path | None, since: int) -> str:
    """The last line BrainFlow logged after byte `since`, without spdlog's prefix ("" if none)."""
    if path is None:
        return ""
    try:
        with path.open("rb") as f:
            f.seek(since)
            text = f.read(64_000).decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1]
    while line.startswith("["):  # "[2026-01-01 10:00:00.000] [board_logger] [error] message"
        end = line.find("]")
        if end < 0:
            break
        line = line[end + 1 :].lstrip()
    return line[:200]


# -- the source ---------------------------------------------------------------------------------
