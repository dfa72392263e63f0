"""What the uploader does before it sends a capture whose target is not checked yet, and how it
tells the user the API stopped answering, and answers again (the Start-up rule of
docs/reference/data-flow.md).

`TargetGate` is a part of `Uploader` (collector/delivery/uploader.py), apart for size: it uses the
uploader's spool, client, condition, events, pause and back-off.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from collector.api.ids import is_uuid
from collector.api.targets import verify_target
from collector.delivery.failures import Outcome, classify
from collector.delivery.spool import Spool, SpoolItem
from collector.errors import AuthError, CollectorError, NetworkError, ServerError

if TYPE_CHECKING:
    from collector.delivery.events import EventHook


class TargetGate:
    """The deferred target check and the "does not answer" / "answers again" lines."""

    spool: Spool
    _client: Any
    _cond: threading.Condition
    _emit: EventHook
    _parked_captures: dict[str, CollectorError]
    _checked_captures: set[str]  # checked by this process, with nothing to rewrite
    _check_lock: threading.Lock
    _unreachable_since: float | None

    if TYPE_CHECKING:  # provided by Uploader

        def _wait_turn(self) -> bool: ...

        def _pause(self, err: CollectorError) -> None: ...

        def _rate_limit(self, err: CollectorError, sent_at: float | None = None) -> None: ...

        def _back_off(self, item: SpoolItem, err: CollectorError, attempt: int) -> bool: ...

    def _check_target(self, item: SpoolItem) -> SpoolItem | None:
        """The deferred target check of the item's capture (see spool/targets.py), once: the key,
        its write scope, the workspace, the block's title resolved to its id and written into
        every pending item of the capture. Returns the item as it is to be sent now, or None.

        No answer: wait and try again, as a send would. An answer that proves the target wrong:
        a key error pauses all delivery (exit 3); a missing workspace or block, or an unknown or
        ambiguous title, parks this capture's items (kept in the spool) with the error.
        """
        attempt = 0
        with self._check_lock:
            while True:
                target = self.spool.unchecked_target(item.capture_id)
                if item.capture_id in self._checked_captures:
                    return item
                if target is None:  # another worker checked it meanwhile
                    return self.spool.get(item.id)
                # Two requests (the blocks, then the write probe), two turns: the limiter keeps count
                # of what this client put in the key's window.
                if not (self._wait_turn() and self._wait_turn()):
                    return None
                workspace_id, block = target
                try:
                    found = verify_target(self._client, workspace_id, block)
                except CollectorError as err:
                    outcome = classify(err)
                    if outcome is Outcome.PAUSE or isinstance(err, AuthError):
                        self._pause(err)
                        return None
                    if outcome in (Outcome.RETRY, Outcome.THROTTLE):
                        if outcome is Outcome.THROTTLE:
                            self._rate_limit(err)
                        else:
                            self._not_answering(err)
                        attempt += 1
                        if not self._back_off(item, err, attempt):
                            return None
                        continue
                    self._park_capture(item, err)  # not found, ambiguous title
                    return None
                self._answering()
                block_id = found.id if found is not None else None
                if block is None or is_uuid(block):
                    # The items carry this target already: nothing to write (a full disk still delivers).
                    self._checked_captures.add(item.capture_id)
                    return item
                self.spool.retarget(item.capture_id, workspace_id, block_id, checked=True)
                said = (
                    f"; block {found.title!r} is {found.id}"
                    if found is not None and block != found.id
                    else ""
                )
                self._emit(
                    "target_checked",
                    message=f"The key and the target of capture {item.capture_id} are checked{said}; "
                    "delivering its items.",
                    capture_id=item.capture_id,
                    block_id=block_id,
                )

    def _park_capture(self, item: SpoolItem, err: CollectorError) -> None:
        with self._cond:
            first = item.capture_id not in self._parked_captures
            self._parked_captures[item.capture_id] = err
            self._cond.notify_all()
        if first:
            self._emit(
                "parked",
                message=f"Delivery of capture {item.capture_id} stopped: {err} Its items stay in the spool "
                f"(`collector spool retarget {item.capture_id} -w W -b B` sends them elsewhere).",
                code=getattr(err, "code", None),
            )

    def _not_answering(self, err: CollectorError) -> None:
        """No answer from the API (network, 5xx, a portal's page): said once until it answers."""
        if not isinstance(err, (NetworkError, ServerError)):
            return
        with self._cond:
            first = self._unreachable_since is None
            if first:
                self._unreachable_since = time.monotonic()
        if first:
            self._emit(
                "api_unreachable",
                message=f"The API does not answer ({err}) Capture goes on into the spool; delivery "
                "resumes by itself when it answers.",
            )

    def _answering(self) -> None:
        with self._cond:
            since, self._unreachable_since = self._unreachable_since, None
        if since is not None:
            waiting = self.spool.pending_count()
            self._emit(
                "api_answers",
                message=f"The API answers again after {time.monotonic() - since:.0f} s; "
                f"delivering the {waiting} item(s) waiting.",
                pending=waiting,
            )
