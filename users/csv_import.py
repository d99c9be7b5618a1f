"""CSV import of device users and their devices: read, preview, apply (docs/import.md).

1. ``import_preview(data=, filename=, actor=)`` reads the bytes (encoding: ``decode``; dialect:
   ``sniff``), checks the header (every documented column, nothing else: ``COLUMNS``), checks
   each row (``ImportRow`` or a reason) and asks the shared upserts (users.services
   ``users_upsert`` and ``devices_import_upsert``, in dry-run mode) what each accepted row would
   change. It stores a ``UserImport`` with the accepted rows (in chunks), the rejected ones (row number,
   reason) and the preview. Nothing else is written. A problem with the file as a whole raises
   ``ImportFileError`` and stores nothing.
2. ``import_start(user_import=, actor=)`` hands the import to the registered runner (the VPP app
   runs it as a job on its job engine, ``register_import_runner``; users/ never imports vpp);
   without one it applies at once.
3. ``import_apply(import_id=)`` writes the accepted rows in chunks of ``CHUNK_ROWS``, each chunk
   in one transaction together with ``UserImport.applied_rows``: a failure leaves whole chunks
   written and says where it stopped; applying again resumes after them. Matching is by login
   id (users) and serial number (devices), so applying the same file twice changes nothing.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import charset_normalizer
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db import transaction
from django.utils import timezone

from kmconsole.csv_export import FORMULA_STARTS
from users.models import ActivationState, ImportStatus, Platform, User, UserImport, UserImportChunk
from users.services import (
    DeviceImportRecord,
    PersonRecord,
    UpsertResult,
    devices_import_upsert,
    users_upsert,
)

# 100,000 rows of this layout are ~15 MB; a bigger file is refused before it is read.
MAX_BYTES = 20 * 1024 * 1024
CHUNK_ROWS = 2000  # accepted rows per stored chunk, dry-run batch and applied transaction
SAMPLES = 200  # changes kept per action for the preview page


@dataclass(frozen=True)
class Column:
    """One CSV column: ``field`` (our name), ``header`` (as the template writes it), other
    accepted spellings, and what goes in it (docs/import.md lists the same)."""

    field: str
    header: str
    help: str
    aliases: tuple[str, ...] = ()


COLUMNS: tuple[Column, ...] = (
    Column("login_id", "login id", "Required. The device user's login ID: the key a re-import matches.", ("login",)),
    Column("name", "name", "Required. Display name.", ("display name",)),
    Column("email", "email", "Optional. An email address.", ("email address",)),
    Column("managed_apple_account", "Managed Apple Account", "Optional. name@your-domain.", ("managed apple id",)),
    Column("department", "department", "Optional."),
    Column("active", "active", "yes/no, true/false or 1/0; empty means yes."),
    Column(
        "serial_number",
        "device serial",
        "Optional: empty for a user without a device. A user with several devices has one row per device.",
        ("serial", "serial number"),
    ),
    Column("platform", "platform", "With a serial: iOS, iPadOS, macOS, Android or Windows."),
    Column("activation_state", "activation state", "Activated, Pending or Deactivated; empty keeps (new: Pending)."),
    Column("model", "model", "Optional, e.g. iPhone 16."),
    Column("os_version", "OS version", "Optional, e.g. 18.1."),
)
FIELDS = tuple(column.field for column in COLUMNS)
USER_FIELDS = FIELDS[:6]
DEVICE_FIELDS = FIELDS[6:]
EXAMPLE_ROWS = (
    ("jdoe", "Jane Doe", "jane.doe@example.org", "jane.doe@corp.example", "Sales", "yes",
     "C02XK1ABCDEF", "macOS", "Activated", "MacBook Air", "15.1"),
    ("jdoe", "Jane Doe", "jane.doe@example.org", "jane.doe@corp.example", "Sales", "yes",
     "F2LXK2ABCDEF", "iOS", "Pending", "iPhone 16", "18.1"),
    ("rroe", "Richard Roe", "richard.roe@example.org", "", "Support", "no", "", "", "", "", ""),
)  # fmt: skip

_TRUE = {"", "yes", "y", "true", "1", "active"}
_FALSE = {"no", "n", "false", "0", "inactive"}
_PLATFORMS = {key: p.value for p in Platform for key in (p.value, p.label.lower())}
_STATES = {key: s.value for s in ActivationState for key in (s.value, s.label.lower())}
# Longest value each field takes (the model's column width).
_MAX_LENGTHS = {
    "login_id": 150, "name": 200, "email": 254, "managed_apple_account": 254, "department": 200,
    "serial_number": 64, "model": 100, "os_version": 32,
}  # fmt: skip


class _EmailValidator(EmailValidator):
    """Django's email rules with its regexes compiled once (the base class wraps them in lazy
    objects, whose every attribute access costs more than the match on 100,000 rows)."""

    user_regex = re.compile(EmailValidator.user_regex.pattern, re.IGNORECASE)
    domain_regex = re.compile(EmailValidator.domain_regex.pattern, re.IGNORECASE)
    literal_regex = re.compile(EmailValidator.literal_regex.pattern, re.IGNORECASE)


validate_email = _EmailValidator()


class ImportFileError(Exception):
    """The file as a whole cannot be imported (too big, unreadable, wrong columns); the message
    says why and what to do. Nothing is stored."""

    @staticmethod
    def too_big(size: int) -> str:
        """The message for a file of ``size`` bytes over ``MAX_BYTES``."""
        return (
            f"The file is {size / 1024 / 1024:.1f} MB; the limit is {MAX_BYTES // 1024 // 1024} MB "
            "(about 100,000 rows). Split it into smaller files and import them one after another."
        )


# --------------------------------------------------------------------------- reading


def decode(data: bytes) -> tuple[str, str]:
    """The file's text and the name of the encoding it was read as.

    A byte-order mark decides (``"UTF-8 with BOM"``, ``"UTF-16"``); else valid UTF-8 is
    ``"UTF-8"``; else charset-normalizer chooses among UTF-16 (without a BOM), Windows-1252 and
    Latin-1 (ISO-8859-1) (https://charset-normalizer.readthedocs.io/). Raises ImportFileError
    when none of them reads the file.
    """
    if data.startswith(codecs.BOM_UTF8):
        return _decode(data[len(codecs.BOM_UTF8) :], "utf-8", "UTF-8 with BOM")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _decode(data, "utf-16", "UTF-16")
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    sample = data[: 1 << 20]
    best = charset_normalizer.from_bytes(
        sample[: len(sample) // 2 * 2], cp_isolation=["utf_16_le", "utf_16_be", "cp1252", "latin_1"]
    ).best()
    encoding = best.encoding if best is not None else "latin_1"
    label = {"cp1252": "Windows-1252 (Latin-1)", "latin_1": "Latin-1 (ISO-8859-1)"}.get(encoding, "UTF-16")
    return _decode(data, encoding, label)


def _decode(data: bytes, encoding: str, label: str) -> tuple[str, str]:
    try:
        return data.decode(encoding), label
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            f"The file is not readable as {label} (byte {exc.start + 1:,}). Save it as CSV UTF-8 and upload it again."
        ) from None


def sniff(text: str) -> str:
    """The delimiter (one of , ; TAB |): csv.Sniffer on the first 64 KB, checked against the
    header (the candidate that splits it into the most known column names wins)."""
    header = text.split("\n", 1)[0]
    candidates = [",", ";", "\t", "|"]
    try:
        sniffed = csv.Sniffer().sniff(text[:65536], delimiters="".join(candidates)).delimiter
        candidates.remove(sniffed)
        candidates.insert(0, sniffed)
    except csv.Error:
        pass
    known = set(_ALIASES)
    return max(candidates, key=lambda d: sum(_normal_header(h) in known for h in header.split(d)))


_ALIASES = {_h: c.field for c in COLUMNS for _h in (c.header.lower(), c.field.replace("_", " "), *c.aliases)}


def _normal_header(value: str) -> str:
    return re.sub(r"[\s_\-]+", " ", value.strip().strip('"').lower()).strip()


def _header_map(header: list[str]) -> list[str]:
    """The field of each header cell; raises ImportFileError for missing, unknown or repeated columns."""
    fields, unknown, problems = [], [], []
    for cell in header:
        field = _ALIASES.get(_normal_header(cell))
        if field is None:
            guess = difflib.get_close_matches(_normal_header(cell), list(_ALIASES), n=1)
            unknown.append(f"“{cell}”" + (f" (did you mean “{guess[0]}”?)" if guess else ""))
        elif field in fields:
            problems.append(f"the column “{cell}” appears twice")
        fields.append(field or "")
    missing = [c.header for c in COLUMNS if c.field not in fields]
    if missing:
        problems.append("missing column" + ("s " if len(missing) > 1 else " ") + ", ".join(f"“{m}”" for m in missing))
    if unknown:
        problems.append("unknown column" + ("s " if len(unknown) > 1 else " ") + ", ".join(unknown))
    if problems:
        raise ImportFileError(
            "The header row does not match the template: "
            + "; ".join(problems)
            + ". Download the template for the columns."
        )
    return fields


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One accepted row, normalised: ``number`` is its row in the file (the header is row 1)."""

    number: int
    login_id: str
    name: str
    email: str
    managed_apple_account: str
    department: str
    active: bool
    serial_number: str
    platform: str
    activation_state: str
    model: str
    os_version: str

    @property
    def user_values(self) -> tuple:
        return (self.name, self.email, self.managed_apple_account, self.department, self.active)

    def as_list(self) -> list:
        return [self.number, *(getattr(self, f) for f in FIELDS)]

    @classmethod
    def from_list(cls, values: Sequence) -> ImportRow:
        return cls(*values)


def _check(number: int, cells: dict[str, str]) -> ImportRow | str:
    """The row normalised, or the reason it is rejected (every problem of the row, "; "-joined)."""
    problems = []
    for column in COLUMNS:
        raw = cells[column.field]
        if raw.startswith(FORMULA_STARTS) or raw.strip().startswith(FORMULA_STARTS):
            problems.append(
                f"{column.header} starts with “{raw.strip()[:1] or raw[:1]!s}”, which a spreadsheet runs as a formula"
            )
    values = {f: v.strip() for f, v in cells.items()}
    for field, limit in _MAX_LENGTHS.items():
        if len(values[field]) > limit:
            problems.append(f"{_header(field)} is longer than {limit} characters")
    if not values["login_id"]:
        problems.append("login id is empty")
    if not values["name"]:
        problems.append("name is empty")
    for field in ("email", "managed_apple_account"):
        if values[field]:
            try:
                validate_email(values[field])
            except ValidationError:
                problems.append(f"{_header(field)} “{values[field][:80]}” is not an email address")
    values["managed_apple_account"] = values["managed_apple_account"].lower()
    active = values["active"].lower()
    if active not in _TRUE | _FALSE:
        problems.append(f"active “{values['active'][:20]}” is not yes or no")
    platform = _PLATFORMS.get(values["platform"].lower().replace(" ", ""))
    state = _STATES.get(values["activation_state"].lower())
    if values["serial_number"]:
        if platform is None:
            problems.append(
                f"unknown platform “{values['platform'][:20]}” (iOS, iPadOS, macOS, Android or Windows)"
                if values["platform"] else "platform is empty (a device needs one)"
            )  # fmt: skip
        if values["activation_state"] and state is None:
            problems.append(
                f"unknown activation state “{values['activation_state'][:20]}” (Activated, Pending or Deactivated)"
            )
    elif any(values[f] for f in DEVICE_FIELDS):
        problems.append("device columns are filled but the device serial is empty")
    if problems:
        return "; ".join(problems)[:500]
    return ImportRow(
        number,
        values["login_id"],
        values["name"],
        values["email"],
        values["managed_apple_account"],
        sys.intern(values["department"]),  # few distinct values over many rows: one string each
        active in _TRUE,
        values["serial_number"],
        platform or "",
        state or "",
        sys.intern(values["model"]),
        sys.intern(values["os_version"]),
    )


def _header(field: str) -> str:
    return next(c.header for c in COLUMNS if c.field == field)


@dataclass
class Parsed:
    """A read file: the encoding and delimiter used, the accepted rows, the rejected
    ``(row number, reason)`` pairs, and the number of data rows (blank lines aside)."""

    encoding: str
    delimiter: str
    rows: list[ImportRow]
    rejected: list[tuple[int, str]]
    total: int


def parse(data: bytes) -> Parsed:
    """Read a CSV file's bytes into accepted and rejected rows (raises ImportFileError).

    Besides each row's own checks, a row is rejected when it repeats an earlier row exactly,
    gives a login id already given with other details, a device serial already given, or a
    Managed Apple Account another login id already has in the file.
    """
    if len(data) > MAX_BYTES:
        raise ImportFileError(ImportFileError.too_big(len(data)))
    text, encoding = decode(data)
    if not text or text.isspace():
        raise ImportFileError("The file is empty.")
    delimiter = sniff(text)
    reader = csv.reader(_lines(text), delimiter=delimiter)
    try:
        fields = _header_map(next(reader))
        parsed = Parsed(encoding, delimiter, [], [], 0)
        _check_rows(reader, fields, parsed)
    except csv.Error as exc:
        raise ImportFileError(f"The file is not a readable CSV (line {reader.line_num:,}: {exc}).") from None
    if not parsed.total:
        raise ImportFileError("The file has a header but no rows.")
    return parsed


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` with their endings, for csv.reader, without copying the text (an
    io.StringIO holds a second, wider copy). Old Mac files end lines with a lone CR."""
    newline = "\n" if "\n" in text or "\r" not in text else "\r"
    start = 0
    while start < len(text):
        end = text.find(newline, start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def _check_rows(reader: Iterator[list[str]], fields: list[str], parsed: Parsed) -> None:
    seen_rows: dict[int, int] = {}
    users: dict[str, tuple[int, tuple]] = {}
    serials: dict[str, int] = {}
    accounts: dict[str, tuple[int, str]] = {}
    width = len(fields)
    for number, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue  # a blank line
        parsed.total += 1
        if len(cells) != width:
            parsed.rejected.append((number, f"has {len(cells)} cells; the header has {width}"))
            continue
        # The hash, not the cells: 100,000 tuples of 11 strings cost tens of MB. (Two different
        # rows with the same 64-bit hash in one file: about 1 in 10^9 for 100,000 rows.)
        key = hash(tuple(cells))
        if key in seen_rows:
            parsed.rejected.append((number, f"repeats row {seen_rows[key]}"))
            continue
        seen_rows[key] = number
        row = _check(number, dict(zip(fields, cells, strict=True)))
        if isinstance(row, str):
            parsed.rejected.append((number, row))
            continue
        reason = _conflict(row, users, serials, accounts)
        if reason:
            parsed.rejected.append((number, reason))
            continue
        users.setdefault(row.login_id, (number, row.user_values))
        if row.serial_number:
            serials[row.serial_number] = number
        if row.managed_apple_account:
            accounts.setdefault(row.managed_apple_account, (number, row.login_id))
        parsed.rows.append(row)


def _conflict(row: ImportRow, users: dict, serials: dict, accounts: dict) -> str:
    """Why ``row`` contradicts an earlier accepted row ("" when it does not)."""
    earlier = users.get(row.login_id)
    if earlier and earlier[1] != row.user_values:
        names = ("name", "email", "Managed Apple Account", "department", "active")
        diff = [n for n, a, b in zip(names, earlier[1], row.user_values, strict=True) if a != b]
        return f"login id “{row.login_id}” is on row {earlier[0]} with another {', '.join(diff)}"
    if row.serial_number in serials:
        return f"device serial “{row.serial_number}” is already on row {serials[row.serial_number]}"
    holder = accounts.get(row.managed_apple_account)
    if holder and holder[1] != row.login_id:
        account = row.managed_apple_account
        return f"Managed Apple Account “{account}” is already on row {holder[0]} (login id “{holder[1]}”)"
    return ""


# --------------------------------------------------------------------------- preview


def _person(row: ImportRow, stored: dict[str, dict]) -> PersonRecord:
    # Fields the CSV has no column for keep their stored value (users_upsert writes every field).
    keep = stored.get(row.login_id, {})
    return PersonRecord(
        key=row.login_id,
        login_id=row.login_id,
        display_name=row.name,
        email=row.email,
        managed_apple_account=row.managed_apple_account,
        department=row.department,
        is_active=row.active,
        employee_number=keep.get("employee_number", ""),
    )


def _kept_fields() -> list[str]:
    return [f for f in ("employee_number",) if f in {x.name for x in User._meta.get_fields()}]


def _batch(rows: Sequence[ImportRow], *, dry_run: bool) -> tuple[UpsertResult, UpsertResult, dict[str, tuple]]:
    """Upsert one batch's users, then its devices: (user result, device result,
    {login id: (its first row, the user's pk here or None)})."""
    first: dict[str, ImportRow] = {}
    for row in rows:
        first.setdefault(row.login_id, row)
    kept = _kept_fields()
    stored = {
        values["login_id"]: values
        for values in User.objects.filter(login_id__in=list(first)).values("login_id", "pk", *kept)
    }
    # A dry run needs no model objects for users that are new here: they are all "created".
    people = [_person(row, stored) for login, row in first.items() if not dry_run or login in stored]
    users = users_upsert(records=people, key_field="login_id", match_fields=(), dry_run=dry_run)
    devices = devices_import_upsert(
        records=[
            DeviceImportRecord(r.serial_number, r.login_id, r.platform, r.activation_state, r.model, r.os_version)
            for r in rows
            if r.serial_number
        ],
        dry_run=dry_run,
    )
    return users, devices, {login: (row, stored.get(login, {}).get("pk")) for login, row in first.items()}


def _maa_taken(rows: Sequence[ImportRow]) -> dict[str, str]:
    """Managed Apple Accounts of these rows that another active user here holds: {account: their login id}."""
    if "managed_apple_account" not in {f.name for f in User._meta.get_fields()}:
        return {}
    wanted = {r.managed_apple_account: r.login_id for r in rows if r.managed_apple_account and r.active}
    held = User.objects.filter(is_active=True, managed_apple_account__in=list(wanted)).values_list(
        "managed_apple_account", "login_id"
    )
    return {account: login for account, login in held if wanted.get(account) != login}


def import_preview(*, data: bytes, filename: str = "", actor=None) -> UserImport:
    """Read and check the file, work out what applying it would change, store the import.

    Returns the stored ``UserImport`` (status "previewed"): its ``preview`` is
    ``{"users": {"created": n, "updated": n, "unchanged": n}, "devices": {...}, "rejected": n,
    "samples": {"created": [[row, kind, key, detail], ...], "updated": [...]}}`` (the first
    ``SAMPLES`` per action). Raises ImportFileError for a file that cannot be imported at all
    (nothing stored). Nothing but the ``UserImport`` is written.
    """
    parsed = parse(data)
    preview = {
        "users": {"created": 0, "updated": 0, "unchanged": 0},
        "devices": {"created": 0, "updated": 0, "unchanged": 0},
        "samples": {"created": [], "updated": []},
    }
    chunks: list[list[list]] = []
    for start in range(0, len(parsed.rows), CHUNK_ROWS):
        batch = parsed.rows[start : start + CHUNK_ROWS]
        taken = _maa_taken(batch)
        kept = []
        for row in batch:
            if row.managed_apple_account in taken:
                holder = taken[row.managed_apple_account]
                parsed.rejected.append(
                    (
                        row.number,
                        f"Managed Apple Account “{row.managed_apple_account}” belongs to active user “{holder}”",
                    )
                )
            else:
                kept.append(row)
        users, devices, rows_of = _batch(kept, dry_run=True)
        _tally(preview, users, devices, rows_of, {r.serial_number: r for r in kept})
        if kept:
            chunks.append([row.as_list() for row in kept])
    parsed.rejected.sort()
    preview["rejected"] = len(parsed.rejected)
    with transaction.atomic():
        user_import = UserImport.objects.create(
            created_by=actor if getattr(actor, "pk", None) else None,
            filename=filename[:255],
            encoding=parsed.encoding,
            delimiter=parsed.delimiter,
            total_rows=parsed.total,
            accepted_rows=sum(len(chunk) for chunk in chunks),
            rejected=[list(r) for r in parsed.rejected],
            preview=preview,
        )
        start = 0
        for rows in chunks:  # one INSERT per chunk: each chunk's JSON is encoded on its own
            UserImportChunk.objects.create(user_import=user_import, start=start, rows=rows)
            start += len(rows)
    return user_import


def _tally(preview: dict, users: UpsertResult, devices: UpsertResult, rows_of: dict, by_serial: dict) -> None:
    """Add one batch's dry-run results to the preview's counts and samples."""
    by_pk = {pk: row for row, pk in rows_of.values() if pk}
    updated = 0
    for change in users.changes:
        if change.action == "updated":
            row = by_pk[change.user_id]
            updated += 1
            _sample(preview, "updated", [row.number, "user", row.login_id, change.detail])
    created = [row for row, pk in rows_of.values() if not pk]
    for row in created:
        _sample(preview, "created", [row.number, "user", row.login_id, row.name])
    preview["users"]["created"] += len(created)
    preview["users"]["updated"] += updated
    preview["users"]["unchanged"] += users.unchanged
    for change in devices.changes:
        row = by_serial[change.label]
        preview["devices"][change.action] += 1
        detail = change.detail or f"{Platform(row.platform).label} {row.model}, owner {row.login_id}".replace("  ", " ")
        _sample(preview, change.action, [row.number, "device", change.label, detail])
    preview["devices"]["unchanged"] += devices.unchanged


def _sample(preview: dict, action: str, entry: list) -> None:
    samples = preview["samples"][action]
    if len(samples) < SAMPLES:
        samples.append(entry)


# --------------------------------------------------------------------------- apply

# The registered runner: called with (import id, admin) inside the request's transaction; it
# starts the background work that calls import_apply. The VPP app registers its job engine.
_RUNNERS: list[Callable[..., int | None]] = []


def register_import_runner(runner: Callable[..., int | None]) -> None:
    """Let another app run imports in the background: ``runner(import_id=, actor=)`` returns the
    id of the job it started (shown on the import page). Registered once, at app start."""
    _RUNNERS[:] = [runner]


def import_start(*, user_import: UserImport, actor=None) -> bool:
    """Start applying a previewed (or stopped) import. False when it is already applying or applied.

    Marks it "applying" with a conditional UPDATE (two clicks start one job), then hands it to
    the registered runner, or applies it at once when none is registered.
    """
    with transaction.atomic():
        won = UserImport.objects.filter(
            pk=user_import.pk, status__in=[ImportStatus.PREVIEWED, ImportStatus.FAILED]
        ).update(status=ImportStatus.APPLYING, error="")
        if not won:
            return False
        if _RUNNERS:
            job_id = _RUNNERS[0](import_id=user_import.pk, actor=actor)
            UserImport.objects.filter(pk=user_import.pk).update(job_id=job_id)
            return True
    import_apply(import_id=user_import.pk)
    return True


def import_apply(*, import_id: int, on_progress: Callable[[int, int], None] | None = None) -> UserImport:
    """Write an import's accepted rows, resuming after ``applied_rows``.

    Each chunk of ``CHUNK_ROWS`` rows is one transaction that also moves ``applied_rows`` on
    and adds the chunk's counts to ``result``, so what is committed and what the import says is
    written never differ. ``on_progress(applied_rows, accepted_rows)`` after each chunk. An
    exception marks the import "failed" with the message (the rows of earlier chunks stay
    written; starting it again resumes) and is raised again.
    """
    total = UserImport.objects.values_list("accepted_rows", flat=True).get(pk=import_id)
    try:
        while True:
            with transaction.atomic():
                locked = UserImport.objects.select_for_update().only("applied_rows", "result").get(pk=import_id)
                start = locked.applied_rows
                stored = UserImportChunk.objects.filter(user_import_id=import_id, start=start).first()
                if stored is None:
                    break
                chunk = [ImportRow.from_list(values) for values in stored.rows]
                users, devices, _ = _batch(chunk, dry_run=False)
                result = locked.result or {}
                for kind, outcome in (("users", users), ("devices", devices)):
                    counts = result.setdefault(kind, {"created": 0, "updated": 0, "unchanged": 0})
                    counts["created"] += outcome.count("created")
                    counts["updated"] += outcome.count("updated")
                    counts["unchanged"] += outcome.unchanged
                UserImport.objects.filter(pk=import_id).update(applied_rows=start + len(chunk), result=result)
            if on_progress is not None:
                on_progress(start + len(chunk), total)
    except Exception as exc:
        message = f"Stopped: {exc}"[:500]
        UserImport.objects.filter(pk=import_id).update(status=ImportStatus.FAILED, error=message)
        raise
    UserImport.objects.filter(pk=import_id).update(status=ImportStatus.APPLIED, applied_at=timezone.now())
    return UserImport.objects.get(pk=import_id)
