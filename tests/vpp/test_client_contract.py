"""Contract tests: VppClient against the sandbox over real HTTP (the `vpp_sandbox` fixture)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.redis_db import delete_prefix, rate_limiter, redis_client, redis_url, unique_prefix
from tests.support.vpp_api import max_in_any_window
from vpp.apple.client import VppClient
from vpp.apple.errors import (
    ERROR_MESSAGES,
    EventTimeoutError,
    InvalidRequestError,
    RateLimitedError,
    ServiceUnavailableError,
    TokenExpiredError,
    TokenInvalidError,
    TokenRevokedError,
)
from vpp.apple.types import MdmInfo, RequestUser, managed_by_other_mdm

pytestmark = pytest.mark.sandbox
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client_for(vpp_sandbox):
    def make(token: str | None = None, **kwargs) -> VppClient:
        kwargs.setdefault("rate_limiter", rate_limiter())
        kwargs.setdefault("backoff_base", 0.01)
        kwargs.setdefault("backoff_max", 0.05)
        return VppClient(token or vpp_sandbox.token, base_url=vpp_sandbox.base_url, **kwargs)

    return make


@pytest.fixture
def client(client_for):
    return client_for()


def endpoint_count(sandbox, key: str) -> int:
    return sandbox.counters()["endpoints"].get(key, 0)


def create_and_wait(client, ids, **user_kwargs):
    events = client.create_users([RequestUser(cid, **user_kwargs) for cid in ids])
    return [client.wait_for_event(e, poll_interval=0.02, timeout=10) for e in events]


def test_it_reads_service_config_and_builds_the_sandbox_invitation_link(vpp_sandbox, client):
    vpp_sandbox.control(limits={"maxUsers": 42, "maxRevokeClientUserIds": 7})
    config = client.service_config()
    assert (config.max_users, config.max_revoke_client_user_ids) == (42, 7)
    assert config.max_request_per_second == 15
    assert config.error_codes[9716]
    assert config.invitation_url("abc").startswith(vpp_sandbox.root_url)
    assert config.invitation_url("abc").endswith("inviteCode=abc")


def test_client_config_round_trip_and_other_mdm_detection(vpp_sandbox, client):
    before = client.client_config()
    assert before.location_name and before.token_expires_at is not None and before.uid
    assert before.mdm_info is None
    after = client.update_client_config(mdm_info=MdmInfo(id="our-id", name="kmconsole", metadata="v1"))
    assert after.mdm_info == MdmInfo(id="our-id", name="kmconsole", metadata="v1")
    assert not managed_by_other_mdm(client.client_config().mdm_info, "our-id")
    assert managed_by_other_mdm(client.last_meta.mdm_info, "another-installation")


def test_it_creates_250_users_in_3_requests_at_maxUsers_100(vpp_sandbox, client):
    vpp_sandbox.control(limits={"maxUsers": 100})
    ids = [f"user-{i:03d}" for i in range(250)]
    statuses = create_and_wait(client, ids, email=None)
    counters = vpp_sandbox.counters()
    assert counters["create_calls"] == 3 and counters["users_created"] == 250
    assert [s.num_requested for s in statuses] == [100, 100, 50]
    assert all(s.status == "COMPLETE" and not s.failures for s in statuses)
    records = vpp_sandbox.users()
    assert sorted(r["clientUserId"] for r in records) == ids
    assert all(r["status"] == "Registered" and r["inviteCode"] for r in records)


def test_it_pages_through_users_and_reads_deltas(vpp_sandbox, client):
    vpp_sandbox.control(page_size=7)
    create_and_wait(client, [f"u{i:02d}" for i in range(20)])
    listing = client.iter_users()
    users = list(listing)
    assert sorted(u.client_user_id for u in users) == [f"u{i:02d}" for i in range(20)]
    assert endpoint_count(vpp_sandbox, "GET /mdm/v2/users") == 3
    version = listing.version_id
    assert version
    create_and_wait(client, ["late-1", "late-2"])
    delta = list(client.iter_users(since_version_id=version))
    assert sorted(u.client_user_id for u in delta) == ["late-1", "late-2"]
    empty = client.iter_users(since_version_id=client.iter_users().version_id)
    assert list(empty) == []


def test_get_update_retire_and_recreate_a_user(vpp_sandbox, client):
    create_and_wait(client, ["alice"], email="alice@example.org")
    user = client.get_user("alice")
    assert user.status == "Registered" and user.invite_code and user.email == "alice@example.org"
    [event] = client.update_users([RequestUser("alice", email="alice@new.example.org")])
    assert client.wait_for_event(event, poll_interval=0.02, timeout=10).status == "COMPLETE"
    assert client.get_user("alice").email == "alice@new.example.org"
    [event] = client.retire_users(["alice"])
    assert client.wait_for_event(event, poll_interval=0.02, timeout=10).event_type == "RETIRE"
    assert client.get_user("alice") is None
    assert [u.status for u in client.iter_users(retired_only=True)] == ["Retired"]
    create_and_wait(client, ["alice"])  # a retired user may be invited again: a new record
    statuses = sorted(u.status for u in client.iter_users(client_user_id="alice"))
    assert statuses == ["Registered", "Retired"]


def test_creating_an_active_user_fails_asynchronously_with_9716_as_data(vpp_sandbox, client):
    create_and_wait(client, ["bob"])
    [status] = create_and_wait(client, ["bob", "carol"])
    assert status.status == "FAILED" and status.num_completed == 1
    [failure] = status.failures
    assert failure.error_number == 9716 and failure.client_user_ids == ["bob"]
    assert failure.message == ERROR_MESSAGES[9716]


def test_assets_assignments_and_revoke(vpp_sandbox, client):
    vpp_sandbox.control(limits={"maxRevokeClientUserIds": 2})
    create_and_wait(client, ["dave"])
    vpp_sandbox.accept_invitation(client.get_user("dave").invite_code)
    assert client.get_user("dave").status == "Associated"
    assignments = list(client.iter_assignments(client_user_id="dave"))
    assert assignments and assignments[0].user_status == "Associated"
    adam_id = assignments[0].adam_id
    assigned_before = next(a for a in client.list_assets() if a.adam_id == adam_id).assigned_count
    events = client.revoke_assets(client_user_ids=["dave", "x1", "x2"])
    assert len(events) == 2 and endpoint_count(vpp_sandbox, "POST /mdm/v2/assets/revoke") == 2
    for event in events:
        assert client.wait_for_event(event, poll_interval=0.02, timeout=10).event_type == "REVOKE"
    assert list(client.iter_assignments(client_user_id="dave")) == []
    assert next(a for a in client.list_assets() if a.adam_id == adam_id).assigned_count == assigned_before - 1


def test_an_unknown_event_is_a_permanent_9708(client):
    with pytest.raises(InvalidRequestError) as info:
        client.event_status("00000000-0000-0000-0000-000000000000")
    assert info.value.error_number == 9708


def test_invalid_requests_are_mapped_and_not_retried(vpp_sandbox, client):
    with pytest.raises(InvalidRequestError) as info:
        client.create_users([RequestUser("eve", email="not-an-email")])
    assert info.value.error_number == 9717 and info.value.http_status == 400
    assert vpp_sandbox.counters()["create_calls"] <= 1
    assert endpoint_count(vpp_sandbox, "POST /mdm/v2/users/create") == 1


@pytest.mark.parametrize(
    ("token_kind", "error"),
    [("expired", TokenExpiredError), ("revoked", TokenRevokedError), ("malformed", TokenInvalidError)],
)
@pytest.mark.parametrize("http_200", [False, True], ids=["http-401", "http-200"])
def test_token_problems_are_distinct_permanent_errors(vpp_sandbox, client_for, token_kind, error, http_200):
    token = {
        "expired": vpp_sandbox.mint_token(expired=True),
        "revoked": vpp_sandbox.token,
        "malformed": "bm90IGEgdG9rZW4=",
    }[token_kind]
    if token_kind == "revoked":
        vpp_sandbox.revoke_token()
    vpp_sandbox.control(errors_with_http_200=http_200)
    with pytest.raises(error) as info:
        client_for(token).client_config()
    assert info.value.http_status == (200 if http_200 else 401)
    assert endpoint_count(vpp_sandbox, "GET /mdm/v2/client/config") == 1


def test_a_token_expired_at_run_time(vpp_sandbox, client):
    client.client_config()
    vpp_sandbox.expire_token()
    with pytest.raises(TokenExpiredError):
        client.list_assets()


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_5xx_with_retry_after_is_waited_out_then_retried_for_reads(vpp_sandbox, client, form):
    client.service_config()
    vpp_sandbox.control(fail_next=1, fail_status=503, retry_after=2, retry_after_form=form)
    assert client.client_config().location_name
    requests_log = [r for r in vpp_sandbox.counters()["requests"] if r["path"] == "/mdm/v2/client/config"]
    assert [r["status"] for r in requests_log] == [503, 200]
    # 2 s asked; an HTTP-date has 1 s resolution, so at least 1 s passed in both forms
    assert requests_log[1]["t"] - requests_log[0]["t"] >= 0.95


def test_a_long_retry_after_pauses_the_token_instead_of_blocking(vpp_sandbox, client_for):
    limiter = rate_limiter()
    client = client_for(rate_limiter=limiter, retry_budget=2)
    client.service_config()
    vpp_sandbox.control(fail_next=1, fail_status=503, retry_after=120)
    with pytest.raises(ServiceUnavailableError) as info:
        client.client_config()
    assert info.value.retry_after == pytest.approx(120, abs=1)
    with pytest.raises(RateLimitedError):
        client_for(rate_limiter=limiter, retry_budget=2).list_assets()  # another caller, same token
    assert endpoint_count(vpp_sandbox, "GET /mdm/v2/assets") == 0


def test_a_500_on_create_is_not_resent_and_says_the_outcome_is_unknown(vpp_sandbox, client):
    client.service_config()
    vpp_sandbox.control(fail_next=1, fail_status=500, retry_after=None)
    with pytest.raises(ServiceUnavailableError) as info:
        client.create_users([RequestUser("frank")])
    assert info.value.error_number == 9603 and info.value.outcome_unknown
    assert endpoint_count(vpp_sandbox, "POST /mdm/v2/users/create") == 1


def test_429_is_retried_with_backoff_until_it_passes(vpp_sandbox, client_for):
    # The sandbox enforces 1 req/s while advertising 50, so the client's own limiter lets too much through.
    vpp_sandbox.control(rps_limit=1, limits={"maxRequestPerSecond": 50})
    client = client_for(backoff_base=0.2, backoff_max=1.0, max_retries=8)
    for _ in range(3):
        client.client_config()
    statuses = [r["status"] for r in vpp_sandbox.counters()["requests"] if r["path"] == "/mdm/v2/client/config"]
    assert statuses.count(200) == 3 and 429 in statuses


def test_429_with_retry_after_header(vpp_sandbox, client_for):
    vpp_sandbox.control(rps_limit=1, rate_limit_retry_after=1, limits={"maxRequestPerSecond": 50})
    client = client_for()
    client.client_config()
    client.client_config()
    statuses = [r["status"] for r in vpp_sandbox.counters()["requests"] if r["path"] == "/mdm/v2/client/config"]
    assert statuses[-1] == 200 and 429 in statuses


def test_the_rate_limit_holds_across_two_processes_sharing_redis(vpp_sandbox):
    client = redis_client()
    prefix = unique_prefix()
    rate, per_process = 5, 6
    vpp_sandbox.control(limits={"maxRequestPerSecond": rate})
    # Requests are spaced 1.5 s / rate apart (production: 1.05 s) so that scheduling delays
    # between "admitted" and "stamped by the server" on a loaded CI machine (up to 0.5 s) cannot
    # squeeze rate + 1 arrivals into one server-side second. Without sharing, the two children
    # would still send 2 x rate / 1.5 = 6.7 requests per second, so the check below would fail.
    command = [sys.executable, "-m", "tests.support.hammer", vpp_sandbox.base_url, vpp_sandbox.token]
    command += [redis_url(), prefix, str(per_process), "1.5"]
    try:
        children = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(2)]
        outputs = [child.communicate(timeout=60)[0] for child in children]
    finally:
        delete_prefix(client, prefix)
    assert [c.returncode for c in children] == [0, 0] and all("done" in o for o in outputs)
    log = vpp_sandbox.counters()["requests"]
    # Apple's limit is per token; Service Config carries none (location None) and is not counted.
    stamps = [r["t"] for r in log if r["location"]]
    assert sum(1 for r in log if r["path"] == "/mdm/v2/client/config" and r["status"] == 200) == 2 * per_process
    assert max_in_any_window(stamps, 1.0) <= rate


def test_a_pending_event_times_out_as_a_transient_error(vpp_sandbox, client):
    vpp_sandbox.control(pending_seconds=60)
    [event] = client.create_users([RequestUser("grace")])
    with pytest.raises(EventTimeoutError) as info:
        client.wait_for_event(event, poll_interval=0.05, timeout=0.2)
    assert info.value.last_status.status == "PENDING" and info.value.last_status.event_type == "CREATE"
    vpp_sandbox.advance()
    assert client.wait_for_event(event, poll_interval=0.05, timeout=5).status == "COMPLETE"
