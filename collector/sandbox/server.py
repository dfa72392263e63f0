"""A local stand-in for the OpenLesson Agentic API v2: the FastAPI app and its faults (serve.py runs it).

Implements the contract (../shared/openlesson-api.md) for the routes the collector uses, and
answers every error, including FastAPI's own, with `{"error": {"code", "message", "details"}}`.
Sandbox-only: `GET /api/v2/agent/workspaces/{id}/evidence` lists the stored rows.

Fault injection (share of requests per fault, drawn from one seeded RNG, one draw per request to
a contract route): 503 replies, 429 replies with Retry-After, and lost replies: the handler runs
(the evidence is stored), the status line and headers go out, then the connection closes before
the body, so the client sees a dropped connection (httpx.RemoteProtocolError), not a status.
`reject_chunk` answers `validation_error` to every evidence upload with that `chunk_index` (a
permanent rejection, for rehearsing `collector upload --retry-failed`). Every request to a
contract route is recorded (`SandboxServer.requests()`: arrival time and status), so tests can
observe pacing and holds at the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from collector.api.ids import is_uuid
from collector.api.models import EvidenceCreate, PerformanceRequest, WorkspaceCreate
from collector.sandbox.report import build_chat_answer, build_report
from collector.sandbox.store import EVIDENCE_REPLY_FIELDS, SandboxStore

PREFIX = "/api/v2/agent"
ENV_FAULTS = {
    "fail_503": "COLLECTOR_SANDBOX_FAIL_503",
    "fail_429": "COLLECTOR_SANDBOX_FAIL_429",
    "lose_reply": "COLLECTOR_SANDBOX_LOSE_REPLY",
    "latency_ms": "COLLECTOR_SANDBOX_LATENCY_MS",
    "seed": "COLLECTOR_SANDBOX_SEED",
    "reject_chunk": "COLLECTOR_SANDBOX_REJECT_CHUNK",
}
INJECTED_RETRY_AFTER_S = 1

log = logging.getLogger("collector.sandbox")


class _DropUvicornLostReplyNoise(logging.Filter):
    # A lost reply is on purpose; we log our own line instead of uvicorn's error.
    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_DropUvicornLostReplyNoise())


class ApiFailure(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict | None = None, headers=None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.headers = details or {}, headers


def error_response(status: int, code: str, message: str, details: dict | None = None, headers=None):
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(body, status_code=status, headers=headers)


# ---- rate limit and faults ---------------------------------------------------------------------


class SlidingWindowLimiter:
    """At most `limit` requests per key in any `window_s` span, shared by every client of the key.

    With `count_refused` (the default, as the issue reports of the real API: "each refused request
    still counts against the key") a refused request also takes a place in the window, so a client
    that keeps retrying keeps the key shut for everyone. The answer to a refused request is the
    time until the window has room again, sent as Retry-After unless `retry_after` is False (the
    API reference promises no Retry-After: rehearse a client without it). `admitted` and
    `refused` count requests per key (SHA-256 of the key, never the key).
    """

    def __init__(
        self,
        limit: int,
        window_s: float = 60.0,
        *,
        count_refused: bool = True,
        retry_after: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window_s, self.count_refused = limit, window_s, count_refused
        self.retry_after = retry_after
        self._clock = clock  # a fake clock in the rate controller's simulated tests
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.admitted: dict[str, int] = {}
        self.refused: dict[str, int] = {}

    def admit(self, key_id: str) -> float | None:
        """None if admitted, else the seconds until a slot frees up."""
        now = self._clock()
        with self._lock:
            hits = self._hits.setdefault(key_id, deque())
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                self.refused[key_id] = self.refused.get(key_id, 0) + 1
                if self.count_refused:
                    hits.append(now)
                # Room again once all but limit - 1 of the requests in the window have aged out.
                return hits[len(hits) - self.limit] + self.window_s - now
            hits.append(now)
            self.admitted[key_id] = self.admitted.get(key_id, 0) + 1
            return None


class FaultPlan:
    FIELDS = ("fail_503", "fail_429", "lose_reply", "latency_ms")

    def __init__(self, seed: int | None = None, reject_chunk: int | None = None, **shares: float) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.fail_503 = self.fail_429 = self.lose_reply = self.latency_ms = 0.0
        self.reject_chunk: int | None = None  # evidence with this chunk_index gets validation_error
        self.update(reject_chunk=reject_chunk, **shares)

    def update(self, **kw: Any) -> None:
        unknown = set(kw) - set(self.FIELDS) - {"seed", "reject_chunk"}
        if unknown:
            raise TypeError(
                f"unknown fault settings {sorted(unknown)}; use {', '.join(self.FIELDS)}, seed, reject_chunk"
            )
        if "reject_chunk" in kw:
            reject = kw.pop("reject_chunk")
            if reject is not None and (isinstance(reject, bool) or int(reject) != reject or reject < 0):
                raise ValueError(f"reject_chunk must be a chunk_index (an integer >= 0), not {reject!r}")
            self.reject_chunk = None if reject is None else int(reject)
        values = {f: float(kw.get(f, getattr(self, f))) for f in self.FIELDS}
        shares = [values[f] for f in self.FIELDS[:3]]
        if any(not 0.0 <= s <= 1.0 for s in shares) or sum(shares) > 1.0 or values["latency_ms"] < 0:
            raise ValueError(f"fault shares must be within 0..1 and sum to at most 1, latency >= 0: {values}")
        with self._lock:
            for f, v in values.items():
                setattr(self, f, v)
            if kw.get("seed") is not None:
                self._rng.seed(kw["seed"])

    def draw(self) -> str | None:
        """One draw per request: '503', '429', 'lose' or None."""
        with self._lock:
            r = self._rng.random()
            for outcome, share in (("503", self.fail_503), ("429", self.fail_429), ("lose", self.lose_reply)):
                if r < share:
                    return outcome
                r -= share
            return None


def faults_from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Fault settings from COLLECTOR_SANDBOX_* variables (only those that are set)."""
    env = os.environ if env is None else env
    out: dict[str, Any] = {}
    for name, var in ENV_FAULTS.items():
        raw = env.get(var, "").strip()
        if raw:
            try:
                out[name] = int(raw) if name in ("seed", "reject_chunk") else float(raw)
            except ValueError:
                raise ValueError(f"{var}={raw!r} is not a number") from None
    return out


def _recording_status(send, record: dict[str, Any]):
    """The server's `send`, noting the reply's status in `record` on the way out."""

    async def wrapped(message) -> None:
        if message["type"] == "http.response.start":
            record.update(status=message["status"], replied=time.monotonic())
            for name, value in message.get("headers") or ():
                if name.lower() == b"retry-after":
                    record["retry_after"] = float(value)
        await send(message)

    return wrapped


class FaultInjector:
    """ASGI middleware in front of the app; only contract routes get faults."""

    def __init__(self, app, plan: FaultPlan) -> None:
        self.app, self.plan = app, plan
        # {"t": monotonic arrival, "method", "path", "status", "replied": monotonic, "retry_after": s}
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        sandbox_only = scope.get("method") == "GET" and path.endswith("/evidence")
        if scope["type"] != "http" or not path.startswith(PREFIX + "/") or sandbox_only:
            return await self.app(scope, receive, send)
        record = {"t": time.monotonic(), "method": scope["method"], "path": path, "status": None}
        self.requests.append(record)
        send = _recording_status(send, record)
        if self.plan.latency_ms:
            await asyncio.sleep(self.plan.latency_ms / 1000)
        outcome = self.plan.draw()
        if outcome in ("503", "429"):
            while (await receive()).get("more_body"):  # read the request, as a proxy would
                pass
            if outcome == "503":
                reply = error_response(503, "service_unavailable", "Injected fault: service unavailable.")
            else:
                reply = error_response(
                    429,
                    "rate_limit_exceeded",
                    "Injected fault: rate limit exceeded.",
                    headers={"Retry-After": str(INJECTED_RETRY_AFTER_S)},
                )
            log.info("sandbox fault: %s reply to %s %s", outcome, scope["method"], path)
            return await reply(scope, receive, send)
        if outcome == "lose":

            async def headers_only(message) -> None:
                if message["type"] == "http.response.start":
                    await send(message)  # Content-Length promised, body never sent

            await self.app(scope, receive, headers_only)
            log.info("sandbox fault: dropped the reply to %s %s after handling it", scope["method"], path)
            return  # uvicorn closes the connection: the client sees it drop mid-reply
        await self.app(scope, receive, send)


# ---- the app -----------------------------------------------------------------------------------


def create_app(
    store: SandboxStore, limiter: SlidingWindowLimiter, faults: FaultPlan | None = None
) -> FastAPI:
    app = FastAPI(title="OpenLesson API sandbox", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiFailure)
    async def _api_failure(request: Request, exc: ApiFailure):
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = "not_found" if exc.status_code in (404, 405) else "validation_error"
        return error_response(exc.status_code, code, f"{exc.detail}: {request.method} {request.url.path}")

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError):
        failure = _validation_failure(exc.errors())
        return error_response(failure.status, failure.code, failure.message, failure.details)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        log.exception("sandbox: unhandled error")
        return error_response(500, "internal_error", "The sandbox failed; see its log.")

    def authorize(request: Request, scope: str) -> dict:
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented.startswith(("sk_", "gsk_")):
            raise ApiFailure(401, "unauthorized", "Missing or malformed Bearer API key.")
        key = store.find_key(presented)
        if key is None:
            raise ApiFailure(401, "unauthorized", "Invalid API key.")
        if key["revoked"]:
            raise ApiFailure(401, "key_revoked", "This API key has been revoked.")
        if key["expired"]:
            raise ApiFailure(401, "key_expired", "This API key has expired.")
        wait_s = limiter.admit(key["sha256"])
        if wait_s is not None:
            raise ApiFailure(
                429,
                "rate_limit_exceeded",
                f"More than {limiter.limit} requests per minute for this key."
                if limiter.window_s == 60.0
                else f"More than {limiter.limit} requests in {limiter.window_s:g} s for this key.",
                headers={"Retry-After": str(max(1, math.ceil(wait_s)))} if limiter.retry_after else None,
            )
        if not key["teams"]:
            raise ApiFailure(403, "teams_required", "An active Teams subscription is required.")
        if scope not in key["scopes"] and "*" not in key["scopes"]:
            raise ApiFailure(
                403, "forbidden", f"This API key lacks the {scope} scope.", {"required_scope": scope}
            )
        return key

    def workspace_or_404(workspace_id: str) -> dict:
        workspace = store.workspace(workspace_id.lower()) if is_uuid(workspace_id) else None
        if workspace is None:
            raise ApiFailure(
                404,
                "workspace_not_found",
                f"Workspace {workspace_id} not found.",
                {"workspace_id": workspace_id},
            )
        return workspace

    def block_or_404(workspace_id: str, block_id: str | None) -> None:
        if block_id is not None and block_id.lower() not in {b["id"] for b in store.blocks(workspace_id)}:
            raise ApiFailure(
                404,
                "block_not_found",
                f"Block {block_id} is not in workspace {workspace_id}.",
                {"workspace_id": workspace_id, "block_id": block_id},
            )

    @app.post(PREFIX + "/workspaces")
    async def create_workspace(request: Request):
        authorize(request, "workspaces:write")
        body = await parse_body(request, WorkspaceCreate)
        workspace, blocks, files = store.create_workspace(body.initial_prompt, body.files or [])
        return JSONResponse({"workspace": workspace, "blocks": blocks, "files": files}, status_code=201)

    @app.get(PREFIX + "/workspaces/{workspace_id}/blocks")
    async def list_blocks(workspace_id: str, request: Request):
        authorize(request, "workspaces:read")
        workspace = workspace_or_404(workspace_id)
        return {"blocks": store.blocks(workspace["id"])}

    @app.post(PREFIX + "/workspaces/{workspace_id}/evidence")
    async def upload_evidence(workspace_id: str, request: Request):
        authorize(request, "workspaces:write")
        workspace = workspace_or_404(workspace_id)
        body = await parse_body(request, EvidenceCreate)
        block_or_404(workspace["id"], body.block_id)
        if faults is not None and faults.reject_chunk is not None and body.chunk_index == faults.reject_chunk:
            raise ApiFailure(
                400,
                "validation_error",
                f"Injected fault: evidence with chunk_index {body.chunk_index} is rejected by this sandbox.",
                {"field": "chunk_index"},
            )
        row = store.add_evidence(workspace["id"], body)
        return JSONResponse({"evidence": {k: row[k] for k in EVIDENCE_REPLY_FIELDS}}, status_code=201)

    @app.get(PREFIX + "/workspaces/{workspace_id}/evidence")
    async def list_evidence(workspace_id: str, request: Request, block_id: uuid.UUID | None = None):
        """Sandbox-only: the real API has no such listing. FastAPI itself validates ?block_id=."""
        authorize(request, "workspaces:read")
        workspace = workspace_or_404(workspace_id)
        rows = store.evidence(workspace["id"])
        if block_id is not None:
            rows = [r for r in rows if r["block_id"] == str(block_id)]
        return {"sandbox_only": True, "evidence": rows}

    @app.post(PREFIX + "/workspaces/{workspace_id}/performance")
    async def performance(workspace_id: str, request: Request):
        authorize(request, "workspaces:read")
        workspace = workspace_or_404(workspace_id)
        body = await parse_body(request, PerformanceRequest, empty_ok=True)
        if body.block_id is not None and not is_uuid(body.block_id):
            raise ApiFailure(400, "validation_error", "block_id must be a UUID.", {"field": "block_id"})
        block_or_404(workspace["id"], body.block_id)
        rows = store.evidence(workspace["id"])
        scope = f"workspace {workspace['id']}"
        if body.block_id:
            rows = [r for r in rows if r["block_id"] == body.block_id.lower()]
            scope = f"block {body.block_id}"
        blocks = store.blocks(workspace["id"])
        reply: dict[str, Any] = {
            "evidence_summary": {
                "blocks": len(blocks),
                "ghl_sessions": 0,
                "evidence_artifacts": len(rows),
                "linked_sessions": len({r["session_id"] for r in rows if r["session_id"]}),
                "plan_files": 0,
            },
            "file_ids": [f"sandbox-context-{workspace['id']}"],
        }
        if body.prompt and body.prompt.strip():
            reply.update(mode="chat", response=build_chat_answer(rows, body.prompt, scope))
        else:
            reply.update(mode="report", report=build_report(rows, len(blocks), scope))
        return reply

    return app


async def parse_body(request: Request, model: type[BaseModel], empty_ok: bool = False):
    raw = await request.body()
    if empty_ok and not raw.strip():
        raw = b"{}"
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiFailure(400, "validation_error", f"The request body is not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise ApiFailure(400, "validation_error", "The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _validation_failure(exc.errors(include_url=False, include_input=False)) from None


def _validation_failure(errors) -> ApiFailure:
    fields = [
        {"field": ".".join(str(p) for p in e["loc"] if p != "body") or "body", "message": str(e["msg"])}
        for e in errors
    ]
    first = fields[0] if fields else {"field": "body", "message": "invalid"}
    return ApiFailure(400, "validation_error", f"{first['field']}: {first['message']}", {"errors": fields})
