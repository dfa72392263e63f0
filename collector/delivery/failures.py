"""What a failed send means for its item and for delivery, and what the user is told about it.

- Transient errors (429, 408, 425, every 5xx but 501/505, any answer that is not the API's JSON
  error, timeouts, connection errors, lost replies) are retried without end, with exponential
  backoff and full jitter (`retry_delay_s`), or after Retry-After when the server gives one. A 429
  holds the whole queue and empties the limiter's bucket (`THROTTLE`).
- Permanent errors never delete anything: validation_error, the API's JSON error with another 4xx
  (not 401/403/404/408/425/429) or with 501/505 move the item to `failed` with the server's
  message (`FAIL`); auth errors (unauthorized, key_revoked, key_expired, forbidden,
  teams_required) pause all delivery (`PAUSE`); workspace_not_found / block_not_found park that
  workspace / block for this run (its items stay pending) while the rest keeps flowing (`PARK`).
  The user is told once per cause.
- A reply lost after the server stored the evidence makes the retry a duplicate; it carries the
  same metadata identity (capture_id, stream_id, chunk_index), so it is always detectable.
"""

from __future__ import annotations

import enum
import random
from pathlib import Path

from pydantic import ValidationError

from collector.delivery.rate import full_jitter
from collector.delivery.spool import SpoolItem
from collector.errors import (
    ApiError,
    AuthError,
    CollectorError,
    NetworkError,
    NotFoundError,
    RateLimitedError,
    SpoolError,
    SpoolFullError,
)


class Outcome(enum.Enum):
    """What the uploader does with an item whose send raised a `CollectorError`."""

    PAUSE = "pause"  # all delivery waits for the user (the key)
    PARK = "park"  # its workspace / block waits for this run, the rest flows
    THROTTLE = "throttle"  # 429: hold the whole queue, lower the rate, send again
    RETRY = "retry"  # transient: back off, send again
    FAIL = "fail"  # permanent: kept in the spool as failed, with the message


def classify(err: CollectorError) -> Outcome:
    """The outcome of a send that raised `err`."""
    if isinstance(err, AuthError):
        return Outcome.PAUSE
    if isinstance(err, NotFoundError):
        return Outcome.PARK
    if isinstance(err, RateLimitedError):
        return Outcome.THROTTLE
    if isinstance(err, ApiError):
        return Outcome.RETRY if err.retryable else Outcome.FAIL  # validation_error: FAIL
    if isinstance(err, NetworkError):
        return Outcome.RETRY
    return Outcome.FAIL  # refused locally before sending (bad workspace id, ...)


def retry_after_s(err: CollectorError) -> float | None:
    """The server's Retry-After, in seconds, if it gave one."""
    return err.retry_after_s if isinstance(err, ApiError) else None


def retry_delay_s(
    err: CollectorError, attempt: int, base_s: float, cap_s: float, rng: random.Random
) -> float:
    """Seconds to wait before the next try of a transient failure (`attempt`: 0 for the first retry).

    Full jitter: uniform in [0, min(cap_s, base_s * 2**attempt)], so the bound doubles with each
    failed attempt of the item up to `cap_s`; the server's Retry-After wins when it is longer.
    """
    delay_s = full_jitter(attempt, base_s, cap_s, rng)
    after_s = retry_after_s(err)
    return delay_s if after_s is None else max(delay_s, after_s)


def park_target(item: SpoolItem, err: CollectorError) -> tuple[str, str]:
    """What a not-found parks: `("block", block_id)` for block_not_found (when the item has a
    block), else `("workspace", workspace_id)`."""
    block_id = item.block_id
    if getattr(err, "code", None) == "block_not_found" and block_id:
        return "block", block_id
    return "workspace", item.workspace_id


# ---- what the user is told ---------------------------------------------------------------------


def invalid_request(exc: ValueError) -> str:
    """Why a spooled request cannot be sent (it is kept as failed); pydantic's first error only."""
    if not isinstance(exc, ValidationError):
        return f"the spooled request is invalid ({exc})"
    first = exc.errors(include_url=False, include_input=False)[0]
    return f"the spooled request is invalid ({'.'.join(map(str, first['loc']))}: {first['msg']})"


def rejected(item: SpoolItem, message: str) -> str:
    return (
        f"Chunk {item.chunk_index} of {item.stream_id} was rejected and kept in the spool as "
        f"failed: {message}"
    )


def paused(err: CollectorError, pending: int, root: Path) -> str:
    return (
        f"Delivery paused: {err} {pending} item(s) are kept in the spool at {root}; "
        "send them with `collector upload` once fixed."
    )


def parked(kind: str, key: str, err: CollectorError) -> str:
    return f"Delivery to {kind} {key} paused: {err}"


def no_room_to_record(root: Path) -> SpoolFullError:
    return SpoolFullError(
        f"DISK FULL: the disk holding the spool {root} has no room to record deliveries, "
        "so nothing more is sent (an item whose 201 could not be recorded would be sent twice). "
        "Free disk space."
    )


def unexpected(exc: BaseException) -> CollectorError:
    """The error that stops delivery: `exc` itself when it is ours, else one line saying what to do."""
    if isinstance(exc, CollectorError):
        return exc
    return SpoolError(
        f"The uploader stopped on an unexpected error ({type(exc).__name__}: {exc}); "
        "the spool keeps every item. Run `collector upload --verbose` and report it."
    )
