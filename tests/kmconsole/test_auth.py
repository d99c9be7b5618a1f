"""Login, logout, session expiry (including the htmx case) and the 404 page."""

from __future__ import annotations

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_it_sends_anonymous_visitors_to_the_login_page(client):
    response = client.get("/users/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/users/"


def test_it_renders_the_login_page_in_the_console_layout(client):
    response = client.get("/login/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'class="login-card"' in html
    assert 'name="username"' in html and 'name="password"' in html
    assert "css/console.css" in html


def test_it_logs_in_and_lands_on_the_users_page(client, django_user_model):
    django_user_model.objects.create_user("alice", password="a-long-password-1")
    response = client.post("/login/", {"username": "alice", "password": "a-long-password-1"})
    assert response.status_code == 302
    assert response["Location"] == reverse("users:list")
    assert client.get("/users/").status_code == 200


def test_it_refuses_a_wrong_password_with_a_readable_error(client, django_user_model):
    django_user_model.objects.create_user("alice", password="a-long-password-1")
    response = client.post("/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_it_logs_out_with_post_only(admin_client):
    assert admin_client.get("/logout/").status_code == 405
    response = admin_client.post("/logout/")
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert admin_client.get("/users/").status_code == 302


def test_it_shows_navigation_and_the_shared_modal_to_logged_in_admins(admin_client):
    html = admin_client.get("/users/").content.decode()
    assert 'aria-label="Main"' in html
    assert ">User</a>" in html
    assert "VPP Server Setting" in html and "iOS/macOS" in html
    assert '<dialog id="modal"' in html
    assert 'id="messages"' in html
    assert 'hx-headers=\'{"X-CSRFToken": "' in html


def test_it_expires_an_idle_session(admin_client):
    session = admin_client.session
    session.set_expiry(-1)  # as if SESSION_COOKIE_AGE of idleness had passed
    session.save()
    response = admin_client.get("/users/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_it_extends_an_active_session_without_a_write_per_request(admin_client, settings):
    # SESSION_COOKIE_AGE is an idle timeout: activity renews the session, at most once a
    # SESSION_REFRESH_SECONDS, so polling pages do not write the session on every request.
    admin_client.get("/users/")  # the first request after login renews it
    cookie = admin_client.cookies[settings.SESSION_COOKIE_NAME]
    assert int(cookie["max-age"]) == settings.SESSION_COOKIE_AGE

    with CaptureQueriesContext(connection) as queries:
        admin_client.get("/users/")
    assert not [q for q in queries if q["sql"].startswith("UPDATE") and "django_session" in q["sql"]]

    session = admin_client.session
    session["_refreshed_at"] -= settings.SESSION_REFRESH_SECONDS  # as if a minute had passed
    session.save()
    expires = stored_expiry(admin_client)
    admin_client.get("/users/")
    assert stored_expiry(admin_client) > expires


def stored_expiry(client):
    return Session.objects.get(session_key=client.session.session_key).expire_date


def test_it_starts_no_session_for_anonymous_visitors(client, settings):
    client.get("/login/")
    client.get("/healthz")
    assert settings.SESSION_COOKIE_NAME not in client.cookies


def test_it_client_redirects_an_htmx_request_after_the_session_expired(client):
    response = client.get(
        "/users/?q=ann",
        headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/users/?q=ann&page=2"},
    )
    # Not the login page swapped into the table: a full-page redirect that htmx follows.
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith("/login/?next=%2Fusers%2F%3Fq%3Dann%26page%3D2")
    assert "expired=1" in response["HX-Redirect"]
    assert b"login-card" not in response.content


def test_it_tells_the_admin_the_session_expired(client):
    html = client.get("/login/?next=/users/&expired=1").content.decode()
    assert "Your session expired" in html


def test_it_renders_missing_pages_as_a_404_in_the_layout(admin_client):
    response = admin_client.get("/no-such-page/")
    html = response.content.decode()
    assert response.status_code == 404
    assert "Page not found" in html
    assert 'class="topbar"' in html and 'aria-label="Main"' in html


def test_it_renders_the_404_page_for_anonymous_visitors_too(client):
    response = client.get("/nothing/here")
    assert response.status_code == 404
    assert "Page not found" in response.content.decode()
