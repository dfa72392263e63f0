"""How the uploader reports what it does: its events, to the caller's hook or to the log, and the
rate it publishes in the spool for `collector status` (another process).

Events, `on_event(event, **fields)`, called from worker threads (the hook must not block; one that
raises is ignored): once per cause `paused`, `parked` (with a one-line `message` for the user) and
`worker_error` (`error`); per occurrence `failed` (`message`, `code`) and `rate_limited` (`error`,
`wait_s`); with `verbose` also per request `delivered` (`evidence_id`) and `retrying` (`error`,
`attempt`, `delay_s`). An event about one item also carries its `item_id`, `capture_id`,
`stream_id` and `chunk_index`. Without a hook (or for a routine event without `verbose`), notable
events go to the log as warnings and routine ones at debug level.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from collector.delivery.spool import Spool, SpoolItem
from collector.errors import SpoolError

log = logging.getLogger("collector.delivery.uploader")

ROUTINE_EVENTS = frozenset({"delivered", "retrying"})  # one per request: hook only with verbose
DELIVERY_RATE_KEY = "delivery_rate"  # spool meta: the delivering process's current rate (JSON)
RATE_SAVE_EVERY_S = 10.0  # how fresh the rate `collector status` shows is, while delivering


class EventHook:
    """Calls `on_event` for each event (see the module docstring), or logs it."""

    def __init__(self, on_event: Callable[..., None] | None, verbose: bool = False) -> None:
        self._on_event = on_event
        self._verbose = verbose

    def __call__(self, event: str, *, item: SpoolItem | None = None, **fields: Any) -> None:
        if item is not None:
            fields = {"item_id": item.id, "capture_id": item.capture_id, "stream_id": item.stream_id,
                      "chunk_index": item.chunk_index, **fields}  # fmt: skip
        routine = event in ROUTINE_EVENTS
        if self._on_event is None or (routine and not self._verbose):
            text = fields.get("message") or fields.get("error") or ""
            if not text and item is not None:  # e.g. `delivered` at -v: say which chunk
                text = f"chunk {item.chunk_index} of {item.stream_id}" + (
                    f" (evidence {fields['evidence_id']})" if fields.get("evidence_id") else ""
                )
            log.log(logging.DEBUG if routine else logging.WARNING, "%s: %s", event, text)
            return
        try:
            self._on_event(event, **fields)
        except Exception:  # a broken status view must not stop delivery
            log.debug("on_event hook failed for %s", event, exc_info=True)


class PublishedRate:
    """The delivering process's current rate in the spool's meta (`DELIVERY_RATE_KEY`, JSON)."""

    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self._saved_at = 0.0  # monotonic time the rate was last written

    def due(self) -> bool:
        """True when the figure written is older than `RATE_SAVE_EVERY_S`."""
        return time.monotonic() - self._saved_at > RATE_SAVE_EVERY_S

    def save(self, rate_per_min: float | None, ceiling_per_min: float | None = None) -> None:
        """Write the rate (None: nobody delivers any more, the figure is removed)."""
        self._saved_at = time.monotonic()
        value = None
        if rate_per_min is not None:
            value = json.dumps({
                "rate_per_min": round(rate_per_min, 1),
                "ceiling_per_min": rate_per_min if ceiling_per_min is None else ceiling_per_min,
                "updated_unix": round(time.time(), 1),
            })  # fmt: skip
        try:
            self._spool.set_meta(DELIVERY_RATE_KEY, value)
        except SpoolError as err:  # the figure is informative only: never stop delivery for it
            log.debug("could not save the delivery rate: %s", err)
