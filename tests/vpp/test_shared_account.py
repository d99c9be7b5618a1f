"""Issue 11.5: one Apple Account behind several VPP users (same idHash), and selected users who
share a mailbox, shown before they block an invitation."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Permission
from django.contrib.auth.models import User as Admin

from tests.support.users import make_user
from vpp.models import VppUserStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, token_setting):
    admin = Admin.objects.create_user("admin", password=None)
    admin.user_permissions.add(*Permission.objects.filter(content_type__app_label="vpp", codename="invite_vppuser"))
    client.force_login(admin)
    return client


def associated(name, id_hash, **fields):
    return make_user(name, vpp_status=VppUserStatus.ASSOCIATED, vpp_fields={"id_hash": id_hash}, **fields)


def test_the_users_page_filters_and_badges_users_sharing_an_apple_account(admin_client):
    ada, ada_work = associated("Ada", "hash-ada"), associated("Ada Work", "hash-ada")
    bob = associated("Bob", "hash-bob")
    associated("Old Ada", "hash-ada", active=True).vpp_user.__class__.objects.filter(
        user__display_name="Old Ada"
    ).update(status=VppUserStatus.RETIRED)  # a retired record does not count

    page = admin_client.get("/users/?apple_account=shared").content.decode()

    assert ada.display_name in page and ada_work.display_name in page
    assert bob.display_name not in page and "Old Ada" not in page
    assert page.count("Shared Apple Account</span>") == 2
    everyone = admin_client.get("/users/").content.decode()
    assert everyone.count("Shared Apple Account</span>") == 2 and "Bob" in everyone


def test_the_invite_confirmation_names_selected_users_sharing_a_mailbox(admin_client):
    one = make_user("Sam One", email="family@example.com")
    two = make_user("Sam Two", email="Family@example.com")
    alone = make_user("Kim", email="kim@example.com")
    body = urlencode({"pk": [one.pk, two.pk, alone.pk]}, doseq=True)
    response = admin_client.post(
        "/vpp/bulk/invite/confirm/", body, content_type="application/x-www-form-urlencoded", HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert 'id="shared-mailboxes"' in html
    assert "family@example.com: Sam One" in html and "Sam Two" in html and "kim@example.com" not in html

    body = urlencode({"pk": [one.pk, alone.pk]}, doseq=True)
    response = admin_client.post(
        "/vpp/bulk/invite/confirm/", body, content_type="application/x-www-form-urlencoded", HTTP_HX_REQUEST="true"
    )
    assert 'id="shared-mailboxes"' not in response.content.decode()
