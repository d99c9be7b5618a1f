"""VppClient against hand-written JSON (the `responses` library): parsing and error mapping."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
import responses
from responses import matchers

from tests.support.redis_db import rate_limiter
from tests.support.vpp_api import SERVICE_CONFIG, make_stoken
from vpp.apple.client import VppClient, _store_config, clear_service_config_cache
from vpp.apple.errors import (
    ERROR_MESSAGES,
    EventTimeoutError,
    InvalidRequestError,
    NotPermittedError,
    PermanentVppError,
    RateLimitedError,
    ServiceUnavailableError,
    TokenExpiredError,
    TokenInvalidError,
    TokenRevokedError,
    TransientVppError,
    VppError,
    error_for,
    parse_retry_after,
)
from vpp.apple.types import Assignment, MdmInfo, RequestUser, ServiceConfig, VppApiUser, managed_by_other_mdm

BASE = "https://vpp.example/mdm/v2"
TOKEN = make_stoken()


@pytest.fixture(autouse=True)
def _fresh_config_cache():
    clear_service_config_cache()
    yield
    clear_service_config_cache()


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{BASE}/service/config", json=SERVICE_CONFIG)
        yield mock


def make_client(**kwargs) -> VppClient:
    kwargs.setdefault("rate_limiter", rate_limiter())
    kwargs.setdefault("backoff_base", 0.001)
    kwargs.setdefault("backoff_max", 0.002)
    kwargs.setdefault("parallel_requests", 1)  # deterministic call order; parallel tests set it
    return VppClient(TOKEN, base_url=BASE, **kwargs)


def calls_to(rsps, path):
    return [c for c in rsps.calls if c.request.url.split("?")[0] == f"{BASE}{path}"]


# --- service config -------------------------------------------------------------------


def test_it_reads_service_config_without_auth_and_caches_it(rsps):
    client = make_client()
    config = client.service_config()
    assert (config.max_users, config.max_revoke_client_user_ids, config.max_request_per_second) == (3, 2, 50)
    assert config.error_codes == {9602: "Invalid argument"}
    assert "USER_ASSOCIATED" in config.notification_types
    make_client().service_config()  # another client, same base URL: served from the cache
    calls = calls_to(rsps, "/service/config")
    assert len(calls) == 1
    assert "Authorization" not in calls[0].request.headers
    assert calls[0].request.headers["User-Agent"].startswith("kmconsole/")


def test_it_falls_back_to_apples_example_limits_only_when_a_key_is_absent():
    config = ServiceConfig.from_json({"limits": {"maxUsers": 7, "maxRequestPerSecond": "bad"}})
    assert config.max_users == 7
    assert config.max_request_per_second == 15
    assert config.max_revoke_client_user_ids == 100


def test_it_builds_invitation_urls_from_the_template():
    config = ServiceConfig.from_json(SERVICE_CONFIG)
    assert config.invitation_url("abc123") == "https://invite.example/associate?inviteCode=abc123&mt=8"
    plain = ServiceConfig.from_json({"urls": {"invitationEmail": "https://x/?c=%inviteCode%"}})
    assert plain.invitation_url("Z") == "https://x/?c=Z"
    with pytest.raises(InvalidRequestError):
        ServiceConfig.from_json({}).invitation_url("Z")


# --- client config --------------------------------------------------------------------


def test_it_reads_and_updates_client_config(rsps):
    body = {
        "countryISO2ACode": "US",
        "defaultPlatform": "volumestore",
        "locationName": "Main Campus",
        "mdmInfo": {"id": "OTHER-ID", "name": "Other MDM", "metadata": "x"},
        "notificationUrl": "https://console.example/hook",
        "notificationAuthToken": "hooksecret",
        "subscribedNotificationTypes": ["USER_ASSOCIATED"],
        "websiteURL": "business.apple.com",
        "tokenExpirationDate": "2027-11-08T22:33:22+0000",
        "uId": "2049025000431439",
        "somethingNew": {"ignored": True},
    }
    rsps.get(f"{BASE}/client/config", json=body)
    rsps.post(f"{BASE}/client/config", json={**body, "mdmInfo": {"id": "OUR", "name": "kmconsole", "metadata": ""}})
    client = make_client()
    config = client.client_config()
    assert config.location_name == "Main Campus" and config.country_code == "US"
    assert config.token_expires_at == datetime(2027, 11, 8, 22, 33, 22, tzinfo=UTC)
    assert managed_by_other_mdm(config.mdm_info, "our-id")
    assert "hooksecret" not in repr(config)
    updated = client.update_client_config(
        mdm_info=MdmInfo(id="OUR", name="kmconsole", metadata=""),
        notification_url="https://console.example/hook",
        notification_auth_token="hooksecret",
        notification_types=["USER_ASSOCIATED", "USER_MANAGEMENT"],
    )
    assert not managed_by_other_mdm(updated.mdm_info, "our")
    sent = json.loads(calls_to(rsps, "/client/config")[-1].request.body)
    assert sent == {
        "mdmInfo": {"id": "OUR", "name": "kmconsole", "metadata": ""},
        "notificationUrl": "https://console.example/hook",
        "notificationAuthToken": "hooksecret",
        "notificationTypes": ["USER_ASSOCIATED", "USER_MANAGEMENT"],
    }
    assert calls_to(rsps, "/client/config")[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (None, False),
        (MdmInfo(id="", name="x"), False),
        (MdmInfo(id="ABC", name="x"), False),
        (MdmInfo(id="abc", name="x"), False),
        (MdmInfo(id="other", name="x"), True),
    ],
)
def test_it_tells_whether_another_mdm_manages_the_location(info, expected):
    assert managed_by_other_mdm(info, "abc") is expected


# --- users ----------------------------------------------------------------------------


def _users_page(index, users, next_index=None, total=3, version="v-%d"):
    body = {
        "users": users,
        "currentPageIndex": index,
        "size": len(users),
        "totalPages": total,
        "versionId": version % index if "%" in version else version,
        "uId": "u1",
    }
    if next_index is not None:
        body["nextPageIndex"] = next_index
    return body


def test_it_streams_user_pages_and_keeps_the_first_versionId(rsps):
    for index, nxt in [(0, 1), (1, 2), (2, None)]:
        params = {"activeOnly": "true"} if index == 0 else {"activeOnly": "true", "pageIndex": str(index)}
        rsps.get(
            f"{BASE}/users",
            json=_users_page(index, [{"clientUserId": f"c{index}", "status": "Registered", "inviteCode": "i"}], nxt),
            match=[matchers.query_param_matcher(params)],
        )
    listing = make_client().iter_users(active_only=True)
    assert not calls_to(rsps, "/users")  # lazy
    assert listing.version_id == "v-0"
    users = list(listing)
    assert [u.client_user_id for u in users] == ["c0", "c1", "c2"]
    assert len(calls_to(rsps, "/users")) == 3
    assert listing.version_id == "v-0"


def test_it_passes_filters_and_delta_version(rsps):
    rsps.get(
        f"{BASE}/users",
        json=_users_page(0, [], total=1),
        match=[matchers.query_param_matcher({"retiredOnly": "true", "clientUserId": "c1", "sinceVersionId": "v9"})],
    )
    listing = make_client().iter_users(retired_only=True, client_user_id="c1", since_version_id="v9")
    assert list(listing) == []  # an empty delta page is normal


def test_it_keeps_paging_when_totalPages_says_more_even_without_nextPageIndex(rsps):
    rsps.get(
        f"{BASE}/users",
        json=_users_page(0, [{"clientUserId": "a", "status": "Associated"}], total=2),
        match=[matchers.query_param_matcher({})],
    )
    rsps.get(
        f"{BASE}/users",
        json={"errorNumber": 9650, "errorMessage": "out of range"},
        status=400,
        match=[matchers.query_param_matcher({"pageIndex": "1"})],
    )
    assert [u.client_user_id for u in make_client().iter_users()] == ["a"]


def test_it_stops_on_a_repeated_page(rsps):
    rsps.get(f"{BASE}/users", json=_users_page(0, [], next_index=0, total=5))
    with pytest.raises(ServiceUnavailableError):
        list(make_client().iter_users())


def test_it_parses_users_tolerantly(rsps):
    rsps.get(
        f"{BASE}/users",
        json=_users_page(
            0,
            [
                {"clientUserId": "a", "status": "associated", "idHash": "h", "email": "a@x.org", "newField": 1},
                {"clientUserId": "b", "status": "Retired", "inviteCode": "c"},
                {"clientUserId": "c", "status": "Deleted"},
            ],
            total=1,
        ),
    )
    users = list(make_client().iter_users())
    assert users[0] == VppApiUser(client_user_id="a", status="Associated", email="a@x.org", id_hash="h")
    assert [u.active for u in users] == [True, False, False]


def test_get_user_returns_the_active_record_only(rsps):
    rsps.get(
        f"{BASE}/users",
        json=_users_page(
            0,
            [
                {"clientUserId": "a", "status": "Retired"},
                {"clientUserId": "a", "status": "Registered", "inviteCode": "X"},
            ],
            total=1,
        ),
        match=[matchers.query_param_matcher({"clientUserId": "a", "activeOnly": "true"})],
    )
    user = make_client().get_user("a")
    assert user.status == "Registered" and user.invite_code == "X"


def test_get_user_returns_none_when_only_retired(rsps):
    rsps.get(f"{BASE}/users", json=_users_page(0, [{"clientUserId": "a", "status": "Retired"}], total=1))
    assert make_client().get_user("a") is None


def test_it_splits_creates_by_maxUsers_dedupes_and_returns_event_ids_in_order(rsps):
    rsps.post(f"{BASE}/users/create", json={"eventId": "e1"})
    rsps.post(f"{BASE}/users/create", json={"eventId": "e2"})
    rsps.post(f"{BASE}/users/create", json={"eventId": "e3"})
    users = [RequestUser(f"c{i}", email=f"u{i}@x.org") for i in range(7)] + [RequestUser("c0", email="dup")]
    assert make_client().create_users(users) == ["e1", "e2", "e3"]
    bodies = [json.loads(c.request.body) for c in calls_to(rsps, "/users/create")]
    assert [len(b["users"]) for b in bodies] == [3, 3, 1]
    assert bodies[0]["users"][0] == {"clientUserId": "c0", "email": "u0@x.org"}
    assert calls_to(rsps, "/users/create")[0].request.headers["Content-Type"] == "application/json"


def test_it_sends_managed_apple_ids_on_update_and_only_ids_on_retire(rsps):
    rsps.post(f"{BASE}/users/update", json={"eventId": "u1"})
    rsps.post(f"{BASE}/users/retire", json={"eventId": "r1"})
    client = make_client()
    assert client.update_users([RequestUser("c1", managed_apple_id="m@x.appleid.com")]) == ["u1"]
    assert client.retire_users(["c1", "c2", "c1"]) == ["r1"]
    assert json.loads(calls_to(rsps, "/users/update")[0].request.body) == {
        "users": [{"clientUserId": "c1", "managedAppleId": "m@x.appleid.com"}]
    }
    assert json.loads(calls_to(rsps, "/users/retire")[0].request.body) == {
        "users": [{"clientUserId": "c1"}, {"clientUserId": "c2"}]
    }


def test_a_failing_batch_carries_the_event_ids_already_queued(rsps):
    rsps.post(f"{BASE}/users/create", json={"eventId": "e1"})
    rsps.post(f"{BASE}/users/create", json={"errorNumber": 9717, "errorMessage": "Invalid email"}, status=400)
    with pytest.raises(InvalidRequestError) as info:
        make_client().create_users([RequestUser(f"c{i}") for i in range(5)])
    assert info.value.event_ids == ["e1"]
    assert info.value.error_number == 9717
    assert [(o.keys, o.event_id) for o in info.value.batches] == [(["c0", "c1", "c2"], "e1"), (["c3", "c4"], None)]
    assert info.value.batches[1].error is info.value


def test_it_refuses_users_without_an_id(rsps):
    with pytest.raises(InvalidRequestError):
        make_client().create_users([RequestUser("")])
    assert not calls_to(rsps, "/users/create")


# --- assets ---------------------------------------------------------------------------


def test_it_lists_assets_over_pages(rsps):
    asset = {
        "adamId": "361309726",
        "pricingParam": "STDQ",
        "productType": "App",
        "assignedCount": 2,
        "availableCount": 8,
        "totalCount": 10,
        "retiredCount": 0,
        "revocable": True,
        "deviceAssignable": True,
        "supportedPlatforms": ["iOS", "macOS"],
    }
    rsps.get(f"{BASE}/assets", json={"assets": [asset], "nextPageIndex": 1}, match=[matchers.query_param_matcher({})])
    rsps.get(
        f"{BASE}/assets",
        json={"assets": [{**asset, "adamId": 2}]},
        match=[matchers.query_param_matcher({"pageIndex": "1"})],
    )
    assets = make_client().list_assets()
    assert [a.adam_id for a in assets] == ["361309726", "2"]
    assert assets[0].available_count == 8 and assets[0].revocable and assets[0].supported_platforms == ["iOS", "macOS"]


def test_it_splits_revokes_by_maxRevokeClientUserIds(rsps):
    rsps.post(f"{BASE}/assets/revoke", json={"eventId": "a"})
    rsps.post(f"{BASE}/assets/revoke", json={"eventId": "b"})
    assert make_client().revoke_assets(client_user_ids=["x", "y", "z", "x"]) == ["a", "b"]
    bodies = [json.loads(c.request.body) for c in calls_to(rsps, "/assets/revoke")]
    assert bodies == [{"clientUserIds": ["x", "y"]}, {"clientUserIds": ["z"]}]


def test_it_iterates_assignments_with_filters(rsps):
    rsps.get(
        f"{BASE}/assignments",
        json={
            "assignments": [
                {"adamId": "1", "pricingParam": "STDQ", "clientUserId": "c1", "userStatus": "Associated"},
                {"adamId": "2", "pricingParam": "STDQ", "serialNumber": "SN1"},
            ]
        },
        match=[
            matchers.query_param_matcher(
                {"includeUserState": "true", "clientUserId": "c1", "adamId": "1", "sinceVersionId": "v1"}
            )
        ],
    )
    items = list(make_client().iter_assignments(client_user_id="c1", adam_id="1", since_version_id="v1"))
    assert items[0] == Assignment(
        adam_id="1", pricing_param="STDQ", client_user_id="c1", serial_number=None, user_status="Associated"
    )
    assert items[1].serial_number == "SN1" and items[1].client_user_id is None


# --- events ---------------------------------------------------------------------------

FAILED_EVENT = {
    "eventStatus": "FAILED",
    "eventType": "CREATE",
    "numRequested": 3,
    "numCompleted": 1,
    "failures": [
        {"errorNumber": 9716, "errorMessage": "exists", "errorInfo": {"clientUserIds": ["c1", "c2"]}},
        {"errorNumber": 9999, "errorMessage": "Something new"},
    ],
}


def test_it_returns_per_user_failures_as_data(rsps):
    rsps.get(f"{BASE}/status", json=FAILED_EVENT, match=[matchers.query_param_matcher({"eventId": "e1"})])
    status = make_client().event_status("e1")
    assert status.finished and status.status == "FAILED" and status.event_type == "CREATE"
    assert (status.num_requested, status.num_completed) == (3, 1)
    assert status.failures[0].error_number == 9716
    assert status.failures[0].client_user_ids == ["c1", "c2"]
    assert status.failures[0].message == ERROR_MESSAGES[9716]
    assert status.failures[1].message == "Something new"
    assert status.failed_client_user_ids() == {"c1", "c2"}


def test_wait_for_event_polls_until_finished(rsps):
    rsps.get(f"{BASE}/status", json={"eventStatus": "PENDING", "eventType": "RETIRE", "numRequested": 1})
    rsps.get(
        f"{BASE}/status", json={"eventStatus": "COMPLETE", "eventType": "RETIRE", "numRequested": 1, "numCompleted": 1}
    )
    status = make_client().wait_for_event("e1", poll_interval=0.01, timeout=5)
    assert status.status == "COMPLETE" and status.num_completed == 1
    assert len(calls_to(rsps, "/status")) == 2


def test_wait_for_event_raises_a_transient_timeout_at_the_deadline(rsps):
    rsps.get(f"{BASE}/status", json={"eventStatus": "PENDING", "eventType": "CREATE"})
    with pytest.raises(EventTimeoutError) as info:
        make_client().wait_for_event("e1", poll_interval=0.01, timeout=0.05)
    assert isinstance(info.value, TransientVppError)
    assert info.value.event_id == "e1" and info.value.last_status.status == "PENDING"


def test_wait_for_event_uses_the_settings_poll_interval_by_default(rsps, settings, monkeypatch):
    settings.VPP_EVENT_POLL_INTERVAL = 7
    rsps.get(f"{BASE}/status", json={"eventStatus": "PENDING"})
    with pytest.raises(EventTimeoutError):
        make_client().wait_for_event("e1", timeout=5)  # 7 s interval > 5 s deadline: one poll, no sleep
    assert len(calls_to(rsps, "/status")) == 1


# --- errors ---------------------------------------------------------------------------

ERROR_TABLE = [
    # (status, body, expected class, error number)
    (401, {"errorNumber": 9621, "errorMessage": "expired"}, TokenExpiredError, 9621),
    (401, {"errorNumber": 9625, "errorMessage": "revoked"}, TokenRevokedError, 9625),
    (401, {"errorNumber": 9722, "errorMessage": "bad header"}, TokenInvalidError, 9722),
    (401, {"errorNumber": 9601, "errorMessage": "login"}, TokenInvalidError, 9601),
    (200, {"errorNumber": 9722, "errorMessage": "bad header"}, TokenInvalidError, 9722),
    (200, {"errorNumber": 9625}, TokenRevokedError, 9625),
    (403, {"errorNumber": 9637, "errorMessage": "facilitator"}, NotPermittedError, 9637),
    (403, {"errorNumber": 9647}, NotPermittedError, 9647),
    (400, {"errorNumber": 9602, "errorMessage": "Invalid argument"}, InvalidRequestError, 9602),
    (400, {"errorNumber": "9721"}, InvalidRequestError, 9721),
    (200, {"errorNumber": 9999, "errorMessage": "New thing"}, InvalidRequestError, 9999),
    (410, {"errorNumber": 9634}, InvalidRequestError, 9634),
    (401, None, TokenInvalidError, None),
    (403, "<html>Forbidden</html>", NotPermittedError, None),
    (404, "<html>Not Found</html>", InvalidRequestError, None),
    (400, "", InvalidRequestError, None),
    (302, "", InvalidRequestError, None),
]


@pytest.mark.parametrize(("status", "body", "cls", "number"), ERROR_TABLE)
def test_it_maps_errors_to_named_permanent_exceptions_without_retrying(rsps, status, body, cls, number):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body or ""}
    rsps.get(f"{BASE}/client/config", status=status, **kwargs)
    with pytest.raises(cls) as info:
        make_client().client_config()
    assert isinstance(info.value, PermanentVppError)
    assert info.value.error_number == number
    assert info.value.http_status == status
    assert info.value.message and info.value.message.endswith(".")
    assert len(calls_to(rsps, "/client/config")) == 1  # permanent: never retried


TRANSIENT_TABLE = [
    (429, {"errorNumber": 9646, "errorMessage": "Too many"}, RateLimitedError, 9646),
    (200, {"errorNumber": 9646}, RateLimitedError, 9646),
    (429, "", RateLimitedError, None),
    (500, {"errorNumber": 9603, "errorMessage": "internal"}, ServiceUnavailableError, 9603),
    (503, {"errorNumber": 9729}, ServiceUnavailableError, 9729),
    (200, {"errorNumber": 9644}, ServiceUnavailableError, 9644),
    (502, "<html><body>Bad gateway</body></html>", ServiceUnavailableError, None),
    (504, "", ServiceUnavailableError, None),
    (200, "<html>maintenance</html>", ServiceUnavailableError, None),
    (200, "", ServiceUnavailableError, None),
    (200, "[1, 2]", ServiceUnavailableError, None),
    (200, '{"truncated": ', ServiceUnavailableError, None),
]


@pytest.mark.parametrize(("status", "body", "cls", "number"), TRANSIENT_TABLE)
def test_it_retries_transient_errors_on_reads_then_raises(rsps, status, body, cls, number):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    rsps.get(f"{BASE}/client/config", status=status, **kwargs)
    with pytest.raises(cls) as info:
        make_client(max_retries=2).client_config()
    assert info.value.error_number == number
    assert len(calls_to(rsps, "/client/config")) == 3


def test_it_recovers_when_a_retry_succeeds(rsps):
    rsps.get(f"{BASE}/client/config", status=503, json={"errorNumber": 9729})
    rsps.get(f"{BASE}/client/config", json={"locationName": "Recovered"})
    assert make_client().client_config().location_name == "Recovered"


def test_it_parses_retry_after_in_both_forms():
    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now) == 90
    assert parse_retry_after("Sat, 28 Nov 2026 11:00:00 GMT", now=now) == 0  # in the past
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None and parse_retry_after(None) is None
    assert parse_retry_after("-5") == 0


@pytest.mark.parametrize("header", ["3600", "HTTP-date"])
def test_a_long_retry_after_pauses_every_caller_and_is_not_waited_out_inline(rsps, header):
    if header == "HTTP-date":
        header = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    rsps.get(f"{BASE}/client/config", status=503, json={"errorNumber": 9729}, headers={"Retry-After": header})
    limiter = rate_limiter()
    client = make_client(rate_limiter=limiter, retry_budget=5)
    with pytest.raises(ServiceUnavailableError) as info:
        client.client_config()
    assert 3500 < info.value.retry_after <= 3600
    assert 3500 < limiter.paused_for(client.limiter_key) <= 3600
    assert len(calls_to(rsps, "/client/config")) == 1
    # Another client of the same token is held back without calling Apple.
    with pytest.raises(RateLimitedError) as info:
        make_client(rate_limiter=limiter, retry_budget=5).client_config()
    assert info.value.retry_after > 3500
    assert len(calls_to(rsps, "/client/config")) == 1


def test_a_short_retry_after_is_honoured_then_retried(rsps):
    rsps.get(f"{BASE}/users", status=429, json={"errorNumber": 9646}, headers={"Retry-After": "0.2"})
    rsps.get(f"{BASE}/users", json=_users_page(0, [], total=1))
    limiter = rate_limiter()
    client = make_client(rate_limiter=limiter)
    client.service_config()
    assert list(client.iter_users()) == []
    assert len(calls_to(rsps, "/users")) == 2
    assert limiter.paused_for(client.limiter_key) == 0


def test_429_on_a_post_is_retried_because_apple_refused_it(rsps):
    rsps.post(f"{BASE}/users/create", status=429, json={"errorNumber": 9646})
    rsps.post(f"{BASE}/users/create", json={"eventId": "ok"})
    assert make_client().create_users([RequestUser("c1")]) == ["ok"]
    assert len(calls_to(rsps, "/users/create")) == 2


@pytest.mark.parametrize(
    ("kwargs", "retried"),
    [
        ({"status": 500, "json": {"errorNumber": 9603}}, False),
        ({"status": 502, "body": "<html/>"}, False),
        ({"status": 503, "json": {"errorNumber": 9729}}, True),
        ({"body": requests.exceptions.ReadTimeout("slow")}, False),
        ({"body": requests.exceptions.ConnectionError("reset by peer")}, False),
        ({"body": requests.exceptions.ConnectTimeout("no route")}, True),
    ],
    ids=["500-9603", "502", "503-9729", "read-timeout", "connection-dropped", "connect-timeout"],
)
def test_async_posts_are_not_blindly_retried_when_apple_may_have_acted(rsps, kwargs, retried):
    rsps.post(f"{BASE}/users/retire", **kwargs)
    with pytest.raises(ServiceUnavailableError) as info:
        make_client(max_retries=1).retire_users(["c1"])
    assert info.value.outcome_unknown is not retried
    assert len(calls_to(rsps, "/users/retire")) == (2 if retried else 1)


def test_reads_are_retried_after_timeouts_and_connection_errors(rsps):
    rsps.get(f"{BASE}/assets", body=requests.exceptions.ReadTimeout("slow"))
    rsps.get(f"{BASE}/assets", body=requests.exceptions.ConnectionError("reset"))
    rsps.get(f"{BASE}/assets", json={"assets": []})
    assert make_client().list_assets() == []


def test_the_retry_budget_bounds_total_time(rsps):
    rsps.get(f"{BASE}/client/config", status=503, json={"errorNumber": 9729})
    with pytest.raises(ServiceUnavailableError):
        make_client(max_retries=50, backoff_base=0.05, backoff_max=0.05, retry_budget=0.3).client_config()
    assert 2 <= len(calls_to(rsps, "/client/config")) <= 13  # delays of 25-50 ms within 0.3 s, far below 50 tries


def test_connection_refused_becomes_a_transient_error():
    client = VppClient(
        TOKEN,
        base_url="http://127.0.0.1:9/mdm/v2",
        rate_limiter=rate_limiter(),
        max_retries=0,
        timeout=(0.5, 0.5),
    )
    with pytest.raises(ServiceUnavailableError) as info:
        client.service_config()
    assert not info.value.outcome_unknown


def test_the_token_never_appears_in_errors_logs_or_repr(rsps, caplog):
    caplog.set_level(logging.DEBUG)
    rsps.get(f"{BASE}/client/config", status=401, json={"errorNumber": 9722, "errorMessage": "bad"})
    rsps.get(f"{BASE}/assets", status=503, json={"errorNumber": 9729})
    client = make_client(max_retries=1)
    with pytest.raises(VppError) as one:
        client.client_config()
    with pytest.raises(VppError) as two:
        client.list_assets()
    for text in (str(one.value), repr(one.value), str(two.value), repr(client), caplog.text, client.limiter_key):
        assert TOKEN not in text


def test_error_strings_name_the_apple_number():
    exc = error_for(http_status=401, error_number=9621)
    assert str(exc) == f"{ERROR_MESSAGES[9621]} (Apple error 9621)"


def test_a_lowered_limit_rereads_service_config_and_resplits_once(rsps):
    client = make_client()
    client.service_config()  # cached: maxUsers 3
    rsps.replace(responses.GET, f"{BASE}/service/config", json={**SERVICE_CONFIG, "limits": {"maxUsers": 2}})
    rsps.post(f"{BASE}/users/create", status=400, json={"errorNumber": 9714})
    rsps.post(f"{BASE}/users/create", json={"eventId": "a"})
    rsps.post(f"{BASE}/users/create", json={"eventId": "b"})
    assert client.create_users([RequestUser(f"c{i}") for i in range(4)]) == ["a", "b"]
    bodies = [json.loads(c.request.body) for c in calls_to(rsps, "/users/create")]
    assert [len(b["users"]) for b in bodies] == [3, 2, 2]


def test_a_second_too_many_error_is_raised(rsps):
    rsps.post(f"{BASE}/assets/revoke", status=400, json={"errorNumber": 9701})
    with pytest.raises(InvalidRequestError) as info:
        make_client().revoke_assets(client_user_ids=["a", "b", "c"])
    assert info.value.error_number == 9701
    assert len(calls_to(rsps, "/assets/revoke")) == 2


def _event_from_body(request):
    body = json.loads(request.body)
    first = (body.get("users") or [{}])[0].get("clientUserId") or body["clientUserIds"][0]
    if first == "c9":
        return (500, {}, json.dumps({"errorNumber": 9603}))
    return (200, {}, json.dumps({"eventId": f"ev-{first}"}))


def test_parallel_batches_keep_event_ids_in_batch_order(rsps):
    rsps.add_callback(responses.POST, f"{BASE}/users/retire", callback=_event_from_body)
    ids = [f"u{i:02d}" for i in range(30)]
    events = make_client(parallel_requests=5).retire_users(ids)
    assert events == [f"ev-u{i:02d}" for i in range(0, 30, 3)]
    sent = sorted(
        cid["clientUserId"] for c in calls_to(rsps, "/users/retire") for cid in json.loads(c.request.body)["users"]
    )
    assert sent == ids


def test_a_failed_parallel_batch_reports_every_batch_outcome(rsps):
    rsps.add_callback(responses.POST, f"{BASE}/users/create", callback=_event_from_body)
    users = [RequestUser(f"c{i}") for i in range(30)]  # batches start c0, c3, c6, c9, ...
    with pytest.raises(ServiceUnavailableError) as info:
        make_client(parallel_requests=3).create_users(users)
    outcomes = info.value.batches
    assert [o.keys[0] for o in outcomes] == [f"c{i}" for i in range(0, 30, 3)]
    assert outcomes[3].error is info.value and info.value.outcome_unknown
    assert outcomes[0].event_id == "ev-c0"
    for outcome in outcomes:
        assert outcome.event_id is None or outcome.error is None
        assert outcome.event_id in (None, f"ev-{outcome.keys[0]}")
    assert info.value.event_ids == [o.event_id for o in outcomes if o.event_id]
    not_sent = [o for o in outcomes if o.event_id is None and o.error is None]
    assert len(calls_to(rsps, "/users/create")) == len(outcomes) - len(not_sent)


def _register_pages(rsps, pages):
    for index, body in enumerate(pages):
        query = {"pageIndex": str(index)} if index else {}
        rsps.get(f"{BASE}/users", json=body, match=[matchers.query_param_matcher(query)])


def _user(cid):
    return {"clientUserId": cid, "status": "Registered"}


def test_pages_are_fetched_ahead_in_parallel_and_yielded_in_order(rsps):
    pages = [_users_page(i, [_user(f"p{i}a"), _user(f"p{i}b")], i + 1 if i < 5 else None, total=6) for i in range(6)]
    _register_pages(rsps, pages)
    listing = make_client(parallel_requests=3).iter_users()
    assert [u.client_user_id for u in listing] == [f"p{i}{x}" for i in range(6) for x in "ab"]
    requested = sorted(c.request.url for c in calls_to(rsps, "/users"))
    assert len(requested) == len(set(requested)) == 6  # each page once


def test_prefetched_pages_beyond_a_shrunken_list_are_dropped(rsps):
    pages = [
        _users_page(0, [_user("a")], 1, total=4),
        _users_page(1, [_user("b")], None, total=2),  # the list shrank while we read it
        _users_page(2, [_user("stale-c")], 3, total=4),
        _users_page(3, [_user("stale-d")], None, total=4),
    ]
    _register_pages(rsps, pages)
    assert [u.client_user_id for u in make_client(parallel_requests=4).iter_users()] == ["a", "b"]


def test_a_prefetched_out_of_range_page_ends_the_listing_when_nothing_points_to_it(rsps):
    rsps.get(
        f"{BASE}/users", json=_users_page(0, [_user("a")], None, total=3), match=[matchers.query_param_matcher({})]
    )
    for index in (1, 2):
        rsps.get(
            f"{BASE}/users",
            status=400,
            json={"errorNumber": 9650},
            match=[matchers.query_param_matcher({"pageIndex": str(index)})],
        )
    assert [u.client_user_id for u in make_client(parallel_requests=3).iter_users()] == ["a"]


def test_assignments_follow_pages_in_parallel_too(rsps):
    for index in range(3):
        body = {
            "assignments": [{"adamId": str(index), "clientUserId": "c"}],
            "currentPageIndex": index,
            "totalPages": 3,
        }
        if index < 2:
            body["nextPageIndex"] = index + 1
        query = {"includeUserState": "true", **({"pageIndex": str(index)} if index else {})}
        rsps.get(f"{BASE}/assignments", json=body, match=[matchers.query_param_matcher(query)])
    assert [a.adam_id for a in make_client(parallel_requests=2).iter_assignments()] == ["0", "1", "2"]


def test_posting_to_a_closed_port_is_retried_since_nothing_was_sent():
    client = VppClient(
        TOKEN,
        base_url="http://127.0.0.1:9/mdm/v2",
        rate_limiter=rate_limiter(),
        max_retries=1,
        backoff_base=0.001,
        timeout=(0.5, 0.5),
    )
    _store_config(client.base_url, ServiceConfig.from_json(SERVICE_CONFIG))
    with pytest.raises(ServiceUnavailableError) as info:
        client.retire_users(["c1"])
    assert not info.value.outcome_unknown
