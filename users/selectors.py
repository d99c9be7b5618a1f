"""Reads for device users: the one place where Users-page filtering, sorting and paging live.

``user_list(filters=...)`` is also what a bulk action's "select all N matching" re-runs on the
server (see ``users.forms.UserSelectionForm``), so the page and the action agree on "all".

Performance notes (100,000 users; see bench/users_page.py):
- Device filters read the summary columns User.has_<platform> / has_activated_apple_device
  (kept current from the devices, users.services), each with a partial index on
  (display_name, id): filtered pages and their counts walk only the matching rows. A join or
  EXISTS over the devices table cost 50–800 ms per COUNT at this size.
- Search is one LIKE per word on the lower-cased User.search_text (a trigram index on
  Postgres); on SQLite, words of 3+ characters that match at most FTS_BROAD users go through
  an FTS5 trigram index instead.
- A search first collects the matching ids when there are at most 2,000 of them, so a rare
  term does not walk a whole sort index testing every row.
- A page is fetched in two steps: the ids of the page (an index-only walk of the sort index,
  from whichever end is nearer), then only those rows with the columns the table shows, as
  dicts (rendering model instances was the page's largest cost).
- Devices come in one extra query for the whole page (three columns).
- The total is not counted when the first page is not full (the rows *are* the total).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import F, Q, QuerySet
from django.db.models.expressions import RawSQL

from users.models import APPLE_PLATFORMS, PLATFORM_FLAGS, ActivationState, Device, Platform, User

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50


# --- extension hook: filters other apps add ----------------------------------------------
@dataclass(frozen=True)
class ExtraFilter:
    """A filter another app adds to the Users page toolbar (the vpp app: the VPP status).

    ``name`` is its query-string key (and form field), ``label`` the select's accessible name,
    ``any_label`` its first option (no filter), ``choices`` the (value, label) pairs after it.
    ``apply(queryset, value)`` narrows the users to one of those values (the form passes only
    values from ``choices``). It filters the whole table on every page view and "select all
    matching" (bench/users_page.py: p95 < 50 ms at 100,000 users): keep it a join on an indexed
    key or an indexed column, never a per-row subquery.
    """

    name: str
    label: str
    any_label: str
    choices: tuple[tuple[str, str], ...]
    apply: Callable[[QuerySet[User], str], QuerySet[User]]

    @property
    def options(self) -> tuple[tuple[str, str], ...]:
        return (("", self.any_label), *self.choices)

    def choice_label(self, value: str) -> str:
        return str(dict(self.choices).get(value, value))


# Registered filters by name, in registration order (the toolbar shows them in that order).
EXTRA_FILTERS: dict[str, ExtraFilter] = {}
# Query-string keys the Users page and its bulk form use themselves.
_RESERVED_NAMES = frozenset({"q", "platform", "activated", "sort", "page", "size", "pk", "select_all"})


def register_filter(
    *,
    name: str,
    label: str,
    any_label: str,
    choices: Iterable[tuple[str, str]],
    apply: Callable[[QuerySet[User], str], QuerySet[User]],
) -> ExtraFilter:
    """Add a filter to the Users page (called from an AppConfig.ready(); registering a name again
    replaces it). Raises ValueError for a name the page uses itself."""
    if name in _RESERVED_NAMES:
        raise ValueError(f"{name!r} is a Users page parameter of its own")
    EXTRA_FILTERS[name] = ExtraFilter(name=name, label=label, any_label=any_label, choices=tuple(choices), apply=apply)
    return EXTRA_FILTERS[name]


@dataclass(frozen=True)
class UserFilters:
    """What the Users page filters on. Empty values mean "no filter".

    ``extra`` holds the values of filters other apps register (``register_filter``), as
    (name, value) pairs in registration order, only those with a value: e.g.
    ``(("vpp_status", "invited"),)``.
    """

    q: str = ""
    platform: str = ""  # a Platform value, or APPLE_ANY (any of APPLE_PLATFORMS)
    activated: bool | None = None  # has an activated iOS/iPadOS/macOS device
    extra: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> UserFilters:
        """The inverse of ``as_params`` (values are taken as they are; the form validates a request's)."""
        activated = params.get("activated", "")
        return cls(
            q=params.get("q", ""),
            platform=params.get("platform", ""),
            activated=None if activated not in ("yes", "no") else activated == "yes",
            extra=tuple((name, params[name]) for name in EXTRA_FILTERS if params.get(name)),
        )

    def as_params(self) -> dict[str, str]:
        """The query-string form (also stored on a bulk job's selection)."""
        params = {"q": self.q, "platform": self.platform, **dict(self.extra)}
        params["activated"] = "" if self.activated is None else ("yes" if self.activated else "no")
        return {key: value for key, value in params.items() if value}

    def value(self, name: str) -> str:
        """The value of the registered filter ``name`` ("" when it does not filter)."""
        return dict(self.extra).get(name, "")

    @property
    def active(self) -> bool:
        return bool(self.as_params())

    def describe(self) -> str:
        """The filter as the audit log reads it, choice labels for values:
        ``q="anna", platform=macOS, vpp_status=Invited, activated=no`` ("" when it filters nothing)."""
        parts = [f'q="{self.q}"'] if self.q else []
        if self.platform:
            parts.append(f"platform={_PLATFORM_LABELS.get(self.platform, self.platform)}")
        for name, value in self.extra:
            extra = EXTRA_FILTERS.get(name)
            parts.append(f"{name}={extra.choice_label(value) if extra else value}")
        if self.activated is not None:
            parts.append(f"activated={'yes' if self.activated else 'no'}")
        return ", ".join(parts)


# The platform filter's "iOS/macOS": any Apple platform VPP licences can go to (APPLE_PLATFORMS).
APPLE_ANY = "apple"
PLATFORM_CHOICES = [(APPLE_ANY, "iOS/macOS"), *Platform.choices]
_PLATFORM_LABELS = dict(PLATFORM_CHOICES)


def _apple_any_q() -> Q:
    query = Q()
    for platform in APPLE_PLATFORMS:
        query |= Q(**{PLATFORM_FLAGS[platform]: True})
    return query


@dataclass(frozen=True)
class UserSelection:
    """The device users a bulk action acts on: one of

    - ticked rows: ``ids``, the posted user pks (sorted, unique; unknown ones select nothing);
    - "select all N matching": ``all_matching`` and the page's ``filters``, re-applied on the
      server (``users()``), never a list of ids from the browser;
    - the failed users of an earlier job: ``ids`` and ``retry_of``, that job's pk.

    ``users.forms.UserSelectionForm.selection()`` makes the first two from a bulk POST.
    Stored on Job.selection as ``to_json()``: ``{"ids": [3, 7, 9]}``,
    ``{"all_matching": true, "filter": {"platform": "macos"}}`` or
    ``{"ids": [4, 8], "retry_of": 12}``.
    """

    ids: tuple[int, ...] = ()
    all_matching: bool = False
    filters: UserFilters = field(default_factory=UserFilters)
    retry_of: int | None = None

    def users(self) -> QuerySet[User]:
        """The selected device users now (unordered)."""
        if self.all_matching:
            return user_list(filters=self.filters)
        return User.objects.filter(pk__in=self.ids)

    def describe(self, *, count: int) -> str:
        """Who, for a sentence about ``count`` of these users: "3 selected users", "all 137 users
        matching platform=macOS", "4 users, the failed ones of job #12"."""
        users = f"{count:,} user{'' if count == 1 else 's'}"
        if self.retry_of is not None:
            return f"{users}, the failed ones of job #{self.retry_of}"
        if not self.all_matching:
            return f"{count:,} selected user{'' if count == 1 else 's'}"
        who = "no users" if count == 0 else f"the {users}" if count == 1 else f"all {users}"
        filters = self.filters.describe()
        return f"{who} matching {filters}" if filters else who

    def to_json(self) -> dict:
        """The JSON stored on Job.selection (see the class docstring)."""
        if self.all_matching:
            data: dict = {"all_matching": True, "filter": self.filters.as_params()}
        else:
            data = {"ids": list(self.ids)}
        if self.retry_of is not None:
            data["retry_of"] = self.retry_of
        return data

    @classmethod
    def from_json(cls, data: Mapping) -> UserSelection:
        """The selection ``to_json`` stored. Raises ValueError for JSON of another shape (a full
        sync's Job.selection is ``{"scope": "all", "trigger": ...}``, not a selection of users)."""
        retry_of = data.get("retry_of")
        if data.get("all_matching"):
            return cls(all_matching=True, filters=UserFilters.from_params(data.get("filter") or {}), retry_of=retry_of)
        if "ids" not in data:
            raise ValueError(f"not a user selection: {sorted(data)}")
        return cls(ids=tuple(int(pk) for pk in data["ids"]), retry_of=retry_of)


def user_list(*, filters: UserFilters) -> QuerySet[User]:
    """Device users matching ``filters``, unordered and without extra columns."""
    queryset = User.objects.all()
    if filters.q:
        queryset = queryset.filter(_search_q(filters.q))
    if filters.platform == APPLE_ANY:
        queryset = queryset.filter(_apple_any_q())
    elif filters.platform in PLATFORM_FLAGS:
        queryset = queryset.filter(**{PLATFORM_FLAGS[filters.platform]: True})
    if filters.activated is not None:
        queryset = queryset.filter(has_activated_apple_device=filters.activated)
    for name, value in filters.extra:
        extra = EXTRA_FILTERS.get(name)
        if extra is not None and value:
            queryset = extra.apply(queryset, value)
    return queryset


def _search_q(text: str) -> Q:
    """Every word must occur in the name, login ID or email (case-insensitive)."""
    query = Q()
    for term in text.lower().split()[:5]:
        query &= _term_q(term)
    return query


# The trigram index (SQLite FTS5, users/migrations/0004) matches substrings of 3+ characters.
FTS_MIN_TERM = 3
# A term that matches more users than this (e.g. "example.com") is faster as a LIKE along the
# sort index, which stops after a page of matches, than as thousands of rowid lookups.
FTS_BROAD = 4000


def _term_q(term: str) -> Q:
    if connection.vendor == "sqlite" and len(term) >= FTS_MIN_TERM:
        # A quoted FTS5 phrase is matched literally: a doubled quote is the only escape.
        phrase = '"' + term.replace('"', '""') + '"'
        if not _fts_broad(phrase):
            return Q(pk__in=RawSQL("SELECT rowid FROM users_user_fts WHERE users_user_fts MATCH %s", [phrase]))
    # contains, not icontains: search_text is stored lower-case, and a plain LIKE can use the
    # trigram index on Postgres where UPPER(...) LIKE could not.
    return Q(search_text__contains=term)


def _fts_broad(phrase: str) -> bool:
    """Whether more than FTS_BROAD users contain the phrase (the index alone, stopping at the limit)."""
    sql = "SELECT count(*) FROM (SELECT 1 FROM users_user_fts WHERE users_user_fts MATCH %s LIMIT %s)"
    with connection.cursor() as cursor:
        cursor.execute(sql, [phrase, FTS_BROAD + 1])
        return cursor.fetchone()[0] > FTS_BROAD


# --- sorting -----------------------------------------------------------------------------
# Whitelisted sort keys -> ordering. Every ordering ends with the primary key so pages are
# stable, and each one has a matching index (users/models.py).
SORTS: dict[str, tuple] = {
    "name": (F("display_name").asc(), F("id").asc()),
    "-name": (F("display_name").desc(), F("id").desc()),
    "login": (F("login_id").asc(),),
    "-login": (F("login_id").desc(),),
    "email": (F("email").asc(), F("id").asc()),
    "-email": (F("email").desc(), F("id").desc()),
    # Never-seen users sort as the oldest (SQLite's native NULL order; indexed on Postgres too).
    "last_seen": (F("last_seen_at").asc(nulls_first=True), F("id").asc()),
    "-last_seen": (F("last_seen_at").desc(nulls_last=True), F("id").desc()),
}
DEFAULT_SORT = "name"


# --- extension hook for the VPP part -------------------------------------------------------
# Functions that add what other apps show per row (e.g. the VPP status) to the page's row
# queryset. Each takes and returns a QuerySet[User]; it runs on the *page* rows only (at most
# 200), so a select_related / annotate here never touches the whole table. The vpp app
# registers its own in its AppConfig.ready() via ``register_row_annotation``, and renders the
# cell with ``users.table.register_cell``. Rows are dicts
# (``.values()``), so annotate plain values (e.g. a Subquery of VppUser.status), not relations.
ROW_ANNOTATIONS: list[Callable[[QuerySet[User]], QuerySet[User]]] = []


def register_row_annotation(func: Callable[[QuerySet[User]], QuerySet[User]]) -> Callable:
    if func not in ROW_ANNOTATIONS:
        ROW_ANNOTATIONS.append(func)
    return func


# --- the page -----------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceBadge:
    platform: str  # label, e.g. "iOS"
    state: str  # ActivationState value of the best device of that platform
    count: int
    apple: bool

    @property
    def tone(self) -> str:
        """Badge colour class: ok (activated), warn (pending), muted (deactivated)."""
        return {ActivationState.ACTIVATED: "ok", ActivationState.PENDING: "warn"}.get(self.state, "muted")

    @property
    def label(self) -> str:
        return self.platform if self.count == 1 else f"{self.platform} ×{self.count}"

    @property
    def title(self) -> str:
        devices = "device" if self.count == 1 else "devices"
        return f"{self.count} {self.platform} {devices} · {ActivationState(self.state).label}"

    def as_row(self) -> dict[str, str]:
        return {"label": self.label, "title": self.title, "tone": self.tone}


@dataclass
class UserPage:
    # Dicts with id, display_name, login_id, email, department, last_seen_at, device_badges
    # (label/title/tone) and whatever ROW_ANNOTATIONS annotate.
    rows: list[dict]
    number: int
    size: int
    total: int
    sort: str
    filters: UserFilters = field(default_factory=UserFilters)

    @property
    def num_pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def start_index(self) -> int:
        return (self.number - 1) * self.size + 1 if self.rows else 0

    @property
    def end_index(self) -> int:
        return (self.number - 1) * self.size + len(self.rows)

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.num_pages

    def page_links(self) -> list[int | None]:
        """Page numbers to link, None for a gap: 1 … 4 5 [6] 7 8 … 20."""
        last, current = self.num_pages, self.number
        wanted = {1, 2, last - 1, last, *range(current - 2, current + 3)}
        numbers = sorted(n for n in wanted if 1 <= n <= last)
        links: list[int | None] = []
        for n in numbers:
            if links and n - links[-1] > 1:
                links.append(None)
            links.append(n)
        return links


_DEVICE_COLUMNS = ("id", "user_id", "platform", "activation_state")
_ROW_COLUMNS = ("id", "display_name", "login_id", "email", "managed_apple_account", "department", "last_seen_at")


def user_page(
    *, filters: UserFilters, sort: str = DEFAULT_SORT, page: int = 1, size: int = DEFAULT_PAGE_SIZE
) -> UserPage:
    """One page of the Users table: a bounded number of queries whatever the size and total."""
    sort = sort if sort in SORTS else DEFAULT_SORT
    size = size if size in PAGE_SIZES else DEFAULT_PAGE_SIZE
    matching = user_list(filters=filters)
    total = None
    if filters.q:
        matching, total = _narrow_search(matching)
    if total is None and page > 1:
        total = matching.count()
    if total is not None:
        page = min(page, max(1, -(-total // size)))
    offset = (max(page, 1) - 1) * size
    # Step 1: only the ids, walking the sort index (an index-only walk).
    ids = _page_ids(matching, sort, offset, size, total)
    if total is None:
        # First page: if it is not full, the rows are the whole result and need no COUNT.
        total = len(ids) if len(ids) < size else matching.count()
    rows = _page_rows(ids, sort)
    return UserPage(rows=rows, number=max(page, 1), size=size, total=total, sort=sort, filters=filters)


def _page_ids(matching: QuerySet[User], sort: str, offset: int, size: int, total: int | None) -> list[int]:
    """The ids of one page, in ``sort`` order.

    An OFFSET walks every entry it skips, so past the middle of a known total the page is
    read from the other end of the index (each sort's "-" twin is its exact reverse):
    page 1,500 of 2,000 skips 25,000 entries instead of 75,000.
    """
    if total is None or offset <= total // 2:
        return list(matching.order_by(*SORTS[sort]).values_list("id", flat=True)[offset : offset + size])
    skip = max(0, total - offset - size)
    count = max(0, min(size, total - offset))
    reverse = sort[1:] if sort.startswith("-") else f"-{sort}"
    ids = list(matching.order_by(*SORTS[reverse]).values_list("id", flat=True)[skip : skip + count])
    return ids[::-1]


# A search usually matches a handful of people. Their ids come from one index-only scan;
# the page is then sorted from those ids (rowid lookups) instead of walking a whole sort
# index and testing every row, which is what a rare term costs otherwise (~300 ms).
SEARCH_MATERIALISE_LIMIT = 2000


def _narrow_search(matching: QuerySet[User]) -> tuple[QuerySet[User], int]:
    """A search's matches and their count; a rare term's matches as a short id list."""
    total = matching.count()  # the page needs it anyway; it also tells a rare term from a broad one
    if total > SEARCH_MATERIALISE_LIMIT:
        return matching, total  # a broad term: the sort index finds a page of matches quickly
    ids = list(matching.order_by().values_list("id", flat=True))
    return User.objects.filter(pk__in=ids), len(ids)


def _page_rows(ids: list[int], sort: str) -> list[dict]:
    """The page's rows as dicts, in ``ids`` order, each with its ``device_badges``.

    Dicts, not model instances: the template resolves ``row.field`` with one dict lookup,
    and building 50-200 of them is cheap; rendering was most of the page's time.
    """
    if not ids:
        return []
    queryset = User.objects.filter(pk__in=ids)
    for annotate in ROW_ANNOTATIONS:
        queryset = annotate(queryset)
    extra = tuple(queryset.query.annotations)
    by_id = {row["id"]: row for row in queryset.order_by().values(*_ROW_COLUMNS, *extra)}
    devices: dict[int, list[tuple[str, str]]] = {}
    for user_id, platform, state in (
        Device.objects.filter(user_id__in=ids).order_by().values_list("user_id", "platform", "activation_state")
    ):
        devices.setdefault(user_id, []).append((platform, state))
    rows = [by_id[pk] for pk in ids if pk in by_id]
    for row in rows:
        row["device_badges"] = [badge.as_row() for badge in device_badges(devices.get(row["id"], []))]
    return rows


_PLATFORM_ORDER = [p.value for p in Platform]
_STATE_RANK = {ActivationState.ACTIVATED: 0, ActivationState.PENDING: 1, ActivationState.DEACTIVATED: 2}


def device_badges(devices: list[tuple[str, str]]) -> list[DeviceBadge]:
    """One badge per platform, coloured by the best activation state among its devices.

    ``devices`` are (platform, activation_state) pairs.
    """
    grouped: dict[str, list[str]] = {}
    for platform, state in devices:
        grouped.setdefault(platform, []).append(state)
    badges = []
    for platform in sorted(grouped, key=_PLATFORM_ORDER.index):
        group = grouped[platform]
        best = min(group, key=lambda s: _STATE_RANK.get(s, 9))
        badges.append(
            DeviceBadge(
                platform=Platform(platform).label,
                state=best,
                count=len(group),
                apple=platform in APPLE_PLATFORMS,
            )
        )
    return badges
