"""Web requests that talk to Apple or Redis answer within the page's budget, and say why when
Apple could not be asked (issue 10, items 3 and 4; docs/operations.md#timeouts).

Against the sandbox over real HTTP: Apple answering 503 with Retry-After, Apple answering slowly,
Redis (the shared rate limiter) unreachable, the broker refusing a job.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
from celery import current_app
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from kmconsole import timeouts
from tests.support.sandbox import store_sandbox_token
from vpp.apple import ratelimit
from vpp.models import AuditEvent, Job, TokenHealth, VppServerSetting

pytestmark = [pytest.mark.django_db, pytest.mark.sandbox]
URL = reverse("vpp:server-setting")


@pytest.fixture
def stored(vpp_sandbox):
    setting = store_sandbox_token(vpp_sandbox)
    VppServerSetting.objects.filter(pk=1).update(token_health=TokenHealth.VALID)
    return setting


@pytest.fixture(autouse=True)
def _no_pause_left_behind(vpp_sandbox):
    """A Retry-After pauses the token in the shared limiter: lift it for the tests that follow."""
    yield
    limiter = ratelimit.default_rate_limiter()
    key = ratelimit.token_key(vpp_sandbox.token)
    if isinstance(limiter, ratelimit.RedisRateLimiter):
        with contextlib.suppress(RedisError):  # (the test that cuts Redis off paused nothing)
            limiter.redis.delete(limiter._keys(key)[1])
    else:
        limiter._pause_until.pop(key, None)


def messages_of(response) -> str:
    return " ".join(str(m) for m in response.context["messages"]) if response.context else ""


def api_requests(vpp_sandbox) -> int:
    return sum(vpp_sandbox.counters()["endpoints"].values())


def test_check_with_apple_during_a_503_says_apple_is_busy_and_when_to_try_again(client, admin, stored, vpp_sandbox):
    vpp_sandbox.control(fail_next=5, fail_status=503, retry_after=60)
    before = api_requests(vpp_sandbox)
    response = client.post(URL, {"section": "token_check"}, follow=True)
    text = messages_of(response)
    assert "The token could not be checked with Apple: Apple is busy (HTTP 503); try again after" in text, text
    assert "Token checked with Apple" not in text
    assert api_requests(vpp_sandbox) - before == 1  # no sleeping through Retry-After, no second try


def test_check_with_apple_while_apple_is_slow_stops_at_the_pages_budget(client, admin, stored, vpp_sandbox, settings):
    settings.VPP_INTERACTIVE_BUDGET = 2.0  # the product's is WEB_TIMEOUT / 4 (7.5 s); same code path
    vpp_sandbox.control(latency=8)
    response = client.post(URL, {"section": "token_check"}, follow=True)
    vpp_sandbox.control(latency=0)
    text = messages_of(response)
    assert "The token could not be checked with Apple: Apple's service did not answer in time." in text, text
    assert "Nothing was changed" in text


def test_check_with_apple_while_redis_is_down_names_redis(client, admin, stored, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = client.post(URL, {"section": "token_check"}, follow=True)
    text = messages_of(response)
    assert "could not be checked with Apple: Redis (the shared rate limiter and message broker) is unreachable" in text
    assert "Apple is busy" not in text


def test_a_token_upload_during_a_503_stores_nothing_and_says_when_to_try_again(client, admin, vpp_sandbox):
    setting = VppServerSetting.load()
    setting.api_base_url = vpp_sandbox.base_url
    setting.save()
    vpp_sandbox.control(fail_next=5, fail_status=503, retry_after=60)
    upload = SimpleUploadedFile("org.vpptoken", vpp_sandbox.token.encode())
    response = client.post(URL, {"section": "token", "token_file": upload})
    assert response.status_code == 422
    html = response.content.decode()
    assert "The token could not be checked with Apple: Apple is busy (HTTP 503); try again after" in html
    assert not VppServerSetting.load().has_token
    assert not AuditEvent.objects.filter(action="vpp.token_uploaded").exists()


def test_notifications_setup_during_a_503_says_apple_is_busy(client, admin, stored, vpp_sandbox):
    vpp_sandbox.control(fail_next=5, fail_status=503, retry_after=60)
    response = client.post(URL, {"section": "notifications", "public_url": "https://console.example.com"})
    assert response.status_code == 422
    assert "could not be sent to Apple: Apple is busy (HTTP 503); try again after" in response.content.decode()


@pytest.mark.django_db(transaction=True)  # the enqueue runs on commit, as in production
def test_sync_now_with_the_broker_down_says_it_did_not_start(client, admin, stored, monkeypatch):
    def down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(current_app, "send_task", down)
    response = client.post(URL, {"section": "sync_now"}, follow=True)
    text = messages_of(response)
    job = Job.objects.get()
    assert f"Full sync with Apple (job #{job.pk}) is saved but not started: The message broker (" in text, text
    assert "It starts by itself once the broker is back" in text
    assert "started (job" not in text


def test_the_web_timeout_and_the_pages_budget_are_set_together():
    code = (
        "import runpy; from kmconsole import timeouts as t; g = runpy.run_path('gunicorn.conf.py');"
        "print(g['timeout'], t.INTERACTIVE_BUDGET)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], env={"WEB_TIMEOUT": "60", "PATH": ""}, capture_output=True, text=True, check=True
    )
    assert run.stdout.split() == ["60", "15.0"]
    assert timeouts.INTERACTIVE_BUDGET * 4 == timeouts.WEB_TIMEOUT


def test_send_test_to_me_against_a_mail_server_that_never_answers_stops_at_the_pages_budget(client, admin, settings):
    import socket
    import threading

    # A mail server that accepts the connection and then says nothing for 10 s.
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept():
        conn, _ = server.accept()
        held.append(conn)
        threading.Event().wait(10)
        conn.close()

    threading.Thread(target=accept, daemon=True).start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.getsockname()[1]
    settings.EMAIL_TIMEOUT = 60  # the background's patience; a page must not inherit it
    settings.VPP_INTERACTIVE_BUDGET = 2.0
    admin.email = "admin@example.com"
    admin.save()
    response = client.post(URL, {"section": "send_test", "send_test": "1"}, follow=True)
    server.close()
    text = messages_of(response)
    assert text.startswith("The test invitation could not be sent") and text.endswith("timed out"), text
