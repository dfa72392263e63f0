"""The background uploader: drains the spool oldest-first into the API, politely and in order.

    spool (pending, oldest first) --claim--> worker --limiter--> client.upload_evidence --> 201
                                                                                   |  mark_delivered
                                             retry (backoff, full jitter) <--------+  429/5xx/network
                                             failed / pause / park     <-----------+  permanent errors

- Workers: a few threads share one token-bucket limiter (default 100/min under the key's 120/min)
  whose share of the key's window adapts to the server (collector/delivery/rate.py: after a 429 the
  share drops and the client waits out its own window before sending again, CUBIC growth back to
  the ceiling, so collectors sharing a key converge to a fair share).
  A worker claims the oldest pending item whose stream (capture_id, stream_id) has
  nothing in flight, and keeps that stream until the item is settled: at most one request in
  flight per stream, so chunk_index order per stream is kept.
- What a failed send means (collector/delivery/failures.py): transient errors are retried
  without end (backoff with full jitter, or Retry-After); a 429 holds the whole queue; auth errors
  pause all delivery; not-found parks a workspace / block; validation_error keeps the item as
  `failed`. Nothing is ever deleted. The user is told once per cause, through `on_event` (or the
  log when there is no hook).
- The API key lives in ApiSettings inside the client only; nothing here prints or stores it.
"""

from __future__ import annotations

import base64
import collections
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from collector.api.client import OpenLessonClient
from collector.api.models import EvidenceCreate
from collector.api.settings import ApiSettings
from collector.delivery import failures
from collector.delivery.events import EventHook, PublishedRate
from collector.delivery.failures import Outcome, classify, park_target, retry_after_s, retry_delay_s
from collector.delivery.gate import TargetGate
from collector.delivery.rate import AdaptiveRateLimiter, TokenBucket, throttle_hold_s
from collector.delivery.spool import DeliveryBusyError, Spool, SpoolItem
from collector.errors import CollectorError, SpoolError, SpoolFullError

log = logging.getLogger("collector.delivery.uploader")

DEFAULT_RATE_PER_MIN = 100.0  # the key allows 120/min; leave room for other tools using it
DEFAULT_WORKERS = 4  # streams served in parallel; EEG never waits behind a slow screenshot
_POLL_S = 0.5  # one worker looks this often for items another process added (and for disk space)
STOP_GRACE_S = 1.0  # a request on the wire when delivery stops may settle this long (avoids a duplicate)


class EvidenceClient(Protocol):
    def upload_evidence(self, workspace_id: str, evidence: EvidenceCreate) -> Any: ...  # `.id`

    def close(self) -> None: ...


class Uploader(TargetGate):
    """Delivers the spool's pending items in the background. `start()`, then `stop(flush_timeout_s)`.

    `on_event(event, **fields)` is told what happens (collector/delivery/events.py: once per cause
    `paused`, `parked`, `worker_error`; per occurrence `failed`, `rate_limited`; with
    `verbose_events=True` per request `delivered`, `retrying`). Without a hook, the log is.
    """

    def __init__(
        self,
        spool: Spool,
        settings: ApiSettings | None,
        *,
        rate_per_min: float = DEFAULT_RATE_PER_MIN,
        burst: int | None = None,
        workers: int = DEFAULT_WORKERS,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 60.0,
        client_factory: Callable[[ApiSettings], EvidenceClient] | None = None,
        limiter: TokenBucket | AdaptiveRateLimiter | None = None,
        on_event: Callable[..., None] | None = None,
        verbose_events: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        if settings is None and client_factory is None:
            raise ValueError("Uploader needs ApiSettings (or a client_factory in tests)")
        if workers < 1:
            raise ValueError(f"workers must be >= 1; {workers!r} is invalid.")
        self.spool = spool
        self._settings = settings
        self._client_factory: Callable[[ApiSettings], EvidenceClient] = client_factory or OpenLessonClient
        if limiter is None:
            # A bucket as big as the steady rate allows would burst past a sliding-window limit.
            limiter = AdaptiveRateLimiter(rate_per_min, burst=burst, on_change=self._save_rate)
        self.limiter = limiter
        self._published_rate = PublishedRate(spool)  # what `collector status` shows
        self._workers_n = workers
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._emit = EventHook(on_event, verbose_events)
        self._rng = rng or random.Random()

        self._cond = threading.Condition()
        self._stop = threading.Event()  # set: workers take nothing new and leave their waits
        self._threads: list[threading.Thread] = []
        self._client: EvidenceClient | None = None
        self._started = False
        self._stopped = False
        # Guarded by _cond:
        self._in_flight: set[tuple[str, str]] = set()
        self._hold_until = 0.0  # monotonic; a 429 holds the whole queue until then
        self._retry_until = 0.0  # monotonic; the latest end of a retry's backoff (for the time left)
        self._consecutive_429 = 0
        self._paused: CollectorError | None = None
        self._paused_for_space = False  # paused by a full disk with 201s held: resumes when space returns
        self._parked_workspaces: dict[str, str] = {}  # workspace_id -> message
        self._parked_blocks: dict[str, str] = {}  # block_id -> message
        self._parked_captures: dict[str, CollectorError] = {}  # capture_id -> its target's error
        self._checked_captures: set[str] = set()
        self._check_lock = threading.Lock()  # one target check at a time (targets.py)
        self._unreachable_since: float | None = None  # monotonic: the API stopped answering then
        self._delivered = 0
        self._failed = 0
        self._retries = 0
        self._rate_limited = 0
        self._last_error: str | None = None
        self._sent_times: collections.deque[float] = collections.deque()
        self._backlog_up_to = 0  # items waiting when we started (earlier captures) go before new ones

    # ---- lifetime --------------------------------------------------------------------------------

    def start(self) -> None:
        """Take the spool's delivery lock, create the client and start the workers."""
        if self._started:
            raise RuntimeError("an Uploader can be started once")
        if not self.spool.try_lock_delivery():
            raise DeliveryBusyError(
                f"Another collector process is already delivering from the spool at {self.spool.root}; "
                "let it finish (see `collector status`) or stop it first."
            )
        try:
            self._client = self._client_factory(self._settings)  # type: ignore[arg-type]
        except BaseException:
            self.spool.unlock_delivery()
            raise
        self._started = True
        self._backlog_up_to = self.spool.max_pending_id()
        self.spool.add_listener(self.notify)
        for i in range(self._workers_n):
            t = threading.Thread(target=self._worker, args=(i == 0,), name=f"uploader-{i}", daemon=True)
            self._threads.append(t)
            t.start()

    def notify(self) -> None:
        """Wake the workers: something was added to the spool."""
        with self._cond:
            self._cond.notify_all()

    def wait_idle(self, timeout_s: float | None = None, abort: threading.Event | None = None) -> bool:
        """Wait until nothing more can be sent now (spool drained, or paused/parked); False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if self.idle():
                return True
            if abort is not None and abort.is_set():
                return False
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            with self._cond:
                self._cond.wait(0.1 if remaining is None else min(0.1, remaining))

    def idle(self) -> bool:
        with self._cond:
            if self._paused is not None or self._stop.is_set():
                return True
            if self._in_flight:
                return False
            return self._claimable() is None

    def stop(
        self,
        flush_timeout_s: float = 30.0,
        abort: threading.Event | None = None,
        *,
        grace_s: float | None = None,
    ) -> int:
        """Flush for at most `flush_timeout_s` (0: stop at once), stop, return the pending count.

        A request still on the wire then gets `grace_s` (default `STOP_GRACE_S`; none when
        stopping at once) to settle, so the whole stop holds its deadline within that.
        Setting `abort` (a second Ctrl-C) during the flush stops at once. Nothing spooled is lost:
        an item whose request was still in flight stays pending and is re-sent next time (its
        duplicate, if the server had stored it, carries the same identity).
        """
        if self._started and not self._stopped:
            if flush_timeout_s > 0:
                self.wait_idle(flush_timeout_s, abort=abort)
            at_once = (flush_timeout_s <= 0 and grace_s is None) or (abort is not None and abort.is_set())
            self._stopped = True
            self._stop.set()
            with self._cond:
                self._cond.notify_all()
            # A request already on the wire gets a short grace to settle (avoids a duplicate later).
            grace = 0.0 if at_once else STOP_GRACE_S if grace_s is None else grace_s
            grace_until = time.monotonic() + grace
            for t in self._threads:
                t.join(max(0.05, grace_until - time.monotonic()))
            self.spool.remove_listener(self.notify)
            self._save_rate(None)  # nobody delivers from this spool any more
            if self._client is not None and not any(t.is_alive() for t in self._threads):
                self._client.close()  # else a daemon worker still uses it; the process exit ends it
            self.spool.unlock_delivery()
        return self.spool.pending_count()

    def stop_now(self) -> int:
        """Stop without flushing (the spool keeps everything); returns the pending count."""
        return self.stop(0.0)

    def resume(self) -> None:
        """Clear a pause and parked workspaces/blocks (e.g. after the user fixed the key)."""
        with self._cond:
            self._paused = None
            self._parked_workspaces.clear()
            self._parked_blocks.clear()
            self._cond.notify_all()

    def __enter__(self) -> Uploader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what the status view and the commands read ----------------------------------------------

    @property
    def paused_error(self) -> CollectorError | None:
        """The error that paused all delivery (an AuthError), if any."""
        return self._paused

    @property
    def parked_errors(self) -> list[str]:
        """One message per parked workspace / block (not found), in the order they happened."""
        with self._cond:
            captures = [str(e) for e in self._parked_captures.values()]
            return list(self._parked_workspaces.values()) + list(self._parked_blocks.values()) + captures

    def target_error(self, capture_id: str) -> CollectorError | None:
        """The error that proved this capture's target wrong at its deferred check, if any."""
        with self._cond:
            return self._parked_captures.get(capture_id)

    def api_not_answering(self, since: float | None = None) -> None:
        """The caller saw the API not answer (the start-up check) and said so: the uploader says
        nothing more until it answers, then one line ("answers again")."""
        with self._cond:
            if self._unreachable_since is None:
                self._unreachable_since = time.monotonic() if since is None else since

    def counters(self) -> dict[str, Any]:
        """Snapshot for a live status view."""
        now = time.monotonic()
        with self._cond:
            while self._sent_times and now - self._sent_times[0] > 60.0:
                self._sent_times.popleft()
            paused = str(self._paused) if self._paused is not None else None
            if paused is None and self._hold_until > now:
                paused = f"rate limited by the server, resuming in {self._hold_until - now:.0f} s"
            parked = list(self._parked_workspaces.values()) + list(self._parked_blocks.values())
            parked += [str(e) for e in self._parked_captures.values()]
            snap = {
                "delivered": self._delivered,
                "failed": self._failed,
                "retries": self._retries,
                "rate_limited": self._rate_limited,
                "in_flight": len(self._in_flight),
                # Seconds before anything more is sent: a 429's hold or a retry's backoff.
                "hold_s": round(max(0.0, self._hold_until - now, self._retry_until - now), 1),
                "last_error": self._last_error,
                "paused_reason": paused or ("; ".join(parked) if parked else None),
                "parked": parked,
                "rate_per_min": round(self.limiter.rate_per_min, 1),  # allowed now (adapts to 429s)
                "sent_per_min": float(len(self._sent_times)),  # requests sent in the last 60 s
                "limit_per_min": getattr(self.limiter, "ceiling_per_min", self.limiter.rate_per_min),
                "api_answering": self._unreachable_since is None,
            }
        try:
            snap["pending"] = self.spool.pending_count()
        except SpoolError:
            snap["pending"] = None
        return snap

    # ---- workers ---------------------------------------------------------------------------------

    def _claimable(self) -> SpoolItem | None:
        up_to = None
        if self._backlog_up_to:
            # What earlier captures left is delivered before anything new, even while one of its
            # streams is in flight; parked workspaces/blocks don't hold the rest back.
            backlog = self.spool.next_pending(
                exclude_workspaces=self._parked_workspaces.keys(),
                exclude_blocks=self._parked_blocks.keys(),
                exclude_captures=self._parked_captures.keys(),
                up_to_id=self._backlog_up_to,
            )
            if backlog is None:
                self._backlog_up_to = 0
            else:
                up_to = self._backlog_up_to
        return self.spool.next_pending(
            exclude_streams=self._in_flight,
            exclude_workspaces=self._parked_workspaces.keys(),
            exclude_blocks=self._parked_blocks.keys(),
            exclude_captures=self._parked_captures.keys(),
            up_to_id=up_to,
        )

    def _claim(self, poll: bool) -> SpoolItem | None:
        """Block until an item whose stream is free can be taken; None when stopping.

        Items added in this process wake the workers (the spool's listener), so only the worker
        with `poll` also looks every `_POLL_S`: idle workers cost no spool queries.
        """
        with self._cond:
            while not self._stop.is_set():
                if self._paused_for_space and self.spool.flush_held() and self.spool.ensure_reserve():
                    self._paused, self._paused_for_space = None, False  # space is back, records written
                if self._paused is None:
                    item = self._claimable()
                    if item is not None:
                        self._in_flight.add(item.stream)
                        self._cond.notify_all()  # another worker looks for another stream's item
                        return item
                self._cond.wait(_POLL_S if poll else None)
        return None

    def _worker(self, poll: bool) -> None:
        while not self._stop.is_set():
            try:
                item = self._claim(poll)
            except SpoolError as err:
                if not self._stop.is_set():
                    self._internal_error(err)
                return
            if item is None:
                return
            try:
                self._deliver(item)
            except CollectorError as err:  # the spool cannot be written: one line, keep the item, stop
                if not self._stop.is_set():
                    self._internal_error(err)
            except Exception as exc:  # a bug or a broken spool: say so, keep the item, stop delivery
                if not self._stop.is_set():
                    log.exception("uploader worker failed on spool item %s", item.id)
                    self._internal_error(exc)
            finally:
                with self._cond:
                    self._in_flight.discard(item.stream)
                    self._cond.notify_all()

    def _wait_turn(self) -> bool:
        """Wait out a 429 hold, then take a limiter token; False if stopping or paused."""
        while True:
            with self._cond:
                if self._stop.is_set() or self._paused is not None:
                    return False
                hold_s = self._hold_until - time.monotonic()
            if hold_s > 0:
                if self._stop.wait(hold_s):
                    return False
                continue
            if not self.limiter.acquire(self._stop):
                return False
            with self._cond:  # a 429 may have arrived while we waited for the token
                if self._hold_until > time.monotonic():
                    continue
                self._sent_times.append(time.monotonic())
                return True

    def _deliver(self, item: SpoolItem) -> None:
        """Send one item until it is settled (delivered, failed, parked, paused) or we stop."""
        try:
            fields = item.evidence.request_fields()
            evidence = EvidenceCreate(**fields, data=base64.b64encode(item.data).decode("ascii"))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            self._fail(item, failures.invalid_request(exc))
            return
        if item.capture_id not in self._checked_captures and self.spool.unchecked_target(item.capture_id):
            checked = self._check_target(item)
            if checked is None:
                return  # stopping, paused, or this capture's target proved wrong (parked)
            item = checked
            evidence = EvidenceCreate(**item.evidence.request_fields(), data=evidence.data)
        attempt = 0
        while self._wait_turn():
            if not self.spool.ensure_reserve():
                self._pause_for_space()  # a 201 now could not be recorded: the item would go twice
                return
            try:
                sent_at = time.monotonic()  # the limiter counts one decrease per burst of refusals
                created = self._client.upload_evidence(item.workspace_id, evidence)  # type: ignore[union-attr]
            except CollectorError as err:
                outcome = classify(err)
                if outcome is Outcome.FAIL:
                    self._fail(item, str(err), err)  # validation_error and other permanent answers
                    return
                if outcome is Outcome.THROTTLE:
                    self._rate_limit(err, sent_at)  # hold the queue first, then write the attempt down
                self._record(item, err)
                if outcome is Outcome.PAUSE:
                    self._pause(err)
                    return
                if outcome is Outcome.PARK:
                    self._park(item, err)
                    return
                if outcome is Outcome.RETRY:
                    self._not_answering(err)
                    attempt += 1
                    if not self._back_off(item, err, attempt):
                        return  # stopping
                continue
            self._delivered_ok(item, str(getattr(created, "id", "") or ""), sent_at)
            return

    def _back_off(self, item: SpoolItem, err: CollectorError, attempt: int) -> bool:
        """Wait before retry number `attempt` (from 1); False if delivery stops meanwhile."""
        delay_s = retry_delay_s(err, attempt - 1, self._backoff_base_s, self._backoff_cap_s, self._rng)
        with self._cond:
            self._retries += 1
            self._retry_until = max(self._retry_until, time.monotonic() + delay_s)
        self._emit("retrying", item=item, error=str(err), attempt=attempt, delay_s=round(delay_s, 3))
        return not self._stop.wait(delay_s)

    # ---- outcomes --------------------------------------------------------------------------------

    def _delivered_ok(self, item: SpoolItem, evidence_id: str, sent_at: float | None = None) -> None:
        try:
            self.spool.mark_delivered(item.id, evidence_id)
        except SpoolFullError as err:
            # The server has it: count it as delivered (the spool holds its record until there is
            # space, and hands it out no more), then stop sending until the disk has room again.
            with self._cond:
                self._delivered += 1
            self._emit("delivered", item=item, evidence_id=evidence_id)
            self._pause_for_space(err)
            return
        if hasattr(self.limiter, "on_success"):
            self.limiter.on_success(sent_at)  # the reply's delay: see AdaptiveRateLimiter
        if self._published_rate.due():
            self._save_rate(self.limiter.rate_per_min)
        with self._cond:
            self._delivered += 1
            self._consecutive_429 = 0
            self._last_error = None  # delivery works again: an old error is not news (status lines)
            first = self._delivered == 1
        self._answering()
        if first and self.spool.pause_reason() is not None:
            self.spool.set_pause_reason(None)  # the key works again: `status` stops showing the pause
        self._emit("delivered", item=item, evidence_id=evidence_id)

    def _pause_for_space(self, err: SpoolFullError | None = None) -> None:
        """Stop sending until the disk has room again (`_claim` resumes by itself then)."""
        err = err or failures.no_room_to_record(self.spool.root)
        self._internal_error(err)
        with self._cond:
            self._paused_for_space = self._paused is err or self._paused_for_space

    def _record(self, item: SpoolItem, err: CollectorError) -> None:
        with self._cond:
            self._last_error = str(err)
        self.spool.record_attempt(item.id, str(err))

    def _fail(self, item: SpoolItem, message: str, err: CollectorError | None = None) -> None:
        self.spool.mark_failed(item.id, message)
        with self._cond:
            self._failed += 1
            self._last_error = message
        code = getattr(err, "code", None)
        self._emit("failed", item=item, message=failures.rejected(item, message), code=code)

    def _pause(self, err: CollectorError) -> None:
        with self._cond:
            first = self._paused is None
            self._paused = err
            self._cond.notify_all()
        if not first:
            return
        pending = self.spool.pending_count()
        message = failures.paused(err, pending, self.spool.root)
        self.spool.set_pause_reason(message)
        self._emit("paused", message=message, code=getattr(err, "code", None), pending=pending)

    def _park(self, item: SpoolItem, err: CollectorError) -> None:
        kind, key = park_target(item, err)
        with self._cond:
            table = self._parked_blocks if kind == "block" else self._parked_workspaces
            first = key not in table
            message = failures.parked(kind, key, err)
            table[key] = message
            self._cond.notify_all()
        if first:
            code = getattr(err, "code", None)
            self._emit("parked", message=message + " Its items stay in the spool.", code=code)

    def _rate_limit(self, err: CollectorError, sent_at: float | None = None) -> None:
        with self._cond:
            if hasattr(self.limiter, "on_throttle"):  # inside _cond: nobody sends before the hold is set
                # Lower the share (once per burst of refusals); no Retry-After: wait the window out.
                self.limiter.on_throttle(sent_at, retry_after_s=retry_after_s(err))
            self._consecutive_429 += 1
            self._rate_limited += 1
            self._retries += 1
            wait_s = throttle_hold_s(
                self._consecutive_429, retry_after_s(err), self.limiter.rate_per_min,
                base_s=self._backoff_base_s, cap_s=self._backoff_cap_s, rng=self._rng,
            )  # fmt: skip
            self._hold_until = max(self._hold_until, time.monotonic() + wait_s)
            if hasattr(self.limiter, "hold"):
                self.limiter.hold(self._hold_until - time.monotonic())  # no growth while held
        self.limiter.drain()
        self._emit("rate_limited", error=str(err), wait_s=round(wait_s, 3))

    def _save_rate(self, rate_per_min: float | None, reason: str = "") -> None:
        """Write the current rate (None: delivery stopped) to the spool, where `collector status`
        (another process) reads it; the limiter calls it on each change, with its `reason`."""
        ceiling = None if rate_per_min is None else getattr(self.limiter, "ceiling_per_min", rate_per_min)
        self._published_rate.save(rate_per_min, ceiling)

    def _internal_error(self, exc: BaseException) -> None:
        err = failures.unexpected(exc)
        with self._cond:
            self._last_error = str(err)
            first = self._paused is None
            if first:
                self._paused = err
            self._cond.notify_all()
        if first:  # once per cause, even when several workers meet it
            self._emit("worker_error", error=str(err))
