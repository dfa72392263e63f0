"""The collector's one exception tree, and the exit codes the CLI maps it to.

    CollectorError                  base; `.exit_code`, `str(err)` is the one-line message
    ├── UsageError                  bad usage or bad input (malformed ids, unreadable files)   2
    ├── ApiError                    the API answered with an error body                        1
    │   ├── AuthError               unauthorized, key_revoked, key_expired, forbidden,
    │   │                           teams_required                                              3
    │   ├── NotFoundError           workspace_not_found, block_not_found, not_found, ...        4
    │   ├── ValidationApiError      validation_error (a permanent rejection of one request)     2
    │   ├── RateLimitedError        rate_limit_exceeded (429)                                   1
    │   └── ServerError             5xx, 408, 425, or a page that is not the contract's JSON   1
    ├── NetworkError                connection refused, DNS, timeout, reply lost                1
    ├── NoSourceError               no EEG stream, no screen, nothing to capture                5
    ├── SpoolError                  the spool cannot be written (full, disk full, unreadable)   1
    │   └── SpoolDamagedError       spool.db is not a database or is malformed (corrupt file)  2
    ├── PendingEvidenceError        capture finished but evidence is still in the spool         6
    └── DataLostError               evidence refused by the spool or rejected for good          7

Precedence when several apply to one run: 3/4 (auth, not found) > 7 (data lost) > 6 (pending) > 0.

The CLI catches `CollectorError` only and prints `str(err)`: no traceback for expected errors.
Lower-level errors (httpx, sqlite, OSError) are translated at the boundary where they occur.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_NO_SOURCE = 5
EXIT_PENDING = 6
EXIT_DATA_LOST = 7  # some captured evidence is not on the server and no retry will bring it

# The API's own JSON errors whose HTTP status decides (codes the contract does not list): these 5xx
# are final ("not implemented" never fixes itself); these 4xx are retried like a 5xx.
PERMANENT_5XX = frozenset({501, 505})
RETRIED_4XX = frozenset({408, 425})  # request timeout, too early


class CollectorError(Exception):
    """Base of every error the collector expects; its message is one line with the fix."""

    exit_code = EXIT_FAILURE


class UsageError(CollectorError):
    exit_code = EXIT_USAGE


class NoSourceError(CollectorError):
    exit_code = EXIT_NO_SOURCE


class SpoolError(CollectorError):
    exit_code = EXIT_FAILURE


class SpoolDamagedError(SpoolError):
    """The spool's database file is not a database or is malformed: a corrupt file (exit 2)."""

    exit_code = EXIT_USAGE


class SpoolFullError(SpoolError):
    """The spool reached its byte bound or the disk is full; nothing already spooled is lost."""


class PendingEvidenceError(CollectorError):
    exit_code = EXIT_PENDING


class DataLostError(CollectorError):
    """Chunks were refused by the spool (bound, full disk) or rejected for good by the server."""

    exit_code = EXIT_DATA_LOST


class NetworkError(CollectorError):
    """The request may or may not have reached the server (retryable)."""

    exit_code = EXIT_FAILURE


class ApiError(CollectorError):
    """An error answer from the API. `code` is the contract's error code (or `http_<status>`)."""

    exit_code = EXIT_FAILURE
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int,
        server_message: str = "",
        details: dict[str, Any] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.server_message = server_message
        self.details = details or {}
        self.retry_after_s = retry_after_s


class AuthError(ApiError):
    exit_code = EXIT_AUTH


class NotFoundError(ApiError):
    exit_code = EXIT_NOT_FOUND


class ValidationApiError(ApiError):
    exit_code = EXIT_USAGE


class RateLimitedError(ApiError):
    retryable = True


class ServerError(ApiError):
    """5xx, or a body that is not the contract's JSON (a proxy's, CDN's or captive portal's page).

    `from_api=False` (the default) means the answer did not come with the API's own JSON error
    body: a redirect, an HTML page, a 413 from a proxy, a plain-text 400. That is the network not
    being there yet, so it is always retried; only the API's own JSON error makes an item final.
    """

    def __init__(self, message: str, *, from_api: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.from_api = from_api
        permanent = self.status in PERMANENT_5XX
        self.retryable = not from_api or (self.status >= 500 and not permanent) or self.status in RETRIED_4XX


AUTH_CODES = frozenset({"unauthorized", "key_revoked", "key_expired", "forbidden", "teams_required"})
NOT_FOUND_CODES = frozenset(
    {"workspace_not_found", "block_not_found", "ghl_link_not_found", "guest_not_found", "not_found"}
)
