"""The Users page: search, filters, sorting, pagination, selection and query counts."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import unescape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.support.users import make_device, make_user
from users.demo import demo_users_create
from users.forms import UserSelectionForm
from users.models import ActivationState as S
from users.models import Platform as P
from users.models import User
from users.selectors import SORTS, UserFilters, UserSelection, user_list

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true", "HX-Target": "user-table"}


def names(response) -> list[str]:
    return [unescape(name) for name in re.findall(r'<span class="cell-main">([^<]+)</span>', response.content.decode())]


def row_ids(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'class="row-check" name="pk" value="(\d+)"', response.content.decode())]


@pytest.fixture
def people():
    return {
        "anna": make_user("Anna Berg", login_id="aberg", email="anna@example.com", devices=[(P.IOS, S.ACTIVATED)]),
        "ben": make_user("Ben Carter", login_id="bcarter", email="", devices=[(P.MACOS, S.PENDING)]),
        "chloe": make_user(
            "Chloe Dubois", login_id="cdubois", email="chloe@corp.example", devices=[(P.ANDROID, S.ACTIVATED)]
        ),
        "david": make_user("David Engel", login_id="dengel", email="d.engel@example.com", devices=[]),
        "emma": make_user(
            "Emma Fischer",
            login_id="efischer",
            email="emma@example.com",
            devices=[(P.MACOS, S.ACTIVATED), (P.WINDOWS, S.DEACTIVATED)],
        ),
    }


def test_it_lists_users_with_their_columns(admin_client, people):
    response = admin_client.get("/users/")
    html = response.content.decode()
    assert response.status_code == 200
    assert names(response) == ["Anna Berg", "Ben Carter", "Chloe Dubois", "David Engel", "Emma Fischer"]
    assert "aberg" in html and "anna@example.com" in html
    assert "No email" in html  # Ben has none
    assert 'class="badge badge-ok device-badge" title="1 iOS device · Activated">iOS<' in html
    assert 'class="badge badge-warn device-badge" title="1 macOS device · Pending">macOS<' in html
    assert 'class="badge badge-muted device-badge" title="1 Windows device · Deactivated">Windows<' in html
    assert "No devices" in html
    assert "VPP status" in html and '<td class="col-vpp">' in html


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("anna", ["Anna Berg"]),  # name
        ("CDUBOIS", ["Chloe Dubois"]),  # login id, case-insensitive
        ("corp.example", ["Chloe Dubois"]),  # email
        ("example.com", ["Anna Berg", "David Engel", "Emma Fischer"]),
        ("emma fischer", ["Emma Fischer"]),  # every word must match
        ("nobody", []),
    ],
)
@pytest.mark.parametrize("fts_broad", [0, 4000], ids=["broad-terms-as-like", "terms-through-the-index"])
def test_it_searches_name_login_id_and_email(admin_client, people, q, expected, fts_broad, monkeypatch):
    # On SQLite a term matching more than FTS_BROAD users is searched with LIKE instead of FTS.
    monkeypatch.setattr("users.selectors.FTS_BROAD", fts_broad)
    assert names(admin_client.get("/users/", {"q": q})) == expected


def test_search_follows_renames_and_deletes(admin_client, people):
    # On SQLite the search goes through an FTS5 index kept current by triggers
    # (users/migrations/0004): a table rebuild that dropped them would fail here.
    people["david"].display_name = "Dave Quist"
    people["david"].save()
    people["ben"].delete()
    make_user("Zoe Quist", login_id="zquist", email="zoe@example.com", devices=())
    assert names(admin_client.get("/users/", {"q": "quist"})) == ["Dave Quist", "Zoe Quist"]
    assert names(admin_client.get("/users/", {"q": "david"})) == []
    assert names(admin_client.get("/users/", {"q": "carter"})) == []
    User.objects.filter(pk=people["chloe"].pk).update(search_text="renamed in bulk")
    assert names(admin_client.get("/users/", {"q": "bulk"})) == ["Chloe Dubois"]


@pytest.mark.parametrize("q", ['"', 'an"na', "o'brien", "a*b", "(x)", "AND", "NEAR(a b)", "-em", "%", "_", "^ann"])
def test_search_takes_any_text_literally(admin_client, people, q):
    response = admin_client.get("/users/", {"q": q})
    assert response.status_code == 200
    assert names(response) == []


def test_search_matches_short_and_punctuated_terms(admin_client, people):
    make_user("Seán O'Brien", login_id="obrien", email="o.brien@example.com", devices=())
    assert names(admin_client.get("/users/", {"q": "o'brien"})) == ["Seán O'Brien"]
    assert names(admin_client.get("/users/", {"q": "SEÁN"})) == ["Seán O'Brien"]
    assert names(admin_client.get("/users/", {"q": "fi"})) == ["Emma Fischer"]  # under 3 characters


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"platform": "macos"}, ["Ben Carter", "Emma Fischer"]),
        ({"platform": "android"}, ["Chloe Dubois"]),
        ({"platform": "windows"}, ["Emma Fischer"]),
        ({"platform": "ipados"}, []),
        ({"activated": "yes"}, ["Anna Berg", "Emma Fischer"]),  # Chloe's activated device is Android
        ({"activated": "no"}, ["Ben Carter", "Chloe Dubois", "David Engel"]),
        ({"platform": "macos", "activated": "yes"}, ["Emma Fischer"]),
        ({"platform": "macos", "q": "ben"}, ["Ben Carter"]),
    ],
)
def test_it_filters_by_platform_and_activated_device(admin_client, people, params, expected):
    assert names(admin_client.get("/users/", params)) == expected


def test_it_ignores_bad_filter_values_instead_of_failing(admin_client, people):
    response = admin_client.get(
        "/users/", {"platform": "beos", "activated": "maybe", "sort": "password", "size": "7", "page": "x"}
    )
    assert response.status_code == 200
    assert len(names(response)) == 5


def test_it_keeps_the_filter_current_when_a_device_changes(admin_client, people):
    device = make_device(people["david"], platform=P.IPADOS, activation_state=S.PENDING)
    assert names(admin_client.get("/users/", {"platform": "ipados", "activated": "no"})) == ["David Engel"]
    device.activation_state = S.ACTIVATED
    device.save()
    assert names(admin_client.get("/users/", {"activated": "yes"})) == ["Anna Berg", "David Engel", "Emma Fischer"]
    device.delete()
    assert names(admin_client.get("/users/", {"platform": "ipados"})) == []


def test_it_sorts_by_whitelisted_columns(admin_client, people):
    User.objects.filter(pk=people["chloe"].pk).update(last_seen_at=datetime(2026, 1, 1, tzinfo=UTC))
    User.objects.filter(pk=people["anna"].pk).update(last_seen_at=datetime(2026, 6, 1, tzinfo=UTC))
    User.objects.exclude(pk__in=[people["chloe"].pk, people["anna"].pk]).update(last_seen_at=None)
    assert names(admin_client.get("/users/", {"sort": "-name"}))[0] == "Emma Fischer"
    assert names(admin_client.get("/users/", {"sort": "login"}))[0] == "Anna Berg"
    assert names(admin_client.get("/users/", {"sort": "-email"}))[0] == "Emma Fischer"
    # Never seen counts as the oldest: last when newest first.
    assert names(admin_client.get("/users/", {"sort": "-last_seen"}))[:2] == ["Anna Berg", "Chloe Dubois"]
    assert names(admin_client.get("/users/", {"sort": "last_seen"}))[-2:] == ["Chloe Dubois", "Anna Berg"]


def test_it_marks_the_sorted_column_and_links_the_reverse_order(admin_client, people):
    html = admin_client.get("/users/", {"sort": "-name"}).content.decode()
    assert (
        'href="?sort=name" hx-get="?sort=name" hx-target="#user-table" hx-swap="outerHTML" aria-sort="descending">Name<'
    ) in html
    assert 'href="?sort=login"' in html


def test_it_paginates_with_a_page_size_choice(admin_client):
    for i in range(60):
        make_user(f"Person {i:02d}", devices=())
    first = admin_client.get("/users/")
    assert names(first)[0] == "Person 00" and len(names(first)) == 50
    assert "Showing <strong>1–50</strong> of <strong>60</strong> users" in first.content.decode()
    second = admin_client.get("/users/", {"page": 2})
    assert names(second) == [f"Person {i}" for i in range(50, 60)]
    small = admin_client.get("/users/", {"size": 25, "page": 3})
    assert names(small) == [f"Person {i}" for i in range(50, 60)]
    assert '<option value="25" selected>' in small.content.decode()
    # A page past the end shows the last page rather than an error.
    assert names(admin_client.get("/users/", {"page": 99})) == names(second)


@pytest.mark.parametrize("sort", ["name", "-name", "login", "-login", "email", "-email", "last_seen", "-last_seen"])
def test_every_page_in_every_sort_order_lists_each_user_once_in_order(admin_client, sort):
    # Pages past the middle are read from the other end of the sort index: same order, no gaps.
    for i in range(130):
        seen = datetime(2026, 1, 1 + i % 20, tzinfo=UTC) if i % 3 else None  # ties and NULLs
        make_user(
            f"Person {i % 40:02d}",
            login_id=f"p{(i * 37) % 130:03d}",
            email=f"{i % 7}@x.example",
            last_seen_at=seen,
            devices=(),
        )
    pages = [row_ids(admin_client.get("/users/", {"sort": sort, "size": 25, "page": n})) for n in range(1, 7)]
    assert [len(page) for page in pages] == [25, 25, 25, 25, 25, 5]
    expected = list(User.objects.order_by(*SORTS[sort]).values_list("pk", flat=True))
    assert [pk for page in pages for pk in page] == expected


def test_it_answers_htmx_with_the_table_fragment_and_pushes_a_clean_url(admin_client, people):
    response = admin_client.get("/users/?q=anna&platform=&activated=&sort=name&size=50", headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and 'id="user-table"' in html
    assert names(response) == ["Anna Berg"]
    assert response["HX-Push-Url"] == "/users/?q=anna"
    assert 'id="filter-state" class="filter-state" hx-swap-oob="true"' in html
    assert "Clear filters" in html.split('id="filter-state"')[1].split("</span>")[0]
    assert "HX-Request" in response["Vary"]


def test_it_renders_the_full_page_for_an_htmx_history_restore(admin_client, people):
    response = admin_client.get("/users/", headers={**HTMX, "HX-History-Restore-Request": "true"})
    assert "<html" in response.content.decode()


def test_it_offers_select_all_matching_with_the_filter_in_the_bulk_form(admin_client, people):
    html = admin_client.get("/users/", {"platform": "macos"}).content.decode()
    assert 'data-bulk-form data-total="2"' in html
    assert '<input type="hidden" name="select_all" value="">' in html
    assert '<input type="hidden" name="platform" value="macos">' in html
    assert "Select all 2 users matching this filter" in html
    assert html.count('class="row-check" name="pk"') == 2


def test_it_shows_an_empty_state_for_a_search_without_results(admin_client, people):
    html = admin_client.get("/users/", {"q": "zzzz"}).content.decode()
    assert "No users match" in html and "“zzzz”" in html


def test_it_shows_an_empty_state_without_any_users(admin_client):
    assert "No device users yet" in admin_client.get("/users/").content.decode()


# --- the selection a bulk action posts ------------------------------------------------------
def test_it_reapplies_the_filter_for_select_all_matching(people):
    form = UserSelectionForm({"select_all": "1", "platform": "macos", "pk": [str(people["anna"].pk)]})
    assert form.is_valid()
    assert sorted(form.selected_users().values_list("display_name", flat=True)) == ["Ben Carter", "Emma Fischer"]
    assert form.selected_users().count() == 2
    assert form.selection() == UserSelection(all_matching=True, filters=UserFilters(platform="macos"))
    assert form.selection().to_json() == {"all_matching": True, "filter": {"platform": "macos"}}


def test_it_selects_ticked_rows_without_select_all(people):
    form = UserSelectionForm({"pk": [str(people["anna"].pk), str(people["ben"].pk)], "select_all": ""})
    assert form.is_valid()
    assert set(form.selected_users()) == {people["anna"], people["ben"]}
    assert form.selection() == UserSelection(ids=tuple(sorted([people["anna"].pk, people["ben"].pk])))
    assert form.selection().all_matching is False


def test_it_refuses_an_empty_selection():
    form = UserSelectionForm({"q": "x"})
    assert not form.is_valid()
    assert "Select at least one user." in form.non_field_errors()


def test_it_exposes_user_list_for_other_parts(people):
    assert set(user_list(filters=UserFilters(activated=True))) == {people["anna"], people["emma"]}
    assert UserFilters(q="a", activated=False).as_params() == {"q": "a", "activated": "no"}


# --- query counts -------------------------------------------------------------------------
def _queries(client, params) -> int:
    client.get("/users/", params)  # warm the session and caches
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/users/", params).status_code == 200
    return len(captured)


@pytest.mark.parametrize("params", [{}, {"platform": "ios"}, {"activated": "yes"}, {"q": "a"}, {"page": 2}])
def test_it_uses_a_bounded_number_of_queries_whatever_the_page_size_and_total(admin_client, params):
    # Enough rows that every page is full (a short first page skips the COUNT on purpose).
    demo_users_create(count=300, seed=3)
    small = _queries(admin_client, {**params, "size": 25})
    large = _queries(admin_client, {**params, "size": 100})
    demo_users_create(count=600, seed=4)
    bigger_total = _queries(admin_client, {**params, "size": 100})
    assert small == large == bigger_total
    # session + admin user + count + ids + rows + devices + session save (3 on SQLite)
    # + the VPP server setting (the toolbar says why VPP actions are off)
    assert large <= 11
