"""The Users page: one view for the full page and its htmx table fragment."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import QueryDict
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import push_url

from users.forms import ACTIVATED_CHOICES, UserFilterForm
from users.person import person_get, person_sections
from users.selectors import DEFAULT_PAGE_SIZE, DEFAULT_SORT, EXTRA_FILTERS, PAGE_SIZES, UserPage, user_page

TABLE_ID = "user-table"
SORTABLE_COLUMNS = ("name", "login", "email", "last_seen")


@login_required
@require_GET
@vary_on_headers("HX-Request")
def user_list(request):
    form = UserFilterForm(request.GET)
    page = user_page(filters=form.filters(), sort=form.sort_key, page=form.page_number, size=form.page_size)
    state = _url_state(page)
    context = {
        "form": form,
        "page": page,
        "state": state,
        "sorting": _sorting(page.sort),
        "page_sizes": PAGE_SIZES,
        "table_id": TABLE_ID,
        "platform_choices": form.fields["platform"].choices,
        "activated_choices": ACTIVATED_CHOICES,
        "activated_value": page.filters.as_params().get("activated", ""),
        "extra_filters": _extra_filters(page),
    }
    partial = request.htmx and request.htmx.target == TABLE_ID and not request.htmx.history_restore_request
    if form.ignored() and not partial:
        # The page then shows more than the address asked for: say so (a hand-edited or stale URL).
        messages.warning(request, f"Not understood, so not applied: {', '.join(form.ignored())}.")
    # Only the table when htmx asks for it; a history restore needs the whole page.
    if partial:
        response = render(request, "users/list.html#user-table", context)
        # The canonical URL (no empty or default parameters) goes to the address bar.
        query = state.urlencode()
        return push_url(response, f"{request.path}?{query}" if query else request.path)
    return render(request, "users/list.html", context)


def _url_state(page: UserPage) -> QueryDict:
    """The page's state as a query string, leaving out defaults (links use {% querystring state %})."""
    state = QueryDict(mutable=True)
    state.update(page.filters.as_params())
    if page.sort != DEFAULT_SORT:
        state["sort"] = page.sort
    if page.size != DEFAULT_PAGE_SIZE:
        state["size"] = str(page.size)
    if page.number > 1:
        state["page"] = str(page.number)
    return state


def _extra_filters(page: UserPage) -> list[dict]:
    """The toolbar selects of the filters other apps registered (users.selectors.register_filter)."""
    return [
        {"name": extra.name, "label": extra.label, "options": extra.options, "value": page.filters.value(extra.name)}
        for extra in EXTRA_FILTERS.values()
    ]


def _sorting(current: str) -> dict[str, dict[str, str]]:
    """Per column: the sort a header click asks for, and its aria-sort value now."""
    sorting = {}
    for column in SORTABLE_COLUMNS:
        if current == column:
            sorting[column] = {"next": f"-{column}", "aria": "ascending"}
        elif current == f"-{column}":
            sorting[column] = {"next": column, "aria": "descending"}
        else:
            sorting[column] = {"next": column, "aria": ""}
    return sorting


@login_required
@require_GET
def user_detail(request, pk: int):
    """The page of one device user: who they are, their devices, then what other apps add."""
    user, devices = person_get(pk)
    context = {"person": user, "devices": devices, "sections": person_sections(request, user)}
    return render(request, "users/detail.html", context)
