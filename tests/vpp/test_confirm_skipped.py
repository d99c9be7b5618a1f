"""Issue 12: the confirmation names the skipped users, with the reason, in the table's order."""

from __future__ import annotations

import re

import pytest

from tests.support.users import make_user
from tests.vpp.test_bulk_views import admin_client, post  # noqa: F401 - fixtures
from vpp import bulk_views
from vpp.models import VppUserStatus

pytestmark = pytest.mark.django_db


def skipped_names(html: str) -> list[str]:
    block = html.split('id="skipped-users"', 1)[1].split("</details>", 1)[0]
    return re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td></tr>", block)


def test_it_lists_the_skipped_users_by_name_and_reason_in_table_order(admin_client):  # noqa: F811
    make_user("Eligible One")
    bea = make_user("Bea Nodevice", login_id="bea", devices=())
    carl = make_user("Carl Associated", login_id="carl", vpp_status=VppUserStatus.ASSOCIATED)
    abe = make_user("Abe Nodevice", login_id="abe", devices=())
    html = post(admin_client, "invite", {"select_all": "1", "sort": "-name"}).content.decode()
    assert skipped_names(html) == [
        ("Carl Associated (carl)", "Already associated with an Apple Account"),
        ("Bea Nodevice (bea)", "No activated iOS/macOS device"),
        ("Abe Nodevice (abe)", "No activated iOS/macOS device"),
    ]
    html = post(admin_client, "invite", {"pk": [bea.pk, carl.pk, abe.pk], "sort": "name"}).content.decode()
    assert [name for name, _ in skipped_names(html)] == [
        "Abe Nodevice (abe)",
        "Bea Nodevice (bea)",
        "Carl Associated (carl)",
    ]
    assert 'name="sort" value="name"' in html  # carried to "Show all" and to apply


def test_it_shows_the_first_ones_and_all_on_request(admin_client, monkeypatch):  # noqa: F811
    monkeypatch.setattr(bulk_views, "SKIPPED_SHOWN", 2)
    for n in range(3):
        make_user(f"Nodevice {n}", devices=())
    html = post(admin_client, "invite", {"select_all": "1"}).content.decode()
    assert len(skipped_names(html)) == 2
    assert "2 of 3 shown" in html and 'id="skipped-show-all"' in html
    html = post(admin_client, "invite", {"select_all": "1", "skipped": "all"}).content.decode()
    assert len(skipped_names(html)) == 3 and 'id="skipped-show-all"' not in html
