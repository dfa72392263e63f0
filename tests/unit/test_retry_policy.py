"""Which answers fail an item for good, and how long a retry waits: pure logic (issue 24, 6 and 7).

The classifier is fed by the real client (collector/api/client.py) answering through an in-memory
httpx transport, so a status reaches `classify` the way a server's answer would. The expected sets
and bounds are the documented ones (docs/reference/data-flow.md, "Only the API's own JSON error is
final" and "Back-off"), written out here, not read from the code.
"""

from __future__ import annotations

import json
import random

import httpx
import pytest

from collector.api.client import OpenLessonClient
from collector.api.models import EvidenceCreate
from collector.api.settings import ApiKey, ApiSettings
from collector.delivery.failures import Outcome, classify, retry_delay_s
from collector.delivery.uploader import Uploader
from collector.errors import CollectorError, NetworkError, ServerError

WS = "0b7e2c1a-8f3d-4c5e-9a6b-1d2e3f4a5b6c"
SETTINGS = ApiSettings(base_url="http://api.invalid", api_key=ApiKey("sk_test_retry_policy_0123456789"))
EVIDENCE = EvidenceCreate(type="eeg", mime_type="application/json", data="e30=", chunk_index=0)

# The documented set: the API's JSON error with these statuses keeps the item as failed for good.
AUTH, PARKED, RETRIED_4XX = {401, 403}, {404}, {408, 425, 429}
PERMANENT = {s for s in range(400, 500) if s not in AUTH | PARKED | RETRIED_4XX} | {501, 505}


class MaxRandom(random.Random):
    """Full jitter at its top: every draw is the bound itself, so a delay shows its bound."""

    def uniform(self, a: float, b: float) -> float:
        return b


def outcome_of(status: int, body: bytes, content_type: str = "application/json") -> Outcome:
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": content_type})

    with OpenLessonClient(SETTINGS, transport=httpx.MockTransport(reply)) as client:
        with pytest.raises(CollectorError) as info:
            client.upload_evidence(WS, EVIDENCE)
    return classify(info.value)


def api_error(code: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": "no", "details": {}}}).encode()


@pytest.mark.parametrize("status", range(400, 600))
def test_the_apis_json_error_fails_an_item_for_good_exactly_for_the_documented_statuses(status):
    # A code the contract does not list: the HTTP status alone decides.
    got = outcome_of(status, api_error(f"status_{status}"))
    if status in PERMANENT:
        assert got is Outcome.FAIL, f"HTTP {status} is documented as final, got {got}"
    else:
        assert got is not Outcome.FAIL, f"HTTP {status} is documented as retried, but fails the item"
    expected = {401: Outcome.PAUSE, 403: Outcome.PAUSE, 404: Outcome.PARK, 429: Outcome.THROTTLE}
    if status in expected:
        assert got is expected[status]
    elif status not in PERMANENT:
        assert got is Outcome.RETRY


@pytest.mark.parametrize("status", [400, 413, 422, 501, 505, 503])
def test_answers_that_are_not_the_apis_json_error_are_always_retried(status):
    page = f"<html><body>{status}</body></html>".encode()
    assert outcome_of(status, page, "text/html") is Outcome.RETRY
    assert outcome_of(status, b'{"detail": "nope"}') is Outcome.RETRY  # JSON, but not the contract's


@pytest.mark.parametrize("status", [400, 422])
def test_validation_error_fails_the_item(status):
    assert outcome_of(status, api_error("validation_error")) is Outcome.FAIL


def test_retry_back_off_doubles_with_each_failed_attempt_up_to_its_cap():
    base_s, cap_s = 0.5, 60.0
    err = NetworkError("connection dropped")
    bounds = [retry_delay_s(err, attempt, base_s, cap_s, MaxRandom()) for attempt in range(12)]
    # The documented bound of the n-th retry: min(60 s, 0.5 s x 2**(n-1)).
    assert bounds == [min(cap_s, base_s * 2**n) for n in range(12)], (
        f"bounds {bounds}: not doubling up to 60 s"
    )
    assert bounds[:7] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0] and set(bounds[7:]) == {60.0}
    # Full jitter: random below that bound, never above it, even after a very long outage.
    rng = random.Random(7)
    for attempt in (0, 3, 8, 40, 10_000):
        bound = cap_s if attempt > 20 else min(cap_s, base_s * 2**attempt)
        draws = [retry_delay_s(err, attempt, base_s, cap_s, rng) for _ in range(200)]
        assert 0.0 <= min(draws) and max(draws) <= bound
        assert max(draws) > 0.5 * bound  # it does spread up to it


def test_a_longer_retry_after_wins_over_the_back_off():
    err = ServerError("busy", code="status_503", status=503, from_api=True, retry_after_s=90.0)
    assert retry_delay_s(err, 0, 0.5, 60.0, MaxRandom()) == 90.0
    short = ServerError("busy", code="status_503", status=503, from_api=True, retry_after_s=0.1)
    assert retry_delay_s(short, 5, 0.5, 60.0, MaxRandom()) == 16.0


def test_the_uploaders_back_off_defaults_are_the_documented_ones():
    import inspect

    params = inspect.signature(Uploader).parameters
    assert params["backoff_base_s"].default == 0.5 and params["backoff_cap_s"].default == 60.0
