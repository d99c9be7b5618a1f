"""The fake APNs over real HTTP/2 cleartext (httpx with prior knowledge), as the provider sees it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests.support.apns import new_pem
from vpp.apple.apns import ApnsConfig, ApnsProvider, MemoryTokenStore
from vpp.sandbox.apns import (
    FakeApnsServer,
    demo_apns_env,
    demo_state,
    ensure_demo_apns_key,
    read_recorded_pushes,
)

TOKEN = "a1" * 32


def provider_jwt(key, *, pem=None, iat=None, kid=None, iss=None):
    signing_key = load_pem_private_key((pem or key.pem).encode(), password=None)
    return jwt.encode(
        {"iss": iss or key.team_id, "iat": int(time.time() if iat is None else iat)},
        signing_key,
        algorithm="ES256",
        headers={"kid": kid or key.key_id},
    )


@pytest.fixture
def h2(fake_apns):
    with httpx.Client(base_url=fake_apns.base_url, http1=False, http2=True, timeout=5) as client:
        yield client


def push(h2, fake_apns, *, token=TOKEN, jwt_token=None, payload=None, headers=None, content=None):
    all_headers = {"apns-topic": fake_apns.key.topic, "apns-push-type": "alert"}
    if jwt_token is not False:
        all_headers["authorization"] = f"bearer {jwt_token or provider_jwt(fake_apns.key)}"
    all_headers.update(headers or {})
    if content is None:
        content = json.dumps(payload or {"aps": {"alert": "hi"}}).encode()
    return h2.post(f"/3/device/{token}", content=content, headers=all_headers)


def test_it_accepts_a_valid_push_over_http2_and_records_it(h2, fake_apns):
    apns_id = "6A1D8C3E-6B33-4AE8-9F8E-3C0F2D3A9B01"
    response = push(
        h2,
        fake_apns,
        payload={"aps": {"alert": "hi"}, "invitationURL": "http://x/invite/1"},
        headers={"apns-id": apns_id},
    )
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    assert response.headers["apns-id"] == apns_id
    [recorded] = fake_apns.state.pushes
    assert (recorded.device_token, recorded.topic, recorded.link) == (TOKEN, fake_apns.key.topic, "http://x/invite/1")


def test_it_lists_recorded_pushes_over_h2c(h2, fake_apns):
    push(h2, fake_apns)
    push(h2, fake_apns, token="zz")
    listed = h2.get("/_apns/pushes").json()["pushes"]
    assert [(p["device_token"], p["status"]) for p in listed] == [(TOKEN, 200), ("zz", 400)]


@pytest.mark.parametrize(
    ("make_jwt", "reason"),
    [
        (lambda key: False, "MissingProviderToken"),
        (lambda key: provider_jwt(key, pem=new_pem()), "InvalidProviderToken"),  # signed by another key
        (lambda key: provider_jwt(key, kid="OTHERKEY01"), "InvalidProviderToken"),
        (lambda key: provider_jwt(key, iss="OTHERTEAM1"), "InvalidProviderToken"),
        (lambda key: "not.a.jwt", "InvalidProviderToken"),
        (lambda key: provider_jwt(key, iat=time.time() - 3601), "ExpiredProviderToken"),
    ],
)
def test_it_refuses_bad_provider_tokens_with_403(h2, fake_apns, make_jwt, reason):
    response = push(h2, fake_apns, jwt_token=make_jwt(fake_apns.key))
    assert response.status_code == 403
    assert response.json() == {"reason": reason}


def test_it_accepts_a_provider_token_just_under_an_hour_old(h2, fake_apns):
    assert push(h2, fake_apns, jwt_token=provider_jwt(fake_apns.key, iat=time.time() - 3500)).status_code == 200


@pytest.mark.parametrize("token", ["zz" * 32, "abc", "a1" * 31])
def test_it_answers_400_bad_device_token_for_malformed_tokens(h2, fake_apns, token):
    response = push(h2, fake_apns, token=token)
    assert (response.status_code, response.json()) == (400, {"reason": "BadDeviceToken"})


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"apns-topic": "com.other.app"}, "TopicDisallowed"),
        ({"apns-priority": "7"}, "BadPriority"),
        ({"apns-push-type": "shout"}, "InvalidPushType"),
        ({"apns-expiration": "tomorrow"}, "BadExpirationDate"),
        ({"apns-id": "not-a-uuid"}, "BadMessageId"),
    ],
)
def test_it_checks_headers_like_apple(h2, fake_apns, headers, reason):
    response = push(h2, fake_apns, headers=headers)
    assert (response.status_code, response.json()["reason"]) == (400, reason)


def test_it_answers_410_with_a_timestamp_for_unregistered_tokens(h2, fake_apns):
    fake_apns.state.unregister(TOKEN, at_ms=1_700_000_000_000)
    response = push(h2, fake_apns)
    assert response.status_code == 410
    assert response.json() == {"reason": "Unregistered", "timestamp": 1_700_000_000_000}


def test_it_unregisters_through_the_control_endpoint(h2, fake_apns):
    assert h2.post("/_apns/unregister", json={"token": TOKEN}).status_code == 200
    assert push(h2, fake_apns).status_code == 410


def test_it_answers_413_above_4096_bytes_and_accepts_exactly_4096(h2, fake_apns):
    def body(size):
        prefix = b'{"aps":{"alert":"'
        return prefix + b"x" * (size - len(prefix) - 4) + b'"}}\n'

    assert len(body(4096)) == 4096
    assert push(h2, fake_apns, content=body(4096)).status_code == 200
    response = push(h2, fake_apns, content=body(4097))
    assert (response.status_code, response.json()) == (413, {"reason": "PayloadTooLarge"})


def test_it_keeps_one_connection_working_after_large_and_rejected_bodies(h2, fake_apns):
    # hypercorn pitfall: an app that answers before reading the body breaks later requests on the connection.
    for _ in range(3):
        assert push(h2, fake_apns, content=b"x" * 20000).status_code == 413
        assert push(h2, fake_apns, jwt_token=False).status_code == 403
    assert push(h2, fake_apns).status_code == 200


def test_it_injects_faults_with_retry_after(h2, fake_apns):
    h2.post("/_apns/faults", json={"status": 503, "reason": "ServiceUnavailable", "count": 1, "retry_after": 7})
    response = push(h2, fake_apns)
    assert (response.status_code, response.headers["retry-after"]) == (503, "7")
    assert push(h2, fake_apns).status_code == 200


def test_it_serves_an_http1_list_page_with_openable_invitation_links(h2, fake_apns):
    push(h2, fake_apns, payload={"aps": {"alert": {"title": "Join"}}, "invitationURL": "http://x/invite/<1>"})
    page = httpx.get(fake_apns.base_url + "/_apns/")
    assert page.http_version == "HTTP/1.1"
    assert '<a href="http://x/invite/&lt;1&gt;">' in page.text


def test_it_writes_pushes_to_a_record_file_for_other_processes(tmp_path):
    record = tmp_path / "pushes.json"
    state = demo_state(tmp_path, record_file=record)
    demo = ensure_demo_apns_key(tmp_path)
    key = type("K", (), {"pem": demo.pem(), "key_id": demo.key_id, "team_id": demo.team_id, "topic": demo.topic})
    with FakeApnsServer(state) as server, httpx.Client(base_url=server.base_url, http1=False, http2=True) as h2:
        fake = type("F", (), {"key": key})
        assert push(h2, fake, payload={"aps": {}, "invitationURL": "http://x/i/2"}).status_code == 200
    assert [p["link"] for p in read_recorded_pushes(record)] == ["http://x/i/2"]


def test_it_reuses_the_demo_key_once_generated(tmp_path):
    first = ensure_demo_apns_key(tmp_path)
    second = ensure_demo_apns_key(tmp_path)
    assert first == second
    assert len(first.key_id) == 10
    assert first.env("http://127.0.0.1:1")["APNS_KEY_FILE"] == str(first.path)
    assert oct(first.path.stat().st_mode & 0o777) == "0o600"


def test_it_gives_demo_env_only_when_the_operator_has_not_configured_apns(tmp_path):
    env = demo_apns_env("http://127.0.0.1:5", environ={}, var_dir=tmp_path)
    assert env["APNS_HOST"] == "http://127.0.0.1:5" and env["APNS_KEY_ID"] == ensure_demo_apns_key(tmp_path).key_id
    assert demo_apns_env("http://127.0.0.1:5", environ={"APNS_KEY_FILE": "/real.p8"}, var_dir=tmp_path) == {}


@pytest.mark.sandbox
def test_it_runs_inside_the_sandbox_process_and_lists_pushes_there(tmp_path):
    root = Path(__file__).resolve().parents[3]
    port_file, apns_port_file = tmp_path / "port", tmp_path / "apns-port"
    command = [sys.executable, "-m", "vpp.sandbox", "--port", "0", "--port-file", str(port_file), "--state", ""]
    command += ["--apns-port", "0", "--apns-port-file", str(apns_port_file), "--apns-key-dir", str(tmp_path)]
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (apns_port_file.exists() and apns_port_file.read_text() and port_file.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, "sandbox did not start"
            time.sleep(0.05)
        sandbox_url = f"http://127.0.0.1:{port_file.read_text()}"
        apns_url = f"http://127.0.0.1:{apns_port_file.read_text()}"
        demo = ensure_demo_apns_key(tmp_path)  # the key the sandbox's fake trusts
        config = ApnsConfig(
            base_url=apns_url, key_id=demo.key_id, team_id=demo.team_id, topic=demo.topic, private_key_pem=demo.pem()
        )
        link = f"{sandbox_url}/invite/CODE123"
        with ApnsProvider(config, token_store=MemoryTokenStore()) as apns:
            assert apns.send_invitation(TOKEN, link=link, title="Join", body="Tap").ok
        listed = httpx.get(f"{sandbox_url}/_sandbox/pushes").json()
        assert [p["link"] for p in listed["pushes"]] == [link] and listed["apns_url"] == apns_url
        assert f'<a href="{link}">' in httpx.get(f"{apns_url}/_apns/").text
        assert [p["link"] for p in read_recorded_pushes(tmp_path / "apns-pushes.json")] == [link]
    finally:
        process.terminate()
        process.wait(10)
