"""Counters, fault injection and the control endpoints."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import pytest

pytestmark = pytest.mark.sandbox


def test_it_counts_requests_per_endpoint_and_users_created(api, vpp_sandbox):
    before = time.time()
    api.finished(api.create({"clientUserId": "a"}, {"clientUserId": "b"}))
    api.create({"clientUserId": "c"})
    api.get("/users", token=None)
    counters = vpp_sandbox.counters()
    assert counters["endpoints"]["POST /mdm/v2/users/create"] == 2
    assert counters["endpoints"]["GET /mdm/v2/users"] == 1
    assert (counters["create_calls"], counters["users_created"]) == (2, 3)
    creates = [r for r in counters["requests"] if r["path"] == "/mdm/v2/users/create"]
    assert all(before <= r["t"] <= time.time() and r["status"] == 200 for r in creates)
    assert creates[0]["location"] == vpp_sandbox.location
    assert [r["status"] for r in counters["requests"] if r["path"] == "/mdm/v2/users"] == [401]


def test_it_resets_state_counters_and_faults(api, vpp_sandbox):
    api.finished(api.create({"clientUserId": "a"}))
    vpp_sandbox.control(page_size=1)
    vpp_sandbox.reset()
    assert vpp_sandbox.users() == []
    assert vpp_sandbox.counters()["total_requests"] == 0
    assert vpp_sandbox.faults()["page_size"] == 500


def test_it_rejects_unknown_or_ill_typed_faults(vpp_sandbox):
    for faults in ({"no_such_fault": 1}, {"page_size": "big"}, {"fail_status": 404}, {"retry_after_form": "x"}):
        with pytest.raises(RuntimeError, match="400"):
            vpp_sandbox.control(**faults)


def test_it_answers_the_next_n_requests_with_5xx_and_retry_after_seconds(api, vpp_sandbox):
    vpp_sandbox.control(fail_next=2, retry_after=7)
    for _ in range(2):
        response = api.get("/users")
        api.error(response, 9729, 503)
        assert response.headers["Retry-After"] == "7"
    api.ok("GET", "/users")


def test_it_sends_retry_after_as_an_http_date(api, vpp_sandbox):
    vpp_sandbox.control(fail_next=1, fail_status=500, retry_after=120, retry_after_form="http-date")
    response = api.get("/users")
    api.error(response, 9603, 500)
    wait = parsedate_to_datetime(response.headers["Retry-After"]).timestamp() - time.time()
    assert 60 < wait <= 121


def test_it_fails_a_share_of_requests(api, vpp_sandbox):
    vpp_sandbox.control(fail_share=1.0, retry_after=None)
    response = api.get("/users")
    api.error(response, 9729, 503)
    assert "Retry-After" not in response.headers
    vpp_sandbox.control(fail_share=0.0)
    api.ok("GET", "/users")


def test_it_rate_limits_per_location_with_429_9646(api, vpp_sandbox):
    vpp_sandbox.control(rps_limit=3, rate_limit_retry_after=1)
    statuses = [api.get("/users").status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200]
    assert 429 in statuses[3:]
    limited = api.get("/users")
    if limited.status_code == 429:  # the window may have moved on on a slow machine
        api.error(limited, 9646, 429)
        assert limited.headers["Retry-After"] == "1"
    other = vpp_sandbox.mint_token(location="other")
    assert api.get("/users", token=other).status_code == 200


def test_it_fails_a_share_of_async_items_with_9603(api, vpp_sandbox):
    vpp_sandbox.control(async_failure_share=1.0)
    status = api.finished(api.create({"clientUserId": "a"}, {"clientUserId": "b"}))
    assert (status["eventStatus"], status["numCompleted"]) == ("FAILED", 0)
    assert status["failures"][0]["errorNumber"] == 9603
    assert sorted(status["failures"][0]["errorInfo"]["clientUserIds"]) == ["a", "b"]


def test_it_adds_latency(api, vpp_sandbox):
    vpp_sandbox.control(latency=0.3)
    started = time.monotonic()
    api.ok("GET", "/users")
    assert time.monotonic() - started >= 0.3


def test_it_lists_its_control_routes(vpp_sandbox):
    routes = vpp_sandbox._call("GET", "")["routes"]
    assert "POST /_sandbox/faults" in routes
    assert "GET /_sandbox/state/users" in routes


def test_it_mints_tokens_from_the_command_line():
    from io import StringIO

    from django.core.management import call_command

    from vpp.sandbox.tokens import decode_token

    out = StringIO()
    call_command("vpp_sandbox_token", "--org", "Acme", "--location", "loc9", "--expired", stdout=out)
    token = decode_token(out.getvalue().strip())
    assert (token.org_name, token.location, token.expired()) == ("Acme", "loc9", True)
    out = StringIO()
    call_command("vpp_sandbox_token", "--expires-in-days", "3", stdout=out)
    assert not decode_token(out.getvalue().strip()).expired()


def test_it_leaves_out_or_filters_the_request_log(api, vpp_sandbox):
    api.get("/users")
    middle = time.time()
    api.get("/assets")
    assert "requests" not in vpp_sandbox._call("GET", "counters", params={"requests": "0"})
    recent = vpp_sandbox._call("GET", "counters", params={"since": middle})["requests"]
    assert [r["path"] for r in recent] == ["/mdm/v2/assets"]


def test_the_rate_window_counts_requests_that_reach_the_lock_out_of_order():
    from vpp.sandbox.options import Options
    from vpp.sandbox.service import ApiError, Sandbox

    sandbox = Sandbox(Options(rps_limit=2))
    sandbox.check_rate("loc", 10.9)
    sandbox.check_rate("loc", 10.2)  # arrived earlier, its handler thread got the lock later
    with pytest.raises(ApiError):
        sandbox.check_rate("loc", 11.0)  # 10.2 and 10.9 are both within the last second
    sandbox.check_rate("loc", 11.5)  # 10.2 has left the window even though 10.9 was counted first
