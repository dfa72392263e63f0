"""`collector doctor`'s BrainFlow line: the library loads, its version has the Muse S Athena's µV
scale (>= 5.23), and its SYNTHETIC_BOARD opens and streams (no hardware needed)."""

from __future__ import annotations

import time

from collector.commands._doctor_checks import OK, WARN, Check

FIX_BRAINFLOW = "`pip install -U 'brainflow>=5.23'` (needed for --device brainflow only)."


def check_brainflow() -> Check:
    try:
        from importlib.metadata import version

        from brainflow.board_shim import BoardShim, BrainFlowInputParams

        from collector.devices.brainflow.boards import describe_boards, quiet_brainflow
    except ImportError as exc:
        return Check(
            "brainflow", WARN, f"BrainFlow does not load ({exc}): no --device brainflow", FIX_BRAINFLOW
        )
    found = version("brainflow")
    boards = len(describe_boards())
    try:
        major, minor = (int(p) for p in found.split(".")[:2])
    except ValueError:
        major, minor = 0, 0
    quiet_brainflow()
    board = BoardShim(-1, BrainFlowInputParams())
    try:
        board.prepare_session()
        board.start_stream(1000)
        time.sleep(0.1)
        count = board.get_board_data_count()
        board.stop_stream()
    except Exception as exc:  # BrainFlow's library loads but cannot run a board here
        return Check(
            "brainflow", WARN, f"BrainFlow {found} cannot run its synthetic board ({exc})", FIX_BRAINFLOW
        )
    finally:
        try:
            board.release_session()
        except Exception:  # not prepared: nothing to release
            pass
        del board
    detail = (
        f"BrainFlow {found}: {boards} boards (`collector devices` lists them); "
        f"its synthetic board sent {count} samples"
    )
    if (major, minor) < (5, 23):
        return Check(
            "brainflow",
            WARN,
            detail + "; its Muse S Athena EEG is 4.55x too large (corrected, with a warning)",
            FIX_BRAINFLOW,
        )
    return Check("brainflow", OK, detail)
