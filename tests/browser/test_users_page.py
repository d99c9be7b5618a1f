"""The Users page in headless Chromium: log in, search, filter, sort, page, select.

Also writes screenshots of the login page, the Users page, an empty search and the 404
page to var/screenshots/ for a look by eye.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from tests.support.users import make_user
from users.demo import demo_users_create
from users.models import ActivationState as S
from users.models import Platform as P

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(settings.VAR_DIR) / "screenshots"


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def rows(page) -> list[str]:
    return page.locator("#user-table td.col-name .cell-main").all_inner_texts()


def test_it_logs_in_searches_and_filters_without_a_full_reload(page, console_url, django_user_model):
    make_user("Zoe Quist", login_id="zquist", devices=[(P.MACOS, S.ACTIVATED)])
    make_user("Zack Ray", login_id="zray", devices=[(P.ANDROID, S.ACTIVATED)])
    demo_users_create(count=120, seed=7)
    page.goto(f"{console_url}/users/")
    assert "/login/" in page.url
    shot(page, "login")

    from tests.support.browser import BROWSER_ADMIN, BROWSER_PASSWORD

    django_user_model.objects.create_superuser(BROWSER_ADMIN, "a@example.com", BROWSER_PASSWORD)
    page.fill("input[name=username]", BROWSER_ADMIN)
    page.fill("input[name=password]", BROWSER_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/users/")
    assert len(rows(page)) == 50
    shot(page, "users")
    page.evaluate("window.__marker = 'same page'")  # survives only if htmx swaps, not reloads

    page.fill("#id_q", "z")  # typing searches after a short pause
    page.fill("#id_q", "zquist")
    page.wait_for_function("() => document.querySelectorAll('#user-table td.col-name').length === 1")
    assert rows(page) == ["Zoe Quist"]
    assert page.url.endswith("/users/?q=zquist")

    page.fill("#id_q", "")
    page.select_option("#id_platform", "android")
    page.wait_for_url("**/users/?platform=android")
    assert "Zack Ray" in rows(page)
    assert "Zoe Quist" not in rows(page)
    assert page.evaluate("window.__marker") == "same page"
    assert not page.console_errors, page.console_errors


def test_it_sorts_pages_and_selects_all_matching(logged_in_page, console_url):
    page = logged_in_page
    demo_users_create(count=130, seed=8)
    page.goto(f"{console_url}/users/?size=25")
    page.click("th.sortable >> text=Name")  # already ascending: flips to descending
    page.wait_for_url("**sort=-name**")
    names = rows(page)
    assert names == sorted(names, reverse=True)

    page.click("nav.pagination a[rel=next]")
    page.wait_for_url("**page=2**")
    assert page.inner_text(".pagination .current") == "2"

    page.check("input[data-check-all]")
    assert page.inner_text("[data-selection-count]") == "25"
    page.click("[data-select-all-matching]")
    assert page.inner_text("[data-selection-count]") == "130"
    assert page.input_value("input[name=select_all]") == "1"
    page.uncheck("input.row-check >> nth=0")
    assert page.inner_text("[data-selection-count]") == "24"
    assert page.input_value("input[name=select_all]") == ""
    assert not page.console_errors, page.console_errors


def test_it_shows_empty_search_results_and_the_404_page(logged_in_page, console_url):
    page = logged_in_page
    demo_users_create(count=40, seed=9)
    page.goto(f"{console_url}/users/?q=nobody-by-that-name")
    assert page.is_visible("text=No users match")
    shot(page, "users-empty-search")
    page.goto(f"{console_url}/no/such/page/")
    assert page.is_visible("text=Page not found")
    shot(page, "not-found")
    assert not [e for e in page.console_errors if "404" not in e], page.console_errors


def test_it_redirects_an_htmx_request_to_login_after_the_session_expired(logged_in_page, console_url):
    page = logged_in_page
    page.context.clear_cookies()  # as good as an expired session
    page.fill("#id_q", "anyone")
    page.wait_for_url("**/login/**")
    assert "expired=1" in page.url
    assert page.is_visible("text=Your session expired")
    assert page.locator("#user-table").count() == 0
