"""The sandbox server through raw HTTP (no collector client): contract, limits, faults, storage."""

from __future__ import annotations

import base64
import json
import stat
import time
import uuid
from pathlib import Path

import httpx
import pytest

from collector.api.client import OpenLessonClient
from collector.api.models import MAX_DECODED_BYTES
from collector.api.settings import ApiKey, ApiSettings
from collector.errors import NetworkError, RateLimitedError, ServerError
from collector.sandbox import SandboxServer, faults_from_env

API = "/api/v2/agent"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def http(sandbox, key_name: str | None = "member") -> httpx.Client:
    headers = {"Authorization": f"Bearer {sandbox.keys[key_name]}"} if key_name else {}
    return httpx.Client(base_url=sandbox.base_url + API, headers=headers, timeout=30)


def evidence_path(sandbox) -> str:
    return f"/workspaces/{sandbox.workspace_id}/evidence"


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


# ---- contract errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthorized"),
        ({"Authorization": "Basic abc"}, "unauthorized"),
        ({"Authorization": "Bearer xyz_notakey"}, "unauthorized"),
        ({"Authorization": "Bearer sk_unknown"}, "unauthorized"),
    ],
)
def test_missing_or_unknown_keys_are_unauthorized(sandbox, headers, code):
    with httpx.Client(base_url=sandbox.base_url + API, headers=headers) as client:
        assert_error(client.get(f"/workspaces/{sandbox.workspace_id}/blocks"), 401, code)


@pytest.mark.parametrize(
    ("key_name", "status", "code"),
    [
        ("revoked", 401, "key_revoked"),
        ("expired", 401, "key_expired"),
        ("teams_required", 403, "teams_required"),
        ("read_only", 403, "forbidden"),
    ],
)
def test_key_kinds_on_a_write(sandbox, key_name, status, code):
    with http(sandbox, key_name) as client:
        response = client.post(
            evidence_path(sandbox), json={"type": "eeg", "mime_type": "text/plain", "data": ""}
        )
    assert_error(response, status, code)


def test_guest_and_read_only_keys_can_read(sandbox):
    for name in ("guest", "read_only"):
        assert sandbox.keys[name].startswith("gsk_" if name == "guest" else "sk_")
        with http(sandbox, name) as client:
            assert client.get(f"/workspaces/{sandbox.workspace_id}/blocks").status_code == 200


def test_framework_errors_use_the_contract_body(sandbox):
    with http(sandbox) as client:
        assert_error(client.get("/no/such/route"), 404, "not_found")
        assert_error(client.delete(f"/workspaces/{sandbox.workspace_id}/blocks"), 405, "not_found")
        assert_error(client.post(evidence_path(sandbox), content=b"{not json"), 400, "validation_error")
        assert_error(client.post(evidence_path(sandbox), content=b"[1, 2]"), 400, "validation_error")
        err = assert_error(client.post(evidence_path(sandbox), json={"type": "eeg"}), 400, "validation_error")
        assert {e["field"] for e in err["details"]["errors"]} == {"mime_type", "data"}
        # FastAPI's own validation (a typed query parameter) answers with the contract body too.
        err = assert_error(
            client.get(evidence_path(sandbox), params={"block_id": "x"}), 400, "validation_error"
        )
        assert err["details"]["errors"][0]["field"] == "query.block_id"


def test_workspace_and_block_not_found(sandbox):
    ok = {"type": "tool", "mime_type": "application/json", "data": b64(b"{}")}
    with http(sandbox) as client:
        assert_error(client.get(f"/workspaces/{uuid.uuid4()}/blocks"), 404, "workspace_not_found")
        assert_error(client.get("/workspaces/not-a-uuid/blocks"), 404, "workspace_not_found")
        missing = str(uuid.uuid4())
        err = assert_error(
            client.post(evidence_path(sandbox), json={**ok, "block_id": missing}), 404, "block_not_found"
        )
        assert err["details"] == {"workspace_id": sandbox.workspace_id, "block_id": missing}
        perf = f"/workspaces/{sandbox.workspace_id}/performance"
        assert_error(client.post(perf, json={"block_id": missing}), 404, "block_not_found")
        assert_error(client.post(perf, json={"block_id": "nope"}), 400, "validation_error")
    assert sandbox.evidence() == []


# ---- MIME table and the 10 MB limit, enforced without the client ------------------------------


@pytest.mark.parametrize(
    ("kind", "mime", "accepted"),
    [
        ("tool", "text/markdown", True),
        ("screen", "image/webp", True),
        ("screenshot", "image/jpeg", True),
        ("video", "video/quicktime", True),
        ("eeg", "text/plain", True),
        ("eeg", "image/png", False),
        ("screen", "application/json", False),
        ("video", "image/png", False),
        ("tool", "video/mp4", False),
        ("audio", "audio/wav", False),
    ],
)
def test_mime_table(sandbox, kind, mime, accepted):
    with http(sandbox) as client:
        response = client.post(
            evidence_path(sandbox), json={"type": kind, "mime_type": mime, "data": b64(b"x")}
        )
    if accepted:
        assert response.status_code == 201, response.text
    else:
        assert_error(response, 400, "validation_error")


def test_ten_megabyte_limit_on_decoded_bytes(sandbox):
    with http(sandbox) as client:
        at_limit = {"type": "tool", "mime_type": "text/plain", "data": b64(b"a" * MAX_DECODED_BYTES)}
        response = client.post(evidence_path(sandbox), json=at_limit)
        assert response.status_code == 201 and response.json()["evidence"]["file_size"] == MAX_DECODED_BYTES
        over = {**at_limit, "data": b64(b"a" * (MAX_DECODED_BYTES + 1))}
        err = assert_error(client.post(evidence_path(sandbox), json=over), 400, "validation_error")
    assert "10 MB" in err["message"]
    assert len(sandbox.evidence()) == 1


def test_bad_base64_is_a_validation_error(sandbox):
    with http(sandbox) as client:
        body = {"type": "tool", "mime_type": "text/plain", "data": "not base64!"}
        assert_error(client.post(evidence_path(sandbox), json=body), 400, "validation_error")


# ---- storage ----------------------------------------------------------------------------------


def test_evidence_rows_and_artifacts_are_stored_and_listed(sandbox):
    eeg = {
        "type": "eeg",
        "mime_type": "application/json",
        "data": b64(b'{"samples": [1, 2]}'),
        "block_id": sandbox.block_ids[0],
        "band_powers": {"alpha": 0.2, "beta": 0.4},
        "device_name": "Muse",
        "sample_count": 256,
        "timestamp_ms": 1_700_000_000_000,
        "metadata": {"chunk_id": "abc"},
    }
    with http(sandbox) as client:
        first = client.post(evidence_path(sandbox), json=eeg).json()["evidence"]
        second = client.post(
            evidence_path(sandbox), json={"type": "screenshot", "mime_type": "image/png", "data": b64(b"png")}
        ).json()["evidence"]
        listing = client.get(evidence_path(sandbox)).json()
        in_block = client.get(evidence_path(sandbox), params={"block_id": sandbox.block_ids[0]}).json()
    assert first["type"] == "eeg" and first["timestamp_ms"] == 1_700_000_000_000
    assert first["file_name"] == "eeg-0.json" and first["device_name"] == "Muse"
    assert second["type"] == "screen"  # screenshot is stored as screen
    rows = sandbox.evidence()
    assert [r["id"] for r in rows] == [first["id"], second["id"]]
    assert rows[0]["band_powers"] == {"alpha": 0.2, "beta": 0.4} and rows[0]["metadata"] == {
        "chunk_id": "abc"
    }
    assert Path(rows[0]["artifact_path"]).read_bytes() == b'{"samples": [1, 2]}'
    assert sandbox.read_artifact(second["id"]) == b"png"
    assert listing["sandbox_only"] is True and [r["id"] for r in listing["evidence"]] == [
        r["id"] for r in rows
    ]
    assert [r["id"] for r in in_block["evidence"]] == [first["id"]]


def test_restart_keeps_keys_workspace_and_evidence(tmp_path):
    data = tmp_path / "data"
    with SandboxServer(data) as first:
        keys, workspace_id, blocks = dict(first.keys), first.workspace_id, list(first.block_ids)
        with http(first) as client:
            client.post(
                evidence_path(first), json={"type": "tool", "mime_type": "text/plain", "data": b64(b"t")}
            )
    with SandboxServer(data) as second:
        assert (second.keys, second.workspace_id, second.block_ids) == (keys, workspace_id, blocks)
        with http(second) as client:
            assert client.get(f"/workspaces/{workspace_id}/blocks").status_code == 200
        assert len(second.evidence()) == 1


def test_keys_are_only_in_the_0600_key_file(sandbox):
    with http(sandbox) as client:
        client.post(evidence_path(sandbox), json={**tool_evidence(), "metadata": {"note": "nothing secret"}})
        plan = {"name": "a.txt", "mime_type": "text/plain", "data": b64(b"plan")}
        client.post("/workspaces", json={"initial_prompt": "p", "files": [plan]})
    key_file = sandbox.data_dir / "keys.txt"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert sandbox.api_key in key_file.read_text()
    files = [p for p in sandbox.data_dir.rglob("*") if p.is_file() and p != key_file]
    assert any(p.suffix == ".db" for p in files) and any("artifacts" in p.parts for p in files)
    for path in files:
        content = path.read_bytes()
        for key in sandbox.keys.values():
            assert key.encode() not in content, path


# ---- performance ------------------------------------------------------------------------------


def test_performance_is_deterministic_and_answers_without_evidence(sandbox):
    perf = f"/workspaces/{sandbox.workspace_id}/performance"
    with http(sandbox) as client:
        empty_report = client.post(perf, json={})
        empty_chat = client.post(perf, json={"prompt": "Anything?"})
        assert empty_report.status_code == empty_chat.status_code == 200
        assert empty_report.json()["report"]["confidence"] == "emerging"
        for alpha in (0.2, 0.4):
            eeg = {
                "type": "eeg",
                "mime_type": "application/json",
                "data": b64(b"{}"),
                "band_powers": {"alpha": alpha},
            }
            client.post(evidence_path(sandbox), json=eeg)
        report = client.post(perf, json={}).json()
        again = client.post(perf).json()  # an empty body is report mode too
        chat = client.post(perf, json={"prompt": "How is my focus?"}).json()
    assert report == again
    assert report["mode"] == "report" and report["evidence_summary"]["evidence_artifacts"] == 2
    assert "Sandbox report" in report["report"]["summary"] and "alpha 0.3" in report["report"]["summary"]
    assert "eeg 2" in report["report"]["summary"]
    assert chat["mode"] == "chat" and chat["response"].startswith("### Sandbox report")
    assert "> How is my focus?" in chat["response"]


# ---- rate limit -------------------------------------------------------------------------------


def test_rate_limit_per_key_with_retry_after(sandbox_factory):
    sandbox = sandbox_factory(rate_limit_per_min=3)
    path = f"/workspaces/{sandbox.workspace_id}/blocks"
    with http(sandbox) as member, http(sandbox, "guest") as guest:
        assert [member.get(path).status_code for _ in range(3)] == [200, 200, 200]
        limited = member.get(path)
        assert_error(limited, 429, "rate_limit_exceeded")
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert guest.get(path).status_code == 200  # the limit is per key
    client = OpenLessonClient(ApiSettings(sandbox.base_url, ApiKey(sandbox.api_key)))
    with client, pytest.raises(RateLimitedError) as info:
        client.list_blocks(sandbox.workspace_id)
    assert info.value.retryable and info.value.retry_after_s >= 1


def test_refused_requests_count_against_the_key_for_every_client(sandbox_factory):
    # A 3 s window with the ratio of 120/min (6 per 3 s); two connections share one key.
    sandbox = sandbox_factory(rate_window_s=3.0)
    assert (sandbox.limiter.limit, sandbox.limiter.window_s) == (6, 3.0)
    path = f"/workspaces/{sandbox.workspace_id}/blocks"
    with http(sandbox) as a, http(sandbox) as b:
        t0 = time.monotonic()
        assert [c.get(path).status_code for c in (a, b, a, b, a, b)] == [200] * 6
        time.sleep(1.5)
        refused = [c.get(path) for c in (a, b, a, b, a, b)]  # a client that keeps hammering
        assert [r.status_code for r in refused] == [429] * 6
        assert "6 requests in 3 s" in refused[0].json()["error"]["message"]
        # The admitted requests have aged out, but the six refused ones still fill the window.
        time.sleep(max(0.0, t0 + 3.2 - time.monotonic()))
        late = a.get(path)
        assert late.status_code == 429, "refused requests must keep counting against the key"
        assert 1 <= int(late.headers["retry-after"]) <= 2
        time.sleep(int(late.headers["retry-after"]) + 0.2)
        assert b.get(path).status_code == 200
    key = next(iter(sandbox.limiter.refused))
    assert sandbox.limiter.refused[key] == 7 and sandbox.limiter.admitted[key] == 7


# ---- fault injection --------------------------------------------------------------------------


def tool_evidence(i: int = 0) -> dict:
    return {"type": "tool", "mime_type": "text/plain", "data": b64(b"t"), "metadata": {"i": i}}


def test_injected_503_and_429(sandbox_factory):
    sandbox = sandbox_factory(fail_503=1.0)
    with http(sandbox) as client:
        assert_error(client.post(evidence_path(sandbox), json=tool_evidence()), 503, "service_unavailable")
        sandbox.set_faults(fail_503=0.0, fail_429=1.0)
        response = client.post(evidence_path(sandbox), json=tool_evidence())
        assert_error(response, 429, "rate_limit_exceeded")
        assert response.headers["retry-after"] == "1"
        sandbox.set_faults(fail_429=0.0)
        assert client.post(evidence_path(sandbox), json=tool_evidence()).status_code == 201
        assert client.get(evidence_path(sandbox)).status_code == 200
    assert len(sandbox.evidence()) == 1  # injected errors happen before anything is stored


def test_lost_reply_drops_the_connection_after_storing(sandbox_factory):
    sandbox = sandbox_factory(lose_reply=1.0)
    with http(sandbox) as client, pytest.raises(httpx.RemoteProtocolError):
        client.post(evidence_path(sandbox), json=tool_evidence(7))
    assert [r["metadata"] for r in sandbox.evidence()] == [{"i": 7}]
    client = OpenLessonClient(ApiSettings(sandbox.base_url, ApiKey(sandbox.api_key)))
    with client, pytest.raises(NetworkError, match="may or may not have been applied"):
        client.list_blocks(sandbox.workspace_id)


@pytest.mark.parametrize("fault", ["fail_503", "fail_429", "lose_reply"])
def test_injected_faults_are_retried_until_delivered(sandbox_factory, tmp_path, fault):
    """Not only flagged retryable: the uploader really sends again, and the item arrives once fixed."""
    from collector.delivery.spool import Spool
    from collector.delivery.uploader import Uploader

    sandbox = sandbox_factory(**{fault: 1.0})
    with OpenLessonClient(ApiSettings(sandbox.base_url, ApiKey(sandbox.api_key))) as client:
        with pytest.raises((ServerError, RateLimitedError, NetworkError)) as info:
            client.list_blocks(sandbox.workspace_id)
        # NetworkError (a dropped reply) is always retried; API errors say so themselves.
        assert getattr(info.value, "retryable", True)
    settings = ApiSettings(sandbox.base_url, ApiKey(sandbox.api_key), timeout_s=5)
    with Spool(tmp_path / "spool") as spool:
        spool.add(
            workspace_id=sandbox.workspace_id,
            evidence={"type": "tool", "mime_type": "text/plain", "chunk_index": 0,
                      "metadata": {"capture_id": "c", "stream_id": "tool:1", "collector_version": "t"}},
            data=b"t",
        )  # fmt: skip
        uploader = Uploader(spool, settings, rate_per_min=6000, backoff_base_s=0.05, backoff_cap_s=0.2)
        uploader.start()
        try:
            deadline = time.monotonic() + 20
            while len([r for r in sandbox.requests() if r["method"] == "POST"]) < 3:
                assert time.monotonic() < deadline, sandbox.requests()
                time.sleep(0.02)
            sandbox.set_faults(**{fault: 0.0})  # the fault clears
            assert uploader.wait_idle(30)
        finally:
            left = uploader.stop(2)
        assert left == 0 and spool.failed_count() == 0
    posts = [r["status"] for r in sandbox.requests() if r["method"] == "POST"]
    assert len(posts) >= 4 and posts[-1] == 201
    stored = [r for r in sandbox.evidence() if r["metadata"]["stream_id"] == "tool:1"]
    # A lost reply stores the evidence each time; the duplicates carry the same identity.
    assert stored and {r["chunk_index"] for r in stored} == {0}
    if fault != "lose_reply":
        assert len(stored) == 1 and posts[:3] == [int(fault[5:])] * 3


def outcomes(sandbox, n: int) -> list[int]:
    with http(sandbox) as client:
        return [client.get(f"/workspaces/{sandbox.workspace_id}/blocks").status_code for _ in range(n)]


def test_seeded_fault_shares_repeat(sandbox_factory):
    a = outcomes(sandbox_factory(fail_503=0.3, fail_429=0.3, seed=42), 30)
    b = outcomes(sandbox_factory(fail_503=0.3, fail_429=0.3, seed=42), 30)
    assert a == b
    assert {200, 429, 503} == set(a)


def test_latency_is_added(sandbox_factory):
    sandbox = sandbox_factory(latency_ms=300)
    started = time.monotonic()
    outcomes(sandbox, 2)
    assert time.monotonic() - started >= 0.6  # a lower bound only: no upper bound on a shared machine


def test_fault_settings_validation_and_env():
    env = {
        "COLLECTOR_SANDBOX_FAIL_503": "0.1",
        "COLLECTOR_SANDBOX_SEED": "3",
        "COLLECTOR_SANDBOX_LATENCY_MS": "",
    }
    assert faults_from_env(env) == {"fail_503": 0.1, "seed": 3}
    with pytest.raises(ValueError, match="COLLECTOR_SANDBOX_LOSE_REPLY"):
        faults_from_env({"COLLECTOR_SANDBOX_LOSE_REPLY": "lots"})


def test_bad_fault_shares_are_refused(tmp_path):
    with pytest.raises(ValueError):
        SandboxServer(tmp_path / "a", fail_503=0.7, fail_429=0.7)
    server = SandboxServer(tmp_path / "b")
    try:
        with pytest.raises(TypeError):
            server.set_faults(explode=1.0)
        with pytest.raises(ValueError):
            server.set_faults(lose_reply=2.0)
    finally:
        server.stop()


def test_from_env_reads_faults(tmp_path):
    server = SandboxServer.from_env(tmp_path, env={"COLLECTOR_SANDBOX_FAIL_429": "0.25"}, lose_reply=0.5)
    try:
        assert server.fault_settings() == {
            "fail_503": 0.0,
            "fail_429": 0.25,
            "lose_reply": 0.5,
            "latency_ms": 0.0,
            "reject_chunk": None,
        }
    finally:
        server.stop()


def test_reject_chunk_answers_validation_error_for_that_chunk_only(sandbox_factory):
    sandbox = sandbox_factory(reject_chunk=1)
    with http(sandbox) as client:
        for i in range(3):
            response = client.post(evidence_path(sandbox), json={**tool_evidence(i), "chunk_index": i})
            if i == 1:
                body = assert_error(response, 400, "validation_error")
                assert "chunk_index 1" in body["message"]
                assert body["details"] == {"field": "chunk_index"}
            else:
                assert response.status_code == 201
        sandbox.set_faults(reject_chunk=None)  # the cause is fixed
        assert (
            client.post(evidence_path(sandbox), json={**tool_evidence(1), "chunk_index": 1}).status_code
            == 201
        )
    assert sorted(r["chunk_index"] for r in sandbox.evidence()) == [0, 1, 2]
    with pytest.raises(ValueError):
        sandbox.set_faults(reject_chunk=-1)
    assert faults_from_env({"COLLECTOR_SANDBOX_REJECT_CHUNK": "4"}) == {"reject_chunk": 4}


def test_requests_are_recorded_with_arrival_and_status(sandbox_factory):
    sandbox = sandbox_factory(fail_503=1.0)
    before = time.monotonic()
    with http(sandbox) as client:
        client.post(evidence_path(sandbox), json=tool_evidence())
        sandbox.set_faults(fail_503=0.0)
        client.post(evidence_path(sandbox), json=tool_evidence())
        client.get(evidence_path(sandbox))  # sandbox-only listing: not a contract request, not recorded
    seen = sandbox.requests()
    assert [(r["method"], r["status"]) for r in seen] == [("POST", 503), ("POST", 201)]
    assert before <= seen[0]["t"] <= seen[1]["t"] <= time.monotonic()


def test_error_bodies_are_json_for_every_route_kind(sandbox):
    # Unknown routes outside the API prefix get the contract body too.
    response = httpx.get(sandbox.base_url + "/")
    assert_error(response, 404, "not_found")
    assert json.loads(response.text)["error"]["message"].endswith("GET /")
