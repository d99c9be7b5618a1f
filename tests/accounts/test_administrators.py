"""Setting › Administrators: add, assign a role, deactivate; audited; gated; last-admin protection."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from accounts.roles import ADMINISTRATOR, OPERATOR, VIEWER, role_of
from tests.support.roles import ADMIN_PASSWORD, make_admin
from vpp.models import AuditEvent

pytestmark = pytest.mark.django_db

URL = "/setting/administrators/"
ADDRESS = "192.0.2.44"
NEW_ADMIN = {
    "action": "add",
    "username": "newbie",
    "email": "newbie@example.com",
    "password1": "a-fine-long-password-7",
    "password2": "a-fine-long-password-7",
    "role": VIEWER,
}


@pytest.fixture
def ada(client):
    """An Administrator, logged in."""
    user = make_admin("ada", role=ADMINISTRATOR)
    client.force_login(user)
    return user


def change(client, user: User, action: str, role: str = ""):
    return client.post(URL, {"action": action, "user": user.pk, "role": role}, REMOTE_ADDR=ADDRESS, follow=True)


def audit() -> list[tuple]:
    return list(AuditEvent.objects.order_by("id").values_list("actor_name", "action", "target_summary", "ip"))


def test_it_lists_admins_with_role_status_and_last_login(client, ada):
    make_admin("vera", role=VIEWER)
    make_admin("olga", role=OPERATOR, active=False)
    client.post("/logout/")
    assert client.post("/login/", {"username": "ada", "password": ADMIN_PASSWORD}).status_code == 302
    html = client.get(URL).content.decode()
    assert 'data-username="vera"' in html and 'data-username="olga"' in html
    assert "Deactivated" in html and "Never" in html  # olga: deactivated, never logged in
    ada.refresh_from_db()
    assert ada.last_login is not None and ada.last_login.strftime("%-d %b %Y, %H:%M") in html
    assert "Your own role: another Administrator can change it." in html
    assert '<a href="/setting/administrators/" aria-current="page">Administrators</a>' in html


def test_it_adds_an_admin_with_a_role_and_audits_it(client, ada):
    response = client.post(URL, {**NEW_ADMIN, "role": OPERATOR}, REMOTE_ADDR=ADDRESS, follow=True)
    assert "newbie added as Operator." in response.content.decode()
    newbie = User.objects.get(username="newbie")
    assert role_of(newbie) == OPERATOR and newbie.is_active and not newbie.is_staff
    assert newbie.check_password("a-fine-long-password-7")
    added = "Added the administrator newbie with the role Operator."
    assert audit() == [("ada", "accounts.admin_added", added, ADDRESS)]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"username": "Ada"}, "A user with that username already exists."),
        ({"password1": "short", "password2": "short"}, "This password is too short."),
        ({"password2": "something-else-entirely"}, "The two password fields didn’t match."),
        ({"role": "Emperor"}, "Select a valid choice."),
    ],
)
def test_bad_input_adds_nobody_and_says_why(client, ada, fields, error):
    response = client.post(URL, {**NEW_ADMIN, **fields})
    assert response.status_code == 422
    assert error in response.content.decode()
    assert User.objects.count() == 1 and audit() == []


def test_it_assigns_one_role_and_audits_the_change(client, ada):
    vera = make_admin("vera", role=VIEWER)
    response = change(client, vera, "role", OPERATOR)
    assert "vera is now Operator." in response.content.decode()
    assert [g.name for g in vera.groups.all()] == [OPERATOR]
    assert audit() == [("ada", "accounts.role_changed", "Changed the role of vera from Viewer to Operator.", ADDRESS)]
    assert "Nothing to change for vera." in change(client, vera, "role", OPERATOR).content.decode()
    assert len(audit()) == 1


def test_it_deactivates_and_reactivates_and_a_deactivated_admin_is_logged_out(client, ada):
    vera = make_admin("vera", role=VIEWER)
    vera_browser = Client()
    vera_browser.force_login(vera)
    assert vera_browser.get("/users/").status_code == 200

    assert "vera deactivated" in change(client, vera, "deactivate").content.decode()
    vera.refresh_from_db()
    assert not vera.is_active
    assert vera_browser.get("/users/").status_code == 302  # the open session no longer works
    assert Client().post("/login/", {"username": "vera", "password": ADMIN_PASSWORD}).status_code == 200

    assert "vera reactivated." in change(client, vera, "reactivate").content.decode()
    assert [a for _, a, _, _ in audit()] == ["accounts.admin_deactivated", "accounts.admin_reactivated"]


def test_an_admin_cannot_demote_or_deactivate_themselves(client, ada):
    make_admin("bea", role=ADMINISTRATOR)  # not the last Administrator: still refused
    html = change(client, ada, "role", VIEWER).content.decode()
    assert "You cannot change the role of your own account: ask another Administrator." in html
    html = change(client, ada, "deactivate").content.decode()
    assert "You cannot deactivate your own account" in html
    ada.refresh_from_db()
    assert ada.is_active and role_of(ada) == ADMINISTRATOR and audit() == []


def test_the_last_active_administrator_cannot_be_demoted_or_deactivated(client, ada):
    root = User.objects.create_superuser("root", "root@example.com", ADMIN_PASSWORD)
    client.force_login(root)  # a superuser may use the page but does not count as an Administrator
    for action, role in (("role", OPERATOR), ("deactivate", "")):
        html = change(client, ada, action, role).content.decode()
        assert "ada is the last active Administrator: make someone else an Administrator first." in html
    ada.refresh_from_db()
    assert ada.is_active and role_of(ada) == ADMINISTRATOR and audit() == []

    # A deactivated Administrator does not count either.
    bea = make_admin("bea", role=ADMINISTRATOR, active=False)
    assert "last active Administrator" in change(client, ada, "deactivate").content.decode()
    change(client, bea, "reactivate")
    assert "ada deactivated" in change(client, ada, "deactivate").content.decode()


def test_superusers_are_left_to_the_django_admin(client, ada):
    root = User.objects.create_superuser("root", "root@example.com", ADMIN_PASSWORD)
    html = change(client, root, "deactivate").content.decode()
    assert "root is a superuser: manage superusers in the Django admin." in html
    root.refresh_from_db()
    assert root.is_active and audit() == []


@pytest.mark.parametrize("role", [VIEWER, OPERATOR, None])
def test_only_administrators_may_use_the_page(client, role):
    target = make_admin("vera", role=VIEWER)
    client.force_login(make_admin("someone", role=role))
    assert client.get(URL).status_code == 403
    assert client.post(URL, {"action": "deactivate", "user": target.pk}).status_code == 403
    assert client.post(URL, {"action": "add", "username": "x", "password1": "p", "password2": "p"}).status_code == 403
    target.refresh_from_db()
    assert target.is_active and User.objects.count() == 2 and audit() == []
    assert "/setting/administrators/" not in client.get("/users/").content.decode()


def test_an_unknown_admin_changes_nothing(client, ada):
    response = client.post(URL, {"action": "deactivate", "user": 999999}, follow=True)
    assert "No such admin." in response.content.decode()
    assert audit() == []
