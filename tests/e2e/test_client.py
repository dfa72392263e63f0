"""OpenLessonClient: error mapping (MockTransport unit tests) and the endpoints against the sandbox."""

from __future__ import annotations

import base64
import logging
import traceback
import uuid
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

from collector.api.client import RETRY_AFTER_MAX_S, OpenLessonClient, parse_retry_after
from collector.api.models import (
    MAX_DECODED_BYTES,
    EvidenceCreate,
    PerformanceRequest,
    WorkspaceCreate,
    WorkspaceFile,
)
from collector.api.settings import ApiKey, ApiSettings
from collector.errors import (
    EXIT_AUTH,
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    ApiError,
    AuthError,
    NetworkError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UsageError,
    ValidationApiError,
)

KEY = "sk_test_" + "S3CRET" * 6
WS = "a3090c2e-1b1d-4c6a-9f5e-0d1f2a3b4c5d"
BLOCK = "2f1c5a7e-8b9d-4e0f-a1b2-c3d4e5f60718"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def mock_client(handler, key: str = KEY) -> OpenLessonClient:
    settings = ApiSettings(base_url="https://api.example.test", api_key=ApiKey(key), timeout_s=5)
    return OpenLessonClient(settings, transport=httpx.MockTransport(handler))


def replying(status: int, body=None, *, text: str | None = None, headers=None):
    def handler(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler


def error_body(code: str, message: str = "server says no", details=None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def screen(**kw) -> EvidenceCreate:
    return EvidenceCreate(type="screenshot", mime_type="image/png", data=b64(b"\x89PNG fake"), **kw)


def assert_no_key(*texts: str, key: str = KEY) -> None:
    """Neither the key nor its distinctive tail (what a truncated or re-wrapped leak would show)."""
    for text in texts:
        assert key not in text and key[-10:] not in text


# ---- error mapping, one row per contract code -------------------------------------------------

CODES = [
    ("unauthorized", 401, AuthError, EXIT_AUTH),
    ("key_revoked", 401, AuthError, EXIT_AUTH),
    ("key_expired", 401, AuthError, EXIT_AUTH),
    ("forbidden", 403, AuthError, EXIT_AUTH),
    ("teams_required", 403, AuthError, EXIT_AUTH),
    ("validation_error", 400, ValidationApiError, EXIT_USAGE),
    ("workspace_not_found", 404, NotFoundError, EXIT_NOT_FOUND),
    ("block_not_found", 404, NotFoundError, EXIT_NOT_FOUND),
    ("ghl_link_not_found", 404, NotFoundError, EXIT_NOT_FOUND),
    ("guest_not_found", 404, NotFoundError, EXIT_NOT_FOUND),
    ("not_found", 404, NotFoundError, EXIT_NOT_FOUND),
    ("rate_limit_exceeded", 429, RateLimitedError, EXIT_FAILURE),
]


@pytest.mark.parametrize(("code", "status", "cls", "exit_code"), CODES)
def test_every_contract_code_maps_to_its_exception(code, status, cls, exit_code):
    with mock_client(replying(status, error_body(code, details={"hint": 1}))) as client:
        with pytest.raises(cls) as info:
            client.upload_evidence(WS, screen(block_id=BLOCK))
    err = info.value
    assert (err.code, err.status, err.exit_code) == (code, status, exit_code)
    assert err.details == {"hint": 1}
    assert err.retryable is (code == "rate_limit_exceeded")
    message = str(err)
    assert "\n" not in message and code in message
    assert message.rstrip().endswith(".")


def test_unauthorized_message_says_what_to_do():
    with mock_client(replying(401, error_body("unauthorized"))) as client:
        with pytest.raises(AuthError) as info:
            client.list_blocks(WS)
    assert str(info.value) == "The API key was rejected (unauthorized). Check OPENLESSON_API_KEY."


def test_block_not_found_names_both_ids_and_the_command():
    with mock_client(replying(404, error_body("block_not_found"))) as client:
        with pytest.raises(NotFoundError) as info:
            client.performance(WS, PerformanceRequest(block_id=BLOCK))
    assert str(info.value) == (
        f"Block {BLOCK} is not in workspace {WS} (block_not_found). Run `collector blocks --workspace {WS}`."
    )


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (502, True), (503, True), (504, True), (520, True), (524, True), (501, False)],
)
def test_json_5xx_is_a_server_error(status, retryable):
    with mock_client(replying(status, error_body("internal_error", "boom\n  trace"))) as client:
        with pytest.raises(ServerError) as info:
            client.list_blocks(WS)
    assert info.value.retryable is retryable
    assert str(info.value.status) in str(info.value) and "\n" not in str(info.value)


def test_html_502_from_a_proxy_is_reported_with_its_status():
    page = "<html><body><h1>502 Bad Gateway</h1>\n<hr>nginx</body></html>"
    handler = replying(502, text=page, headers={"content-type": "text/html"})
    with mock_client(handler) as client:
        with pytest.raises(ServerError) as info:
            client.list_blocks(WS)
    err = info.value
    assert err.status == 502 and err.code == "http_502" and err.retryable
    assert "HTTP 502" in str(err) and "text/html" in str(err) and "\n" not in str(err)


def test_non_json_4xx_and_json_without_error_are_server_errors_not_crashes():
    with mock_client(replying(404, text="Not Found")) as client:
        with pytest.raises(ServerError, match="HTTP 404"):
            client.list_blocks(WS)
    with mock_client(replying(400, {"detail": "nope"})) as client:
        with pytest.raises(ServerError, match="HTTP 400"):
            client.list_blocks(WS)


def test_success_reply_that_breaks_the_contract_is_a_server_error():
    with mock_client(replying(200, {"blocks": [{"id": 1}]})) as client:
        with pytest.raises(ServerError, match="does not match the contract"):
            client.list_blocks(WS)


def test_unknown_code_falls_back_on_the_status():
    with mock_client(replying(403, error_body("org_suspended"))) as client:
        with pytest.raises(AuthError, match="org_suspended"):
            client.list_blocks(WS)
    with mock_client(replying(409, error_body("conflict"))) as client:
        with pytest.raises(ApiError, match="HTTP 409") as info:
            client.list_blocks(WS)
    assert type(info.value) is ApiError


def test_server_message_echoing_the_key_is_redacted():
    with mock_client(replying(400, error_body("validation_error", f"bad key {KEY} here"))) as client:
        with pytest.raises(ValidationApiError) as info:
            client.list_blocks(WS)
    assert_no_key(str(info.value), info.value.server_message)
    assert "sk_…" in str(info.value)


# ---- Retry-After ------------------------------------------------------------------------------


def test_retry_after_seconds_and_http_date():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-5", 0.0),  # negative: now
        ("99999999999", RETRY_AFTER_MAX_S),  # huge: the ceiling, never an OverflowError in a timer
        ("1e400", None),  # infinity is garbage
        ("inf", None),
        ("   ", None),
        ("3600.5", RETRY_AFTER_MAX_S),
        ("Fri, 31 Dec 9999 23:59:59 GMT", RETRY_AFTER_MAX_S),  # a date far away: the ceiling
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),  # a date long past: now
        ("Mon, 32 Foo 2025 99:99:99 GMT", None),  # a date that is not one
        ("\x00\xff", None),
    ],
)
def test_retry_after_bad_and_extreme_values_are_bounded(value, expected):
    assert parse_retry_after(value) == expected


def test_a_redirect_to_a_portal_and_non_api_bodies_are_retryable_api_json_errors_are_not():
    portal = replying(
        302, text="<html>sign in</html>", headers={"content-type": "text/html", "location": "/x"}
    )
    for handler in (
        portal,
        replying(
            413, text="<html>413 Request Entity Too Large</html>", headers={"content-type": "text/html"}
        ),
        replying(400, text="Bad Request", headers={"content-type": "text/plain"}),
        replying(400, {"error": "not the contract's shape"}),
        replying(400, {"error": {"code": 42}}),
    ):
        with mock_client(handler) as client:
            with pytest.raises(ServerError) as info:
                client.list_blocks(WS)
        assert info.value.retryable and not info.value.from_api, str(info.value)
    with mock_client(replying(413, error_body("payload_too_large"))) as client:  # the API's own JSON
        with pytest.raises(ApiError) as info:
            client.list_blocks(WS)
    assert not info.value.retryable


@pytest.mark.parametrize(("header", "expected"), [({"Retry-After": "12"}, 12.0), ({}, None)])
def test_rate_limited_carries_retry_after(header, expected):
    with mock_client(replying(429, error_body("rate_limit_exceeded"), headers=header)) as client:
        with pytest.raises(RateLimitedError) as info:
            client.list_blocks(WS)
    assert info.value.retry_after_s == expected
    assert ("Retry in 12 s" in str(info.value)) is (expected is not None)


# ---- transport failures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "Cannot connect"),
        (httpx.ReadTimeout("timed out"), "did not answer within 5 s"),
        (httpx.RemoteProtocolError("peer closed connection"), "dropped before the reply"),
        (httpx.ReadError("reset"), "ReadError"),
    ],
)
def test_transport_errors_become_network_errors_without_httpx_in_the_chain(exc, words):
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {KEY}"
        raise type(exc)(str(exc), request=request)

    with mock_client(handler) as client:
        with pytest.raises(NetworkError) as info:
            client.upload_evidence(WS, screen())
    err = info.value
    assert words in str(err) and "\n" not in str(err)
    # No httpx request (with its Authorization header) reachable from the exception.
    assert err.__cause__ is None and err.__context__ is None
    shown = "".join(traceback.format_exception(err))
    assert_no_key(shown, repr(err), str(err))


def test_requests_carry_bearer_key_and_json_content_type():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"blocks": []})

    with mock_client(handler) as client:
        assert client.list_blocks(WS) == []
        assert_no_key(repr(client))
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"
    assert seen[0].headers["content-type"] == "application/json"
    assert seen[0].url.path == f"/api/v2/agent/workspaces/{WS}/blocks"


# ---- refused before sending -------------------------------------------------------------------


def counting_client():
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500)

    return mock_client(handler), calls


def test_models_refuse_oversize_and_wrong_mime():
    too_big = b64(b"\0" * (MAX_DECODED_BYTES + 1))
    with pytest.raises(ValueError, match="10 MB"):
        EvidenceCreate(type="eeg", mime_type="application/json", data=too_big)
    with pytest.raises(ValueError, match="does not match type"):
        EvidenceCreate(type="screen", mime_type="application/json", data=b64(b"{}"))


@pytest.mark.parametrize(
    "tamper",
    [
        {"data": b64(b"\0" * (MAX_DECODED_BYTES + 1))},
        {"mime_type": "video/mp4"},
        {"type": "audio"},
    ],
)
def test_client_refuses_evidence_that_bypassed_validation(tamper):
    # model_construct and attribute assignment skip the model's validators.
    evidence = EvidenceCreate.model_construct(**{**screen().model_dump(), **tamper})
    client, calls = counting_client()
    with client, pytest.raises(ValidationApiError, match="Refused before sending") as info:
        client.upload_evidence(WS, evidence)
    assert calls == [] and info.value.status == 0 and not info.value.retryable


def test_client_refuses_workspace_files_that_bypassed_validation():
    good = WorkspaceFile(name="a.md", mime_type="text/markdown", data=b64(b"# hi"))
    client, calls = counting_client()
    with client:
        for files in ([good] * 6, [good.model_copy(update={"mime_type": "text/html"})]):
            request = WorkspaceCreate.model_construct(initial_prompt="x", files=files)
            with pytest.raises(ValidationApiError, match="Refused before sending"):
                client.create_workspace(request)
    assert calls == []


def test_malformed_workspace_id_is_refused_before_sending():
    from collector.errors import UsageError

    client, calls = counting_client()
    with client, pytest.raises(UsageError):
        client.list_blocks("../keys")
    assert calls == []


# ---- against the sandbox over loopback --------------------------------------------------------


def sandbox_client(sandbox, key_name: str = "member") -> OpenLessonClient:
    return OpenLessonClient(ApiSettings(sandbox.base_url, ApiKey(sandbox.keys[key_name]), timeout_s=10))


def test_endpoints_round_trip_against_the_sandbox(sandbox):
    with sandbox_client(sandbox) as client:
        blocks = client.list_blocks(sandbox.workspace_id)
        assert [b.id for b in blocks] == sandbox.block_ids and blocks[0].is_start

        created = client.create_workspace(
            WorkspaceCreate(
                initial_prompt="Learn fractions",
                files=[WorkspaceFile(name="plan.md", mime_type="text/markdown", data=b64(b"# plan"))],
            )
        )
        assert created.workspace.status == "active" and 3 <= len(created.blocks) <= 8
        assert created.files[0].file_size == 6

        evidence = client.upload_evidence(
            sandbox.workspace_id,
            screen(block_id=sandbox.block_ids[1], chunk_index=3, metadata={"chunk": "c1"}),
        )
        assert evidence.type == "screen" and evidence.block_id == sandbox.block_ids[1]
        assert (evidence.file_size, evidence.chunk_index, evidence.metadata) == (9, 3, {"chunk": "c1"})
        assert sandbox.read_artifact(evidence.id) == b"\x89PNG fake"

        report = client.performance(sandbox.workspace_id, PerformanceRequest())
        assert report.mode == "report" and report.report.summary.startswith("Sandbox report")
        chat = client.performance(sandbox.workspace_id, PerformanceRequest(prompt="How am I doing?"))
        assert chat.mode == "chat" and "How am I doing?" in chat.response


@pytest.mark.parametrize(
    ("key_name", "code"),
    [("revoked", "key_revoked"), ("expired", "key_expired"), ("teams_required", "teams_required")],
)
def test_sandbox_key_kinds_map_to_auth_errors(sandbox, key_name, code):
    with sandbox_client(sandbox, key_name) as client, pytest.raises(AuthError) as info:
        client.list_blocks(sandbox.workspace_id)
    assert info.value.code == code and info.value.exit_code == EXIT_AUTH


def test_sandbox_errors_map_end_to_end(sandbox):
    wrong = OpenLessonClient(ApiSettings(sandbox.base_url, ApiKey("sk_wrong_key"), timeout_s=10))
    with wrong, pytest.raises(AuthError, match=r"\(unauthorized\)"):
        wrong.list_blocks(sandbox.workspace_id)
    with sandbox_client(sandbox, "read_only") as client:
        assert len(client.list_blocks(sandbox.workspace_id)) == 4
        with pytest.raises(AuthError, match=r"\(forbidden"):
            client.upload_evidence(sandbox.workspace_id, screen())
    with sandbox_client(sandbox) as client:
        with pytest.raises(NotFoundError, match="workspace_not_found"):
            client.list_blocks(str(uuid.uuid4()))
        missing = str(uuid.uuid4())
        with pytest.raises(NotFoundError, match=f"Block {missing} is not in workspace"):
            client.upload_evidence(sandbox.workspace_id, screen(block_id=missing))
    assert sandbox.evidence() == []


def test_key_never_logged_at_debug(sandbox, caplog):
    # Per logger too: an in-process CLI run earlier in this worker leaves "collector" at INFO and
    # the HTTP libraries at WARNING (capture/logformat.py), which the root's level does not undo.
    for name in (None, "collector", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    with sandbox_client(sandbox) as client:
        client.list_blocks(sandbox.workspace_id)
        client.upload_evidence(sandbox.workspace_id, screen())
        with pytest.raises(NotFoundError):
            client.list_blocks(str(uuid.uuid4()))
    assert "HTTP 200" in caplog.text  # the client's own debug line was captured
    assert_no_key(caplog.text, key=sandbox.api_key)


@pytest.mark.parametrize(
    ("status", "expected"), [(200, ServerError), (408, ServerError), (429, RateLimitedError)]
)
def test_portal_and_cdn_pages_are_retried_not_failed(sandbox, tmp_path, status, expected):
    """A captive portal's 200 HTML, a 408, a CDN's HTML 429: transient, so evidence is not failed.

    Two such pages come back, then the network clears: the uploader sends the item three times
    and the real sandbox stores it once; nothing is marked failed.
    """
    from collector.delivery.spool import Spool
    from collector.delivery.uploader import Uploader

    page = "<html><body>Please log in to the Wi-Fi</body></html>"
    with mock_client(replying(status, text=page, headers={"content-type": "text/html"})) as client:
        with pytest.raises(expected) as info:
            client.list_blocks(WS)
    assert info.value.retryable and "\n" not in str(info.value)

    attempts = []
    upstream = httpx.Client(base_url=sandbox.base_url)

    def portal_then_sandbox(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.path)
        if len(attempts) <= 2:
            return httpx.Response(status, text=page, headers={"content-type": "text/html"})
        forward = upstream.build_request(
            request.method, request.url.path, headers=request.headers, content=request.content
        )
        reply = upstream.send(forward)
        return httpx.Response(reply.status_code, content=reply.content, headers=reply.headers)

    settings = ApiSettings(base_url=sandbox.base_url, api_key=ApiKey(sandbox.api_key), timeout_s=5)
    with Spool(tmp_path / "spool") as spool:
        spool.add(
            workspace_id=sandbox.workspace_id,
            evidence={"type": "screen", "mime_type": "image/png", "chunk_index": 0,
                      "metadata": {"capture_id": "cap", "stream_id": "screen:1", "collector_version": "t"}},
            data=b"\x89PNG fake",
        )  # fmt: skip
        uploader = Uploader(
            spool, settings, rate_per_min=6000, backoff_base_s=0.01, backoff_cap_s=0.05,
            client_factory=lambda s: OpenLessonClient(s, transport=httpx.MockTransport(portal_then_sandbox)),
        )  # fmt: skip
        uploader.start()
        try:
            assert uploader.wait_idle(20)
        finally:
            left = uploader.stop(2)
        counters = uploader.counters()
        assert left == 0 and spool.failed_count() == 0
    upstream.close()
    assert len(attempts) == 3 and counters["delivered"] == 1 and counters["failed"] == 0
    assert counters["retries"] == 2
    assert [r["chunk_index"] for r in sandbox.evidence(sandbox.workspace_id)] == [0]


def test_a_key_with_a_line_break_is_refused_before_any_request():
    for bad in ("sk_live_SECRET1\nsk_live_SECRET2", "sk_a b", "sk_\x07bell"):
        with pytest.raises(UsageError) as info:
            ApiKey(bad)
        assert "SECRET" not in str(info.value) and "one line" in str(info.value)


def test_an_echoed_authorization_header_is_redacted():
    client = OpenLessonClient(ApiSettings(base_url="http://127.0.0.1:9", api_key=ApiKey("sk_live_TOPSECRET")))
    try:
        text = client._one_line("proxy said: Authorization: Bearer sk_other_LEAKED and sk_live_TOPSECRET")
    finally:
        client.close()
    assert "LEAKED" not in text and "TOPSECRET" not in text and "sk_…" in text


def test_log_records_are_masked_whatever_logger_writes_them(caplog):
    """The record factory masks every registered key and any bearer token (httpcore's header lines)."""
    from collector.api import redaction

    redaction.install()
    key = ApiKey("sk_live_" + uuid.uuid4().hex)
    for name in (None, "httpcore"):  # see test_key_never_logged_at_debug
        caplog.set_level(logging.DEBUG, logger=name)
    logging.getLogger("httpcore.http11").debug(
        "receive_response_headers.complete return_value=%r", [(b"X-Echo", f"Bearer {key.reveal()}".encode())]
    )
    logging.getLogger("anything").warning("the key is %s", key.reveal())
    assert key.reveal() not in caplog.text and key.reveal()[3:] not in caplog.text
    assert "Bearer …" in caplog.text and "the key is sk_…" in caplog.text


def test_one_verifying_tls_context_per_process_and_none_loaded_for_plain_http(monkeypatch, sandbox):
    import ssl

    from collector.api import client as client_module

    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    built: list[object] = []
    real = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **k: built.append(k) or real(*a, **k))
    client_module._verified_context.cache_clear()
    https = ApiSettings(base_url="https://api.example.test", api_key=ApiKey(KEY), timeout_s=5)
    for _ in range(3):
        OpenLessonClient(https).close()
    assert len(built) == 1  # built once, shared by every client (it loads the CA bundle)
    ctx = client_module._tls_context("https://api.example.test")
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname and ctx.cert_store_stats()["x509_ca"]
    assert sandbox.base_url.startswith("http://")
    with sandbox_client(sandbox) as c:  # the real sandbox over http: requests still work
        assert [b.id for b in c.list_blocks(sandbox.workspace_id)] == sandbox.block_ids
    assert len(built) == 1  # no CA bundle loaded for a plain-http API
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.test:3128")
    assert (
        client_module._tls_context(sandbox.base_url) is client_module._verified_context()
    )  # a proxy may be TLS
