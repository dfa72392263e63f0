"""Typed client for the OpenLesson Agentic API v2 (contract: ../shared/openlesson-api.md).

Every failure leaves this module as a `CollectorError` whose `str()` is one line with the fix:
error replies are translated in `_api_error`, httpx transport errors in `_send`. Nothing raised
here chains an httpx object (requests carry the Authorization header), and every message passes
through `_one_line`, which also strips the key should a server ever echo it.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import math
import os
import ssl
import urllib.request
from collections.abc import Generator
from datetime import datetime, timezone
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from collector import __version__
from collector.api import redaction
from collector.api.deadline import add_deadline, deadline
from collector.api.models import (
    EVIDENCE_MIME_TYPES,
    MAX_DECODED_BYTES,
    MAX_WORKSPACE_FILES,
    WORKSPACE_FILE_MIME_TYPES,
    Block,
    BlockList,
    Evidence,
    EvidenceCreate,
    EvidenceCreated,
    PerformanceRequest,
    PerformanceResponse,
    WorkspaceCreate,
    WorkspaceCreated,
    decoded_size,
    is_uuid,
)
from collector.api.settings import ENV_API_KEY, ENV_BASE_URL, ApiKey, ApiSettings
from collector.errors import (
    AUTH_CODES,
    NOT_FOUND_CODES,
    RETRIED_4XX,
    ApiError,
    AuthError,
    NetworkError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UsageError,
    ValidationApiError,
)

API_PREFIX = "/api/v2/agent"
_MAX_SERVER_MESSAGE = 200  # characters of the server's own message kept in ours
# Retry-After is honoured up to this: a server (or a proxy) asking for days, or for 99999999999 s,
# must not park a capture's delivery beyond what a person would wait for, nor overflow a timer.
RETRY_AFTER_MAX_S = 3600.0

log = logging.getLogger(__name__)
# httpx logs every request at INFO, which would add a line to each command's one-line error;
# our own DEBUG line per request (below) replaces it. Left alone if someone configured it (the CLI
# turns httpx/httpcore debug output on at -vv only, see cli.py; keys are masked by `redaction`).
if logging.getLogger("httpx").level == logging.NOTSET:
    logging.getLogger("httpx").setLevel(logging.WARNING)
M = TypeVar("M", bound=BaseModel)

# What to do, per contract error code. {workspace}/{block} come from the request that failed.
_MESSAGES = {
    "unauthorized": f"The API key was rejected (unauthorized). Check {ENV_API_KEY}.",
    "key_revoked": f"The API key has been revoked (key_revoked). Create a new key and set {ENV_API_KEY}.",
    "key_expired": f"The API key has expired (key_expired). Create a new key and set {ENV_API_KEY}.",
    "forbidden": "The API key lacks the scope for this request (forbidden{detail}). "
    "Use a key with the workspaces:read and workspaces:write scopes.",
    "teams_required": "The key's organization has no active Teams subscription (teams_required). "
    "Activate OpenLesson Teams or use a key from an organization that has it.",
    "workspace_not_found": "Workspace {workspace} was not found or this key cannot access it "
    "(workspace_not_found). Check the id, or create one with `collector workspace create --prompt TEXT`.",
    "block_not_found": "Block {block} is not in workspace {workspace} (block_not_found). "
    "Run `collector blocks --workspace {workspace}`.",
    "not_found": "The API has no resource at {method} {path} (not_found{detail}). "
    f"Check --base-url / {ENV_BASE_URL} ({{base_url}}).",
    "validation_error": "The API rejected the request (validation_error{detail}). "
    "Fix the input; sending it again will not help.",
}


class _BearerAuth(httpx.Auth):
    """Adds the key at send time, so it sits in no client default that could be printed."""

    def __init__(self, key: ApiKey) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._key.reveal()}"
        yield request


@functools.cache
def _verified_context() -> ssl.SSLContext:
    """The process's one verifying TLS context, as httpx would build it (SSL_CERT_FILE,
    SSL_CERT_DIR, else certifi's CA bundle). Loading the CA bundle costs tens of ms of CPU, so it is
    built once and shared by every client (and their proxy transports)."""
    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    import certifi  # httpx's own dependency

    return ssl.create_default_context(cafile=certifi.where())


@functools.cache
def _unused_context() -> ssl.SSLContext:
    """For a plain-http API without a proxy: TLS is never used, so no CA bundle is loaded. Still
    verifying (hostname and certificate required, no trusted CA): any TLS use would fail loudly."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _tls_context(base_url: str) -> ssl.SSLContext:
    """The TLS context for a client of `base_url`: none built for http:// without a proxy."""
    if base_url.lower().startswith("http://") and not urllib.request.getproxies():
        return _unused_context()
    return _verified_context()


class OpenLessonClient:
    """The four endpoints the collector uses. Use as a context manager, or call `close()`."""

    def __init__(self, settings: ApiSettings, transport: httpx.BaseTransport | None = None) -> None:
        self._settings = settings
        self._http = httpx.Client(
            base_url=settings.base_url.rstrip("/") + API_PREFIX,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": f"openlesson-collector/{__version__}",
            },
            auth=_BearerAuth(settings.api_key),
            timeout=settings.timeout_s,
            transport=transport,
            verify=_tls_context(settings.base_url),
        )
        if transport is None:
            # The whole request (connect, send, wait, read) must end within timeout_s (see `_send`),
            # through a proxy from the environment too: httpx's own transports, bounded in place.
            for t in (getattr(self._http, "_transport", None), *getattr(self._http, "_mounts", {}).values()):
                add_deadline(t)

    def __repr__(self) -> str:
        return f"OpenLessonClient({self._settings.base_url!r}, key={self._settings.api_key!r})"

    def __enter__(self) -> OpenLessonClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- endpoints ----------------------------------------------------------------------------

    def create_workspace(self, request: WorkspaceCreate) -> WorkspaceCreated:
        _refuse_if(_workspace_problem(request))
        return self._request("POST", "/workspaces", WorkspaceCreated, body=request)

    def list_blocks(self, workspace_id: str) -> list[Block]:
        path = f"{_workspace_path(workspace_id)}/blocks"
        return self._request("GET", path, BlockList, context={"workspace": workspace_id}).blocks

    def upload_evidence(self, workspace_id: str, evidence: EvidenceCreate) -> Evidence:
        _refuse_if(_evidence_problem(evidence))
        path = f"{_workspace_path(workspace_id)}/evidence"
        context = {"workspace": workspace_id, "block": evidence.block_id}
        created = self._request("POST", path, EvidenceCreated, body=evidence, context=context).evidence
        safe_id = self._one_line(created.id)  # the id is stored in the spool: never the key
        return created if safe_id == created.id else created.model_copy(update={"id": safe_id})

    def check_write_access(self, workspace_id: str) -> None:
        """Whether this key may add evidence to `workspace_id`, without adding any.

        Sends `POST .../evidence` with an empty body: the API checks the key and its scopes before
        the body, so a key without `workspaces:write` gets `403 forbidden` (raised, `AuthError`)
        and a key that may write gets `400 validation_error` (returns None: nothing was stored).
        A missing workspace raises `NotFoundError`; no answer raises `NetworkError`/`ServerError`.
        """
        path = f"{_workspace_path(workspace_id)}/evidence"
        response = self._send("POST", path, b"{}")
        log.debug("POST %s%s (write-access probe) -> HTTP %s", API_PREFIX, path, response.status_code)
        ctx = {"method": "POST", "path": API_PREFIX + path, "workspace": workspace_id}
        if 200 <= response.status_code < 300:
            return  # a server that took an empty body: it can be written (nothing useful was stored)
        error = self._api_error(response, ctx)
        if isinstance(error, ValidationApiError):
            return
        raise error

    def performance(self, workspace_id: str, request: PerformanceRequest) -> PerformanceResponse:
        path = f"{_workspace_path(workspace_id)}/performance"
        context = {"workspace": workspace_id, "block": request.block_id}
        return self._request("POST", path, PerformanceResponse, body=request, context=context)

    # ---- the one boundary ---------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        body: BaseModel | None = None,
        context: dict[str, Any] | None = None,
    ) -> M:
        content = body.model_dump_json(exclude_none=True).encode() if body is not None else None
        response = self._send(method, path, content)
        log.debug("%s %s%s -> HTTP %s", method, API_PREFIX, path, response.status_code)
        if not 200 <= response.status_code < 300:
            ctx = {"method": method, "path": API_PREFIX + path, **(context or {})}
            raise self._api_error(response, ctx)
        try:
            data = response.json()
        except ValueError:
            raise self._bad_body(response.status_code, "is not JSON") from None
        return self._parse(model, data, response.status_code)

    def _send(self, method: str, path: str, content: bytes | None) -> httpx.Response:
        # Build the error inside `except`, raise it outside: no __context__ pointing at httpx
        # objects whose request carries the Authorization header.
        error: NetworkError | None = None
        try:
            with deadline(self._settings.timeout_s):
                return self._http.request(method, path, content=content)
        except httpx.TimeoutException:
            error = NetworkError(
                f"The API at {self._settings.base_url} did not answer within {self._settings.timeout_s:g} s. "
                "Check the network, or raise --timeout."
            )
        except httpx.RemoteProtocolError:
            error = NetworkError(
                f"The connection to {self._settings.base_url} dropped before the reply arrived; "
                "the request may or may not have been applied. Retry."
            )
        except httpx.ConnectError as exc:
            error = NetworkError(
                self._one_line(
                    f"Cannot connect to {self._settings.base_url} ({exc}). "
                    f"Check the network and --base-url / {ENV_BASE_URL}."
                )
            )
        except httpx.LocalProtocolError as exc:  # its text may quote the Authorization header
            error = NetworkError(
                f"The request to {self._settings.base_url} could not be built ({type(exc).__name__}). "
                "Check the API key and --base-url."
            )
        except httpx.RequestError as exc:
            error = NetworkError(
                self._one_line(
                    f"The request to {self._settings.base_url} failed ({type(exc).__name__}: {exc}). "
                    "Check the network and retry."
                )
            )
        raise error

    def _api_error(self, response: httpx.Response, ctx: dict[str, Any]) -> ApiError:
        status = response.status_code
        try:
            info = response.json()["error"]
            if not isinstance(info["code"], str) or not info["code"]:
                raise TypeError("no error code")
            code, server_message = info["code"], str(info.get("message") or "")
            details = info.get("details") if isinstance(info.get("details"), dict) else {}
        except (ValueError, KeyError, TypeError, IndexError):
            # Not the API's own JSON error (a redirect, a portal's page, a proxy's 413): retried.
            return self._bad_body(status, "is not an API error", response.headers.get("content-type"))

        retry_after_s = parse_retry_after(response.headers.get("retry-after"))
        kwargs: dict[str, Any] = dict(
            code=code,
            status=status,
            server_message=self._one_line(server_message),
            details=details,
            retry_after_s=retry_after_s,
        )
        fields = {
            "workspace": ctx.get("workspace") or details.get("workspace_id") or "?",
            "block": ctx.get("block") or details.get("block_id") or "?",
            "method": ctx["method"],
            "path": ctx["path"],
            "base_url": self._settings.base_url,
            "detail": f": {kwargs['server_message'].rstrip('.')}" if server_message else "",
        }
        message = self._one_line(_error_message(code, status, fields, retry_after_s))
        error_class = _error_class(code, status)
        if error_class is ServerError:
            kwargs["from_api"] = True
        return error_class(message, **kwargs)

    def _bad_body(self, status: int, what: str, content_type: str | None = None) -> ApiError:
        kind = f" ({content_type.split(';')[0]})" if content_type else ""
        if status == 429:  # a CDN's own rate limit page: back off like the API's 429
            return RateLimitedError(
                f"Rate limited (HTTP 429 from {self._settings.base_url}, not the API's JSON).",
                code="rate_limit_exceeded",
                status=429,
            )
        return ServerError(
            self._one_line(
                f"The API answered HTTP {status} with a body that {what}{kind}, probably a proxy, "
                "captive portal or outage page. If it persists, sign in to the network "
                f"or check --base-url ({self._settings.base_url})."
            ),
            code=f"http_{status}",
            status=status,
        )

    def _parse(self, model: type[M], data: Any, status: int) -> M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ServerError(
                self._one_line(
                    f"The API's reply does not match the contract ({model.__name__}.{where}: "
                    f"{first['msg']}). "
                    f"Check that --base-url ({self._settings.base_url}) is an OpenLesson API."
                ),
                code="invalid_response",
                status=status,
            ) from None

    def _one_line(self, text: str) -> str:
        key = self._settings.api_key
        text = text.replace(key.reveal(), key.prefix)
        text = redaction.redact(" ".join(text.split()))
        return text if len(text) <= 2 * _MAX_SERVER_MESSAGE else text[: 2 * _MAX_SERVER_MESSAGE - 1] + "…"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (RFC 9110: delta-seconds or HTTP-date).

    Returns None when absent or unreadable (garbage, NaN, infinity), 0.0 for a time already past
    or a negative number, and at most `RETRY_AFTER_MAX_S` (one hour) for anything longer, so a
    huge value can neither stall delivery for days nor overflow a timer.
    """
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if not math.isfinite(seconds):
        return None
    return min(RETRY_AFTER_MAX_S, max(0.0, seconds))


def _error_message(code: str, status: int, fields: dict[str, str], retry_after_s: float | None) -> str:
    if code in _MESSAGES:
        return _MESSAGES[code].format(**fields)
    if code == "rate_limit_exceeded" or status == 429:
        wait = (
            f"Retry in {math.ceil(retry_after_s)} s."
            if retry_after_s is not None
            else "Wait a minute and retry."
        )
        return f"Too many requests for this API key ({code}). {wait}"
    if status >= 500:
        return f"The API failed with HTTP {status} ({code}{fields['detail']}). Try again later."
    return f"The API answered HTTP {status} ({code}{fields['detail']}). Check the request and retry."


def _error_class(code: str, status: int) -> type[ApiError]:
    """By contract code first; by HTTP status for codes the contract does not list."""
    if code in AUTH_CODES:
        return AuthError
    if code in NOT_FOUND_CODES:
        return NotFoundError
    if code == "validation_error":
        return ValidationApiError
    if code == "rate_limit_exceeded" or status == 429:
        return RateLimitedError
    if status >= 500 or status in RETRIED_4XX:  # a timeout or "too early" is retried, not final
        return ServerError
    by_status = {
        401: AuthError,
        403: AuthError,
        404: NotFoundError,
        400: ValidationApiError,
        422: ValidationApiError,
    }
    return by_status.get(status, ApiError)


def _workspace_path(workspace_id: str) -> str:
    if not is_uuid(workspace_id):  # the commands check first; this guards the URL path itself
        raise UsageError(
            f"Workspace id {workspace_id!r} is not a valid id (expected a UUID). Check the value."
        )
    return f"/workspaces/{workspace_id}"


# Models are mutable and model_construct() skips validation, so the limits are re-checked here,
# cheaply (no base64 decode), right before sending.
def _evidence_problem(evidence: EvidenceCreate) -> str | None:
    allowed = EVIDENCE_MIME_TYPES.get(evidence.type)
    if allowed is None:
        return f"type {evidence.type!r} is not one of {', '.join(EVIDENCE_MIME_TYPES)}"
    if evidence.mime_type not in allowed:
        return f"mime_type {evidence.mime_type!r} does not match type {evidence.type!r}"
    size = decoded_size(evidence.data)
    if size > MAX_DECODED_BYTES:
        return f"data is {size} bytes decoded; the limit is {MAX_DECODED_BYTES} (10 MB)"
    return None


def _workspace_problem(request: WorkspaceCreate) -> str | None:
    files = request.files or []
    if len(files) > MAX_WORKSPACE_FILES:
        return f"{len(files)} files; at most {MAX_WORKSPACE_FILES} are allowed"
    for f in files:
        if f.mime_type not in WORKSPACE_FILE_MIME_TYPES:
            return f"file {f.name!r} has mime_type {f.mime_type!r}, which is not allowed"
        if decoded_size(f.data) > MAX_DECODED_BYTES:
            return f"file {f.name!r} is larger than 10 MB decoded"
    return None


def _refuse_if(problem: str | None) -> None:
    if problem:
        # status 0: refused locally, before sending; permanent, like the API's validation_error.
        raise ValidationApiError(
            f"Refused before sending (validation_error: {problem}). "
            "Fix the input; the API would reject it too.",
            code="validation_error",
            status=0,
        )
