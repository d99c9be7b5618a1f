"""vpp/apple/apns.py: provider tokens (minted once, shared, refreshed) and the APNs answer mapping.

Runs against the fake APNs over real HTTP/2 (tests/apns_fixture.py).
"""

from __future__ import annotations

import json
import socket
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.checks import run_checks

from tests.support.apns import new_pem
from tests.support.redis_db import delete_prefix, redis_url
from vpp.apple.apns import (
    INVITATION_URL_KEY,
    ApnsConfigError,
    ApnsKeyError,
    ApnsNotConfiguredError,
    ApnsProvider,
    ApnsRateLimitedError,
    ApnsRequestError,
    ApnsUnavailableError,
    MemoryTokenStore,
    PermanentApnsError,
    ProviderTokens,
    PushStatus,
    RedisTokenStore,
    TransientApnsError,
    load_provider_key,
)

TOKEN = "b2" * 32


class Clock:
    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_store():
    """A store on the suite's Redis (tests/redis_session.py), emptied of provider tokens."""
    store = RedisTokenStore.from_url(redis_url())
    delete_prefix(store._redis, "kmconsole:apns")
    yield store
    delete_prefix(store._redis, "kmconsole:apns")


@pytest.fixture(params=["memory", "redis"])
def any_store(request):
    if request.param == "memory":
        return MemoryTokenStore()
    return request.getfixturevalue("redis_store")


def provider(fake_apns, store=None, clock=None, **config):
    return ApnsProvider(fake_apns.config(**config), token_store=store or MemoryTokenStore(), clock=clock or time.time)


# --- provider tokens ------------------------------------------------------------------------------


def test_it_mints_an_es256_token_apple_would_accept(fake_apns):
    token = ProviderTokens(fake_apns.config(), MemoryTokenStore()).current()
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": fake_apns.key.key_id, "typ": "JWT"}
    assert fake_apns.state.check_provider_token(f"bearer {token}") is None


def test_it_reuses_the_token_within_the_window_and_refreshes_after(fake_apns, any_store):
    clock = Clock()
    tokens = ProviderTokens(fake_apns.config(refresh_seconds=2400), any_store, clock=clock)
    first = tokens.current()
    clock.now += 2399
    assert tokens.current() == first
    clock.now += 2
    second = tokens.current()
    assert second != first
    assert jwt.decode(second, options={"verify_signature": False})["iat"] == int(clock.now)


def test_it_shares_one_token_between_two_providers_through_redis(fake_apns, redis_store):
    other_store = RedisTokenStore.from_url(redis_url())  # as another worker process would
    with provider(fake_apns, redis_store) as one, provider(fake_apns, other_store) as two:
        assert one.send(TOKEN, {"aps": {"alert": "1"}}).ok
        assert two.send(TOKEN, {"aps": {"alert": "2"}}).ok
    assert fake_apns.state.stats()["provider_tokens"] == 1


def test_it_keeps_the_winners_token_when_two_workers_refresh_at_once(fake_apns, any_store):
    clock = Clock()
    one = ProviderTokens(fake_apns.config(), any_store, clock=clock)
    two = ProviderTokens(fake_apns.config(), any_store, clock=clock)
    stale = one.current()
    clock.now += 3000
    raw_seen_by_two = any_store.get(two.cache_key)  # both read the stale token ...
    fresh = one.current()  # ... one refreshes first
    assert any_store.compare_and_set(two.cache_key, raw_seen_by_two, "late", 60) is False
    assert two.current() == fresh != stale


def test_it_uses_a_new_cache_key_for_a_new_key(fake_apns):
    one = ProviderTokens(fake_apns.config(), MemoryTokenStore())
    two = ProviderTokens(fake_apns.config(private_key_pem=new_pem()), MemoryTokenStore())
    assert one.cache_key != two.cache_key


def test_it_retries_once_with_a_new_token_when_apns_calls_the_shared_one_expired(fake_apns):
    store, clock = MemoryTokenStore(), Clock()
    apns = provider(fake_apns, store, clock)
    old = jwt.encode(
        {"iss": fake_apns.key.team_id, "iat": int(clock.now) - 7200},
        load_pem(fake_apns.key.pem),
        algorithm="ES256",
        headers={"kid": fake_apns.key.key_id},
    )
    # A cached token whose recorded iat looks fresh (a clock jumped): APNs says it is expired.
    store.compare_and_set(apns.tokens.cache_key, None, json.dumps({"token": old, "iat": int(clock.now)}), 600)
    assert apns.send(TOKEN, {"aps": {}}).ok
    assert [p.reason for p in fake_apns.state.pushes] == ["ExpiredProviderToken", ""]


def load_pem(pem):
    return serialization.load_pem_private_key(pem.encode(), password=None)


# --- the key --------------------------------------------------------------------------------------


def _corrupt(pem):
    lines = pem.splitlines()
    lines[1] = "A" * len(lines[1])  # the DER header becomes nonsense
    return "\n".join(lines)


def _pem(key, password=None):
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


@pytest.mark.parametrize(
    ("make_pem", "message"),
    [
        (lambda: "", "not a .p8 file"),
        (lambda: "hello", "not a .p8 file"),
        (lambda: new_pem()[:120] + "\n-----END PRIVATE KEY-----\n", "damaged or truncated"),
        (lambda: _corrupt(new_pem()), "damaged or truncated"),
        (lambda: _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)), "not an EC P-256"),
        (lambda: _pem(ec.generate_private_key(ec.SECP384R1())), "not an EC P-256"),
        (lambda: _pem(ec.generate_private_key(ec.SECP256R1()), b"secret"), "not a .p8 file|password"),
    ],
)
def test_it_fails_loudly_on_a_malformed_p8(make_pem, message):
    with pytest.raises(ApnsKeyError, match=message):
        load_provider_key(make_pem())


def test_it_reads_a_p8_without_its_trailing_newline():
    # env.py strips values read through APNS_KEY_FILE.
    assert load_provider_key(new_pem().strip()).curve.name == "secp256r1"


@pytest.mark.parametrize("field", ["key_id", "team_id"])
def test_it_refuses_malformed_key_and_team_ids(fake_apns, field):
    with pytest.raises(ApnsKeyError, match=field.replace("_", " ")):
        ProviderTokens(fake_apns.config(**{field: "short"}), MemoryTokenStore())


def test_it_says_when_push_is_not_configured(settings):
    settings.APNS_KEY = ""
    with pytest.raises(ApnsNotConfiguredError, match="APNS_KEY"):
        ApnsProvider.from_settings(token_store=MemoryTokenStore())


def test_it_stops_start_up_on_a_malformed_or_partial_configuration(settings):
    settings.APNS_KEY, settings.APNS_KEY_ID, settings.APNS_TEAM_ID, settings.APNS_TOPIC = ("x", "ABCDEFGHIJ", "", "t")
    assert "vpp.E102" in [e.id for e in run_checks()]
    settings.APNS_TEAM_ID = "TEAMTEAM01"
    assert "vpp.E101" in [e.id for e in run_checks()]
    settings.APNS_KEY = new_pem()
    assert not [e for e in run_checks() if e.id.startswith("vpp.E10")]


# --- answers --------------------------------------------------------------------------------------


def test_it_sends_an_invitation_alert_with_the_link(fake_apns):
    with provider(fake_apns) as apns:
        result = apns.send_invitation(TOKEN, link="http://sandbox/invite/abc", title="Apps from Acme", body="Tap")
    assert result.status is PushStatus.SENT and result.apns_id
    [recorded] = fake_apns.state.pushes
    assert recorded.payload[INVITATION_URL_KEY] == "http://sandbox/invite/abc"
    assert recorded.payload["aps"]["alert"] == {"title": "Apps from Acme", "body": "Tap"}
    assert (recorded.topic, recorded.push_type, recorded.priority) == (fake_apns.key.topic, "alert", "10")
    assert int(recorded.expiration) > time.time() and recorded.collapse_id == "vpp-invitation"
    assert uuid.UUID(recorded.apns_id)


def test_it_maps_410_to_unregistered_with_apples_timestamp(fake_apns):
    fake_apns.state.unregister(TOKEN, at_ms=1_700_000_000_000)
    with provider(fake_apns) as apns:
        result = apns.send(TOKEN, {"aps": {}})
    assert result.status is PushStatus.UNREGISTERED
    assert result.unregistered_at.timestamp() == 1_700_000_000


def test_it_maps_bad_device_tokens_to_a_result(fake_apns):
    with provider(fake_apns) as apns:
        result = apns.send("not-hex", {"aps": {}})
    assert (result.status, result.reason) == (PushStatus.BAD_DEVICE_TOKEN, "BadDeviceToken")


@pytest.mark.parametrize(
    ("status", "reason", "error"),
    [
        (429, "TooManyRequests", ApnsRateLimitedError),
        (429, "TooManyProviderTokenUpdates", ApnsRateLimitedError),
        (500, "InternalServerError", ApnsUnavailableError),
        (503, "ServiceUnavailable", ApnsUnavailableError),
    ],
)
def test_it_raises_transient_errors_with_retry_after(fake_apns, status, reason, error):
    fake_apns.state.set_fault(status=status, reason=reason, retry_after=12)
    with provider(fake_apns) as apns, pytest.raises(error) as caught:
        apns.send(TOKEN, {"aps": {}})
    assert isinstance(caught.value, TransientApnsError)
    assert (caught.value.reason, caught.value.http_status, caught.value.retry_after) == (reason, status, 12)


def test_it_raises_transient_when_apns_is_unreachable(fake_apns):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    apns = provider(fake_apns, base_url=f"http://127.0.0.1:{closed_port}")
    with apns, pytest.raises(ApnsUnavailableError, match="Cannot reach APNs"):
        apns.send(TOKEN, {"aps": {}})


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"private_key_pem": new_pem()}, "InvalidProviderToken"),
        ({"team_id": "OTHERTEAM1"}, "InvalidProviderToken"),
        ({"topic": "com.other.app"}, "TopicDisallowed"),
    ],
)
def test_it_raises_permanent_config_errors(fake_apns, config, reason):
    with provider(fake_apns, **config) as apns, pytest.raises(ApnsConfigError) as caught:
        apns.send(TOKEN, {"aps": {}})
    assert isinstance(caught.value, PermanentApnsError)
    assert caught.value.reason == reason and "APNs" in caught.value.message


def test_it_refuses_a_payload_over_4096_bytes_before_sending(fake_apns):
    with provider(fake_apns) as apns, pytest.raises(ApnsRequestError, match="4096"):
        apns.send(TOKEN, {"aps": {"alert": "x" * 4100}})
    assert fake_apns.state.pushes == []
