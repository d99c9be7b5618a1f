"""Issue 13: a device user's Managed Apple Account — validated, unique among active users,
shown and searchable on the Users page (SQLite FTS and Postgres trigram alike), editable in the admin."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from tests.support.users import make_user
from users.models import User

pytestmark = pytest.mark.django_db


def names(response) -> list[str]:
    return [unescape(n) for n in re.findall(r'<span class="cell-main">([^<]+)</span>', response.content.decode())]


def test_the_account_is_stored_lower_case_and_validated():
    user = make_user("Mia Hart", managed_apple_account="  Mia.Hart@Corp.Example ")
    user.refresh_from_db()
    assert user.managed_apple_account == "mia.hart@corp.example"
    user.managed_apple_account = "not an address"
    with pytest.raises(ValidationError) as caught:
        user.full_clean()
    assert caught.value.message_dict["managed_apple_account"] == [
        "“not an address” is not a Managed Apple Account (expected name@domain)."
    ]


def test_an_account_is_unique_among_active_users_only():
    make_user("First", managed_apple_account="same@corp.example")
    second = make_user("Second")
    second.managed_apple_account = "SAME@corp.example"
    with pytest.raises(ValidationError) as caught:
        second.full_clean()
    assert "Another active user already has this Managed Apple Account." in str(caught.value)
    with pytest.raises(IntegrityError), transaction.atomic():
        second.save()
    User.objects.filter(display_name="First").update(is_active=False)  # she left: her account may move on
    second.full_clean()
    second.save()
    assert make_user("Third", managed_apple_account="").managed_apple_account == ""  # empty is no account


def test_the_users_page_shows_and_searches_the_account(admin_client):
    make_user("Mia Hart", email="mia@example.com", managed_apple_account="mhart@corp.example", devices=())
    make_user("Noah Lind", email="noah@example.com", devices=())
    page = admin_client.get("/users/").content.decode()
    assert 'title="Managed Apple Account">Managed: mhart@corp.example</span>' in page
    assert names(admin_client.get("/users/", {"q": "mhart@corp"})) == ["Mia Hart"]


def test_search_follows_a_changed_account(admin_client):
    user = make_user("Mia Hart", managed_apple_account="old@corp.example", devices=())
    user.managed_apple_account = "fresh@corp.example"
    user.save(update_fields=["managed_apple_account"])
    assert names(admin_client.get("/users/", {"q": "fresh@corp"})) == ["Mia Hart"]
    assert names(admin_client.get("/users/", {"q": "old@corp"})) == []


def test_the_admin_edits_the_account_with_a_clear_message(admin_client):
    taken = make_user("Holder", managed_apple_account="taken@corp.example", devices=())
    user = make_user("Editor Target", login_id="target", devices=())
    url = f"/admin/users/user/{user.pk}/change/"
    form = {
        "display_name": user.display_name,
        "login_id": user.login_id,
        "email": "",
        "department": "",
        "is_active": "on",
        "devices-TOTAL_FORMS": "0",
        "devices-INITIAL_FORMS": "0",
    }
    response = admin_client.post(url, {**form, "managed_apple_account": "taken@corp.example"})
    assert response.status_code == 200
    assert "Another active user already has this Managed Apple Account." in response.content.decode()
    response = admin_client.post(url, {**form, "managed_apple_account": "bad address"})
    assert "is not a Managed Apple Account" in response.content.decode()
    user.refresh_from_db()
    assert user.managed_apple_account == ""

    response = admin_client.post(url, {**form, "managed_apple_account": "Target@Corp.Example"})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.managed_apple_account == "target@corp.example"
    assert taken.managed_apple_account == "taken@corp.example"
