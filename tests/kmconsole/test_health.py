"""/healthz and /readyz."""

from __future__ import annotations

import socket

import pytest

from kmconsole.health import broker_status

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


def test_it_is_ready_when_database_and_broker_answer(client, settings, tmp_path):
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path)}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": {"ok": True}, "broker": {"ok": True}}}


def test_it_is_not_ready_when_redis_is_down_and_says_why(client, settings):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["broker"]["detail"].startswith("Redis is unreachable")


def test_it_reports_an_unwritable_queue_folder(settings, tmp_path):
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path / "missing")}
    status = broker_status()
    assert not status.ok and "not writable" in status.detail


def test_it_still_renders_pages_when_redis_is_down(admin_client, settings):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    assert admin_client.get("/users/").status_code == 200
