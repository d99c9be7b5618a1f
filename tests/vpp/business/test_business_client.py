"""The Apple Business client against its sandbox over real HTTP: auth, the shared token and its
refresh, paging, 429 with Retry-After, 5xx, and the errors an admin sees."""

from __future__ import annotations

import time

import jwt
import pytest
import requests

from tests.support.redis_db import rate_limiter, redis_url
from vpp.apple.apns import MemoryTokenStore, RedisTokenStore
from vpp.apple.business import (
    ASSERTION_AUDIENCE,
    TOKEN_MARGIN,
    BusinessAuthError,
    BusinessClient,
    BusinessKeyError,
    BusinessNotFoundError,
    BusinessNotPermittedError,
)
from vpp.apple.errors import RateLimitedError, ServiceUnavailableError, TransientVppError
from vpp.business_sandbox.testing import new_account

pytestmark = pytest.mark.sandbox


def make_client(sandbox, *, account=None, store=None, limiter=None, **kwargs) -> BusinessClient:
    account = account or sandbox.account
    return BusinessClient(
        client_id=account.client_id,
        key_id=account.key_id,
        private_key=account.private_key,
        base_url=sandbox.root_url,
        token_url=sandbox.token_url,
        requests_per_minute=kwargs.pop("requests_per_minute", 100_000),
        token_store=store if store is not None else MemoryTokenStore(),
        rate_limiter=limiter if limiter is not None else rate_limiter(window=63),
        backoff_base=kwargs.pop("backoff_base", 0.01),
        **kwargs,
    )


def test_it_authenticates_with_a_signed_assertion_and_reuses_the_token(business_sandbox):
    client = make_client(business_sandbox)
    assertion = jwt.decode(client.client_assertion(), options={"verify_signature": False})
    assert jwt.get_unverified_header(client.client_assertion())["kid"] == business_sandbox.account.key_id
    assert assertion["sub"] == assertion["iss"] == business_sandbox.account.client_id
    assert assertion["aud"] == ASSERTION_AUDIENCE and assertion["exp"] > assertion["iat"]

    client.first_page("/v1/users")
    client.first_page("/v1/orgDevices")

    assert business_sandbox.counters()["tokens_issued"] == 1


def test_workers_share_one_token_through_the_store(business_sandbox):
    account = business_sandbox.register(new_account())  # its own cache key in the suite's Redis
    make_client(business_sandbox, account=account, store=RedisTokenStore.from_url(redis_url())).first_page("/v1/users")
    other_worker = RedisTokenStore.from_url(redis_url())  # another process: its own connection, same Redis
    make_client(business_sandbox, account=account, store=other_worker).first_page("/v1/users")

    assert business_sandbox.counters()["tokens_issued"] == 1


def test_the_token_is_kept_until_shortly_before_it_expires(business_sandbox):
    store = MemoryTokenStore()
    client = make_client(business_sandbox, store=store)
    client.first_page("/v1/users")

    _, expires = store._data[client.cache_key]
    assert 3600 - TOKEN_MARGIN - 30 < expires - time.time() <= 3600 - TOKEN_MARGIN


def test_a_401_gets_a_fresh_token_and_the_request_is_replayed_once(business_sandbox):
    client = make_client(business_sandbox)
    client.first_page("/v1/users")
    business_sandbox.expire_tokens()

    page = client.first_page("/v1/users")

    assert len(page.items) == 60
    counters = business_sandbox.counters()
    assert counters["tokens_issued"] == 2 and counters["unauthorized"] == 1


def test_a_second_401_is_an_auth_failure_not_a_loop(business_sandbox):
    client = make_client(business_sandbox)
    business_sandbox.fault(status=401, times=2)

    with pytest.raises(BusinessAuthError):
        client.first_page("/v1/users")
    assert business_sandbox.counters()["fault_401"] == 2


def test_an_unknown_key_is_refused_with_a_readable_reason(business_sandbox):
    stranger = new_account()  # never registered at Apple Business

    with pytest.raises(BusinessAuthError) as caught:
        make_client(business_sandbox, account=stranger).first_page("/v1/users")
    assert "did not accept the API account" in caught.value.message
    assert caught.value.http_status == 401


def test_the_sandbox_refuses_an_expired_assertion(business_sandbox):
    client = make_client(business_sandbox)
    stale = client.client_assertion(now=time.time() - 3600)  # expired 40 minutes ago

    response = requests.post(
        business_sandbox.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": business_sandbox.account.client_id,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": stale,
            "scope": "business.api",
        },
        timeout=10,
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_a_key_that_is_not_p256_is_refused_before_any_request():
    with pytest.raises(BusinessKeyError):
        BusinessClient(client_id="BUSINESSAPI.x", key_id="k", private_key="not a key", token_store=MemoryTokenStore())


def test_it_pages_to_the_end(business_sandbox):
    business_sandbox.reset(people=2345)
    client = make_client(business_sandbox)

    pages = list(client.iter_users())

    ids = [person.id for page in pages for person in page]
    assert [len(page) for page in pages] == [1000, 1000, 345]
    assert len(set(ids)) == 2345
    assert business_sandbox.counters()["api_requests"] == 3


def test_it_pages_a_small_limit_through_cursors(business_sandbox):
    client = make_client(business_sandbox)

    pages = list(client.iter_users(page_limit=7))

    assert sum(len(p) for p in pages) == 60 and len(pages) == 9


def test_a_429_with_retry_after_pauses_the_account_for_every_worker(business_sandbox):
    limiter = rate_limiter(window=63)
    client = make_client(business_sandbox, limiter=limiter)
    business_sandbox.fault(status=429, retry_after="1")

    page = client.first_page("/v1/users")

    assert len(page.items) == 60
    assert business_sandbox.counters()["fault_429"] == 1
    assert business_sandbox.counters()["api_requests"] == 2


def test_a_long_retry_after_is_handed_to_the_job(business_sandbox):
    client = make_client(business_sandbox, retry_budget=5)
    business_sandbox.fault(status=429, retry_after="600")

    with pytest.raises(RateLimitedError) as caught:
        client.first_page("/v1/users")
    assert caught.value.retry_after == 600
    assert client.rate_limiter.paused_for(client.limiter_key) > 500  # the whole account waits


def test_5xx_is_retried_then_reported_as_transient(business_sandbox):
    client = make_client(business_sandbox, max_retries=2)
    business_sandbox.fault(status=503, times=2)
    assert len(client.first_page("/v1/users").items) == 60

    business_sandbox.fault(status=502, times=5)
    with pytest.raises(ServiceUnavailableError) as caught:
        client.first_page("/v1/users")
    assert isinstance(caught.value, TransientVppError) and caught.value.http_status == 502


def test_a_sandbox_rate_limit_is_answered_429_and_waited_out(business_sandbox):
    business_sandbox.options(requests_per_minute=3)
    client = make_client(business_sandbox, retry_budget=5)
    for _ in range(2):
        client.first_page("/v1/users")  # 2 of the 3 (the token endpoint is not counted)

    client.first_page("/v1/users")
    with pytest.raises(RateLimitedError) as caught:
        client.first_page("/v1/users")
    assert caught.value.retry_after and caught.value.retry_after > 5
    assert business_sandbox.counters()["rate_limited"] >= 1


def test_not_found_and_not_permitted_are_named_errors(business_sandbox):
    client = make_client(business_sandbox)
    with pytest.raises(BusinessNotFoundError) as caught:
        client.get_user("nobody")
    assert "NOT_FOUND" in caught.value.apple_message

    business_sandbox.fault(status=403)
    with pytest.raises(BusinessNotPermittedError):
        client.user_groups()


def test_it_reads_groups_members_units_and_devices(business_sandbox):
    client = make_client(business_sandbox)

    groups = {g.name: g for g in client.user_groups()}
    sales = client.group_member_ids(groups["Sales"].id)
    units = client.org_units()
    devices = [d for page in client.iter_devices() for d in page]
    person = client.get_user(sales[0])

    assert groups["Everyone active"].type == "SMART" and groups["Sales"].member_count == len(sales)
    assert person.department == "Sales" and person.managed_apple_account.endswith("@appleid.example.com")
    assert units[0].name == "Example Corp" and len(client.org_unit_member_ids(units[0].id)) == 60
    assert len(devices) == 60 and {d.product_family for d in devices} == {"iPhone", "iPad", "Mac"}
    assert client.count("/v1/users") == 60
