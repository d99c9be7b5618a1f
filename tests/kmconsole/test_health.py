"""/healthz and /readyz."""

from __future__ import annotations

import socket

import pytest

pytestmark = pytest.mark.django_db


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens


def test_it_answers_healthz_without_login_or_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_it_is_ready_when_database_and_broker_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": {"ok": True}, "broker": {"ok": True}}}


@pytest.mark.parametrize("url", ["redis://127.0.0.1:{port}/0", "unix://{tmp}/no-redis.sock?db=0"])
def test_it_is_not_ready_when_redis_is_down_and_says_why(client, settings, tmp_path, url):
    # The second form is the embedded default's private Redis when `make run` is not running.
    settings.REDIS_URL = url.format(port=_closed_port(), tmp=tmp_path)
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["broker"]["detail"].startswith("Redis is unreachable")


def test_it_still_renders_pages_when_redis_is_down(admin_client, settings):
    settings.REDIS_URL = settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    assert admin_client.get("/users/").status_code == 200
