"""Writes for device users."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Subquery
from django.db.models.functions import Lower

from kmconsole.rows import rows_insert, rows_update
from users.models import PLATFORM_FLAGS, Device, User, activated_apple_device_q, user_search_text


def user_device_summary_refresh(*, user_ids: Iterable[int] | None = None) -> int:
    """Recompute the device summary columns of users (all users when ``user_ids`` is None).

    User.last_seen_at, has_activated_apple_device and has_<platform> mirror the devices so the
    Users page can filter, sort and count with indexes. Device save/delete keep them current
    through signals (users/signals.py); code that writes devices in bulk (bulk_create,
    QuerySet.update/delete) must call this afterwards. One UPDATE statement; returns rows.
    """
    users = User.objects.all() if user_ids is None else User.objects.filter(pk__in=list(user_ids))
    devices = Device.objects.filter(user=OuterRef("pk")).order_by()
    last_seen = devices.values("user").annotate(latest=Max("last_seen_at")).values("latest")
    return users.update(
        last_seen_at=Subquery(last_seen[:1]),
        has_activated_apple_device=Exists(devices.filter(activated_apple_device_q())),
        **{flag: Exists(devices.filter(platform=platform)) for platform, flag in PLATFORM_FLAGS.items()},
    )


# --------------------------------------------------------------------------- directory upserts
# Shared by every import of people: the Apple Business directory sync (vpp/jobs/phases/directory.py)
# and the CSV import. One page/batch per call: a few SELECT ... IN, one bulk INSERT, one bulk UPDATE.

UPSERT_FIELDS = ("display_name", "email", "managed_apple_account", "employee_number", "department", "is_active")
DEVICE_FIELDS = ("model", "platform", "org_status")
NOT_CREATED_INACTIVE = "Not active in the source and not known here: not created."


@dataclass(frozen=True)
class PersonRecord:
    """One person as a source describes them.

    ``key``: the value of the match key (``key_field`` of ``users_upsert``: Apple's person id for
    the directory sync, or a CSV's key column). ``login_id``: for a new user; defaults to the
    Managed Apple Account, else the email, else ``<key_field>-<key>``. Empty strings are values
    (a cleared department is written as empty). ``label``: how results name the person.
    """

    key: str
    display_name: str
    email: str = ""
    managed_apple_account: str = ""
    employee_number: str = ""
    department: str = ""
    is_active: bool = True
    login_id: str = ""

    @property
    def label(self) -> str:
        contact = self.managed_apple_account or self.email or self.key
        return f"{self.display_name} ({contact})"[:300]


@dataclass(frozen=True)
class DeviceRecord:
    """One device: matched by ``serial_number``. ``platform`` is a ``Platform`` value (empty:
    keep). ``owner_key``: the owner's match key (as in ``PersonRecord.key``), needed to create a
    device; without one only devices already here are updated."""

    serial_number: str
    model: str = ""
    platform: str = ""
    org_status: str = ""
    owner_key: str = ""


@dataclass
class UpsertChange:
    """What happened to one record: ``action`` "created", "updated", "deactivated" or "skipped";
    ``fields``: the changed field names (with old → new in ``detail``); ``user_id`` None in a dry
    run of a creation; ``matched_by``: the field that matched an existing user."""

    action: str
    label: str
    user_id: int | None
    fields: tuple[str, ...] = ()
    detail: str = ""
    matched_by: str = ""


@dataclass
class UpsertResult:
    """The changes (created/updated/deactivated/skipped records) and the count of unchanged ones."""

    changes: list[UpsertChange] = field(default_factory=list)
    unchanged: int = 0

    def count(self, action: str) -> int:
        return sum(1 for change in self.changes if change.action == action)


def _refresh_search_text(user: User) -> None:
    """What User.save() computes: bulk writes bypass save(), so the upserts call this (one place)."""
    user.search_text = user_search_text(
        user.display_name, user.login_id, user.email, getattr(user, "managed_apple_account", "")
    )


def _user_fields() -> set[str]:
    return {f.name for f in User._meta.get_fields()}


def _normal(value: str) -> str:
    return (value or "").strip().lower()


def users_upsert(
    *,
    records: Sequence[PersonRecord],
    key_field: str = "apple_business_id",
    match_fields: Sequence[str] = ("managed_apple_account", "email"),
    create_inactive: bool = True,
    dry_run: bool = False,
) -> UpsertResult:
    """Create or update device users from ``records`` (one batch, e.g. one page of a listing).

    Matching, in order: ``key_field`` == ``record.key``; else, among users whose ``key_field``
    is still empty (users that existed before this source), the first of ``match_fields`` that
    equals the record's value case-insensitively (a match gets ``key_field`` set, so the next run
    matches by key). Unmatched records are created. Fields written: UPSERT_FIELDS (a field the
    model does not have is ignored). Records with an empty key are skipped with a reason; a key
    that appears twice in ``records`` is applied once (the first). ``create_inactive=False``: an
    inactive record that matches nobody is "skipped" instead of created.

    Returns an ``UpsertResult``: one ``UpsertChange`` per created/updated/skipped record and the
    number unchanged. ``dry_run``: nothing is written; the result says what would change. Users
    are never deleted here. ``search_text`` is kept current (bulk writes bypass ``User.save``).
    """
    result = UpsertResult()
    model_fields = _user_fields()
    fields = [f for f in UPSERT_FIELDS if f in model_fields]
    unique: dict[str, PersonRecord] = {}
    for record in records:
        if not record.key.strip():
            result.changes.append(UpsertChange("skipped", record.label, None, detail="No key: cannot be matched."))
        else:
            unique.setdefault(record.key.strip(), record)
    columns = ["pk", "login_id", key_field, *fields]
    by_key = {
        getattr(u, key_field): u for u in User.objects.filter(**{f"{key_field}__in": list(unique)}).only(*columns)
    }
    fallback = _fallback_matches(unique, by_key, key_field, [f for f in match_fields if f in model_fields])
    creates: list[tuple[User, PersonRecord]] = []
    updates: list[User] = []
    for key, record in unique.items():
        user, matched_by = by_key.get(key), key_field
        if user is None and key in fallback:
            user, matched_by = fallback[key]
        if user is None and not record.is_active and not create_inactive:
            result.changes.append(UpsertChange("skipped", record.label, None, detail=NOT_CREATED_INACTIVE))
            continue
        if user is None:
            creates.append((_new_user(record, key_field, fields), record))
            continue
        changed = [f for f in fields if getattr(user, f) != _value(record, f)]
        if matched_by != key_field:
            changed.append(key_field)
        if not changed:
            result.unchanged += 1
            continue
        detail = ", ".join(f"{f}: {getattr(user, f)!r} → {_value(record, f)!r}" for f in changed if f != key_field)
        for name in changed:
            setattr(user, name, key if name == key_field else _value(record, name))
        _refresh_search_text(user)
        updates.append(user)
        result.changes.append(UpsertChange("updated", record.label, user.pk, tuple(changed), detail[:500], matched_by))
    new_users = [user for user, _ in creates]
    _unique_login_ids(new_users, key_field)
    if not dry_run:
        with transaction.atomic():
            rows_insert(new_users)
            rows_update(updates, [*fields, key_field, "search_text"])
        ids = dict(User.objects.filter(login_id__in=[u.login_id for u in new_users]).values_list("login_id", "pk"))
        for user in new_users:
            user.pk = ids.get(user.login_id)
    for user, record in creates:
        result.changes.append(UpsertChange("created", record.label, user.pk, tuple(fields)))
    return result


def _value(record: PersonRecord, name: str):
    """The record's value as stored: Managed Apple Accounts lower-case (as User.save does), text trimmed."""
    value = getattr(record, name)
    if isinstance(value, bool):
        return value
    if name == "managed_apple_account":
        return _normal(value)
    return (value or "").strip()[: User._meta.get_field(name).max_length or 254]


def _fallback_matches(unique: dict[str, PersonRecord], by_key: dict, key_field: str, match_fields: Sequence[str]):
    """Users without a key matched by the first of ``match_fields`` (case-insensitive): {key: (user, field)}.
    Active users win over inactive ones; each user matches one record at most."""
    found: dict[str, tuple[User, str]] = {}
    taken: set[int] = set()
    for name in match_fields:
        wanted = {_normal(getattr(r, name)): k for k, r in unique.items() if k not in by_key and k not in found}
        wanted.pop("", None)
        if not wanted:
            continue
        candidates = (
            User.objects.filter(**{key_field: ""})
            .only("pk", "login_id", key_field, *[f for f in UPSERT_FIELDS if f in _user_fields()])
            .annotate(_match=Lower(name))
            .filter(_match__in=list(wanted))
            .order_by("-is_active", "pk")
        )
        for user in candidates:
            key = wanted.get(_normal(getattr(user, name)))
            if key is not None and key not in found and user.pk not in taken:
                found[key] = (user, name)
                taken.add(user.pk)
    return found


def _new_user(record: PersonRecord, key_field: str, fields: Sequence[str]) -> User:
    user = User(**{f: _value(record, f) for f in fields}, **{key_field: record.key.strip()})
    user.login_id = (
        record.login_id.strip() or _normal(record.managed_apple_account) or _normal(record.email)
        or f"{key_field}-{record.key.strip()}"
    )[:150]  # fmt: skip
    return user


def _unique_login_ids(users: list[User], key_field: str) -> None:
    """A new user whose login id is taken (by someone else, or twice in the batch) gets the key appended."""
    taken = set(User.objects.filter(login_id__in=[u.login_id for u in users]).values_list("login_id", flat=True))
    for user in users:
        if user.login_id in taken:
            suffix = f"-{getattr(user, key_field) or uuid.uuid4().hex[:8]}"
            user.login_id = user.login_id[: 150 - len(suffix)] + suffix
        taken.add(user.login_id)
        _refresh_search_text(user)


def users_deactivate(
    *, keys: Iterable[str], key_field: str = "apple_business_id", dry_run: bool = False, reason: str = ""
) -> UpsertResult:
    """Deactivate (never delete) the active users whose ``key_field`` is one of ``keys``.

    Deactivated users lose their VPP eligibility; the VPP full sync then revokes their licences
    and retires them at Apple (vpp/jobs/phases/full_sync.py, "retire"). Returns one
    "deactivated" change per user (``detail``: ``reason``). ``dry_run``: nothing is written.
    """
    result = UpsertResult()
    keys = [k for k in keys if k]
    for start in range(0, len(keys), 500):
        batch = User.objects.filter(is_active=True, **{f"{key_field}__in": keys[start : start + 500]})
        rows = list(batch.values_list("pk", "display_name", "login_id"))
        for pk, name, login in rows:
            result.changes.append(UpsertChange("deactivated", f"{name} ({login})"[:300], pk, ("is_active",), reason))
        if not dry_run and rows:
            User.objects.filter(pk__in=[r[0] for r in rows]).update(is_active=False)
    return result


def devices_upsert(
    *, records: Sequence[DeviceRecord], key_field: str = "apple_business_id", dry_run: bool = False
) -> UpsertResult:
    """Create or update devices by serial number (one batch).

    A device already here (same serial) gets DEVICE_FIELDS from the record (an empty platform or
    model keeps the stored one). A new serial is created only with an ``owner_key`` naming a user
    (by ``key_field``); otherwise it is "skipped" with the reason. The users' device summary is
    refreshed. Returns an ``UpsertResult`` (``label`` = the serial). ``dry_run``: nothing is written.
    """
    result = UpsertResult()
    wanted = {r.serial_number.strip(): r for r in records if r.serial_number.strip()}
    existing = {d.serial_number: d for d in Device.objects.filter(serial_number__in=list(wanted))}
    owners = {r.owner_key for r in wanted.values() if r.owner_key and r.serial_number.strip() not in existing}
    owner_ids = dict(User.objects.filter(**{f"{key_field}__in": owners}).values_list(key_field, "pk")) if owners else {}
    changed_devices, new_devices, touched = [], [], set()
    for serial, record in wanted.items():
        device = existing.get(serial)
        if device is None:
            owner = owner_ids.get(record.owner_key)
            if owner is None:
                why = "No device user here owns this serial number (Apple Business does not say whose it is)."
                result.changes.append(UpsertChange("skipped", serial, None, detail=why))
                continue
            new_devices.append(Device(user_id=owner, serial_number=serial, model=record.model,
                                      platform=record.platform, org_status=record.org_status))  # fmt: skip
            touched.add(owner)
            result.changes.append(UpsertChange("created", serial, owner, DEVICE_FIELDS))
            continue
        values = {f: getattr(record, f) for f in DEVICE_FIELDS if getattr(record, f) or f == "org_status"}
        changed = tuple(f for f, v in values.items() if getattr(device, f) != v)
        if not changed:
            result.unchanged += 1
            continue
        detail = ", ".join(f"{f}: {getattr(device, f)!r} → {values[f]!r}" for f in changed)
        for f in changed:
            setattr(device, f, values[f])
        changed_devices.append(device)
        touched.add(device.user_id)
        result.changes.append(UpsertChange("updated", serial, device.user_id, changed, detail[:500]))
    if not dry_run and (new_devices or changed_devices):
        with transaction.atomic():
            Device.objects.bulk_create(new_devices, batch_size=500)
            Device.objects.bulk_update(changed_devices, list(DEVICE_FIELDS), batch_size=500)
            user_device_summary_refresh(user_ids=touched)
    return result
