"""A whole-request deadline for httpx: `--timeout` bounds connect + send + wait + read together.

httpx's timeouts apply to each socket operation, so a reply trickled one byte a second never
trips a 3 s read timeout. Here every connect, read and write of the request's connection gets
the time left until the request's deadline instead, and fails with httpcore's own timeout errors
(httpx turns them into `httpx.TimeoutException`) once it has passed.

The deadline lives in a context variable set around one request by `deadline()`: the sync client
does all its socket work in the calling thread, so it is seen there and nowhere else.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpcore

log = logging.getLogger(__name__)
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("request_deadline", default=None)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every socket operation inside this block ends by `seconds` from now (monotonic clock)."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _clamp(timeout: float | None, error: type[Exception]) -> float | None:
    """The operation's own timeout, or the time left until the deadline if that is sooner."""
    end = _DEADLINE.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise error("the request's whole-request deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # Sent in slices, so a peer that reads slowly cannot stretch one write past the deadline.
        view = memoryview(buffer)
        while view:
            self._inner.write(bytes(view[:65536]), _clamp(timeout, httpcore.WriteTimeout))
            view = view[65536:]

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
        clamped = _clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, clamped))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        clamped = _clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_tcp(host, port, clamped, local_address, socket_options))

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        clamped = _clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, clamped, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def add_deadline(transport: Any) -> Any:
    """Make an `httpx.HTTPTransport` (direct or through a proxy) obey `deadline()`; returns it.

    httpx has no option for a network backend, so the one of its httpcore pool is wrapped. Any
    other transport (a test's MockTransport), or a future httpx that builds its pool differently,
    is returned as it is (per-operation timeouts only) and the debug log says so.
    """
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, _DeadlineBackend):
        return transport
    if isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
    else:
        log.debug("%s has no httpcore network backend: per-operation timeouts only", type(transport).__name__)
    return transport
