"""Demo data: a realistic, deterministic mix of device users and devices.

Used by ``manage.py seed_demo``, ``manage.py run_console`` (empty database) and bench/.
Rows are built as plain tuples and written with ``executemany`` in batches: the ORM's
bulk_create spends most of its time preparing values per field, which made 100,000 users
take a minute; this takes seconds on SQLite and Postgres alike.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from users.models import (
    APPLE_PLATFORMS,
    PLATFORM_FLAGS,
    ActivationState,
    Device,
    Platform,
    User,
    user_search_text,
)

FIRST_NAMES = [
    "Anna",
    "Ben",
    "Carla",
    "David",
    "Emma",
    "Felix",
    "Grace",
    "Hannah",
    "Ian",
    "Julia",
    "Karim",
    "Lena",
    "Marco",
    "Nina",
    "Oscar",
    "Paula",
    "Quentin",
    "Rosa",
    "Samuel",
    "Tara",
    "Umar",
    "Vera",
    "William",
    "Xenia",
    "Yusuf",
    "Zoe",
    "Aiko",
    "Bruno",
    "Chloe",
    "Diego",
    "Elif",
    "Farah",
    "Gabriel",
    "Hugo",
    "Ingrid",
    "Jonas",
    "Kenji",
    "Lucia",
    "Mateo",
    "Noah",
    "Olivia",
    "Priya",
    "Rafael",
    "Sofia",
    "Tomas",
    "Ursula",
    "Viktor",
    "Wei",
    "Yara",
    "Zainab",
    "Amir",
    "Beatriz",
    "Connor",
    "Dana",
    "Erik",
    "Fatima",
    "Giulia",
    "Henrik",
    "Isabel",
    "Jamal",
    "Katarina",
    "Liam",
    "Maya",
    "Nikolai",
    "Omar",
    "Petra",
    "Ravi",
    "Sven",
]
LAST_NAMES = [
    "Müller",
    "Schmidt",
    "Garcia",
    "Rossi",
    "Dubois",
    "Johansson",
    "Nowak",
    "Kowalski",
    "Silva",
    "Santos",
    "Smith",
    "Johnson",
    "Brown",
    "Taylor",
    "Wilson",
    "Tanaka",
    "Suzuki",
    "Kim",
    "Park",
    "Chen",
    "Wang",
    "Li",
    "Nguyen",
    "Tran",
    "Patel",
    "Sharma",
    "Khan",
    "Ahmed",
    "Hassan",
    "Yilmaz",
    "Kaya",
    "Demir",
    "Novak",
    "Horvat",
    "Jensen",
    "Nielsen",
    "Hansen",
    "Larsen",
    "Berg",
    "Lindqvist",
    "Virtanen",
    "Korhonen",
    "Murphy",
    "Kelly",
    "O'Brien",
    "Walsh",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Koch",
    "Richter",
    "Klein",
    "Wolf",
    "Neumann",
    "Schwarz",
    "Zimmermann",
    "Braun",
    "Hartmann",
    "Lange",
    "Werner",
    "Krause",
    "Lehmann",
    "Köhler",
    "Martin",
    "Bernard",
    "Moreau",
    "Laurent",
    "Lefebvre",
    "Fontaine",
    "Costa",
    "Ferreira",
    "Oliveira",
]
DEPARTMENTS = (
    "Sales",
    "Marketing",
    "Engineering",
    "Finance",
    "Human Resources",
    "Legal",
    "Operations",
    "Support",
    "Design",
    "Research",
    "Logistics",
    "Procurement",
    "IT",
    "Field Service",
    "Executive Office",
)
EMAIL_DOMAINS = ("example.com", "example.org", "corp.example.net")
MODELS = {
    Platform.IOS: ("iPhone 15", "iPhone 15 Pro", "iPhone 14", "iPhone 13", "iPhone SE (3rd generation)", "iPhone 16"),
    Platform.IPADOS: ("iPad Air (5th generation)", "iPad (10th generation)", "iPad Pro 11-inch", "iPad mini"),
    Platform.MACOS: ("MacBook Air (M2)", "MacBook Pro 14-inch", "MacBook Air (M3)", "iMac 24-inch", "Mac mini"),
    Platform.ANDROID: ("Pixel 8", "Galaxy S23", "Galaxy A54", "Xperia 10 V", "moto g84"),
    Platform.WINDOWS: ("Surface Laptop 5", "ThinkPad T14", "Latitude 7440", "EliteBook 840"),
}
OS_VERSIONS = {
    Platform.IOS: ("17.6.1", "18.1", "18.2", "16.7.10"),
    Platform.IPADOS: ("17.6.1", "18.1", "18.2"),
    Platform.MACOS: ("14.7", "15.1", "15.2", "13.7.1"),
    Platform.ANDROID: ("13", "14", "15"),
    Platform.WINDOWS: ("10 22H2", "11 23H2", "11 24H2"),
}
PLATFORM_WEIGHTS = (
    (Platform.IOS, 40),
    (Platform.IPADOS, 14),
    (Platform.MACOS, 24),
    (Platform.ANDROID, 14),
    (Platform.WINDOWS, 8),
)
STATE_WEIGHTS = ((ActivationState.ACTIVATED, 72), (ActivationState.PENDING, 18), (ActivationState.DEACTIVATED, 10))
DEVICE_COUNT_WEIGHTS = ((0, 9), (1, 52), (2, 30), (3, 9))
BATCH_SIZE = 2000


@dataclass(frozen=True)
class SeedResult:
    users: int
    devices: int


def demo_users_create(*, count: int, seed: int = 1, now: datetime | None = None) -> SeedResult:
    """Create ``count`` device users (with 0–3 devices each). Same seed, same data."""
    rng = random.Random(seed)
    now = now or timezone.now()
    taken = set(User.objects.values_list("login_id", flat=True)) if User.objects.exists() else set()
    created_users = created_devices = 0
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, count, BATCH_SIZE):
            batch = min(BATCH_SIZE, count - start)
            users, device_specs = _build_batch(rng, batch, now, taken)
            _insert(cursor, User, users, now)
            ids = dict(User.objects.filter(login_id__in=[u["login_id"] for u in users]).values_list("login_id", "id"))
            devices = [{**spec, "user_id": ids[users[index]["login_id"]]} for index, spec in device_specs]
            _insert(cursor, Device, devices, now)
            created_users += len(users)
            created_devices += len(devices)
    return SeedResult(users=created_users, devices=created_devices)


def _insert(cursor, model, rows: list[dict], now: datetime) -> None:
    """INSERT rows (dicts keyed by column) in bulk; created_at/updated_at = now.

    Postgres gets COPY (several times faster than INSERT for 100,000 rows); SQLite one
    executemany inside the surrounding transaction.
    """
    if not rows:
        return
    columns = [*rows[0], "created_at", "updated_at"]
    quote = connection.ops.quote_name
    table, names = quote(model._meta.db_table), ", ".join(quote(c) for c in columns)
    if connection.vendor == "postgresql":
        with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([*row.values(), now, now])
        return
    stamp = connection.ops.adapt_datetimefield_value(now)
    datetime_columns = {f.column for f in model._meta.concrete_fields if f.get_internal_type() == "DateTimeField"}
    adapt = connection.ops.adapt_datetimefield_value
    values = [[adapt(v) if c in datetime_columns else v for c, v in row.items()] + [stamp, stamp] for row in rows]
    # Only identifiers from the model's own metadata go into the SQL; values are parameters.
    sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(columns))})"  # noqa: S608
    cursor.executemany(sql, values)


def demo_users_delete() -> None:
    """Remove every device user and device (demo reset)."""
    with transaction.atomic():
        # Raw: the per-device signals (summary refresh) are pointless when everything goes.
        Device.objects.all()._raw_delete(Device.objects.db)
        User.objects.only("pk").delete()


def _build_batch(rng: random.Random, batch: int, now: datetime, taken: set[str]):
    users: list[dict] = []
    device_specs: list[tuple[int, dict]] = []
    platforms, platform_w = zip(*PLATFORM_WEIGHTS, strict=True)
    counts, count_w = zip(*DEVICE_COUNT_WEIGHTS, strict=True)
    for index in range(batch):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        login = _unique_login(f"{first}.{last}", taken)
        specs = [
            _device_spec(rng, rng.choices(platforms, platform_w)[0], now)
            for _ in range(rng.choices(counts, count_w)[0])
        ]
        # About one in twelve has no email on file (invitations then need push).
        email = "" if rng.random() < 0.08 else f"{login}@{rng.choice(EMAIL_DOMAINS)}"
        users.append(
            {
                "display_name": f"{first} {last}",
                "login_id": login,
                "email": email,
                "managed_apple_account": "",  # set by the import (a CSV column) or in the admin
                "department": rng.choice(DEPARTMENTS),
                "is_active": rng.random() > 0.03,
                "search_text": user_search_text(f"{first} {last}", login, email),
                **_device_summary(specs),
            }
        )
        device_specs.extend((index, spec) for spec in specs)
    return users, device_specs


def _device_summary(specs: list[dict]) -> dict:
    """The User columns that mirror its devices (see users.services.user_device_summary_refresh)."""
    seen = [spec["last_seen_at"] for spec in specs if spec["last_seen_at"]]
    platforms = {spec["platform"] for spec in specs}
    return {
        "last_seen_at": max(seen) if seen else None,
        "has_activated_apple_device": any(
            spec["platform"] in APPLE_PLATFORMS and spec["activation_state"] == ActivationState.ACTIVATED
            for spec in specs
        ),
        **{flag: platform in platforms for platform, flag in PLATFORM_FLAGS.items()},
    }


def _unique_login(base: str, taken: set[str]) -> str:
    base = base.lower().replace("'", "").translate(str.maketrans("äöüé", "aoue"))
    login, n = base, 1
    while login in taken:
        n += 1
        login = f"{base}{n}"
    taken.add(login)
    return login


def _device_spec(rng: random.Random, platform: str, now: datetime) -> dict:
    states, state_w = zip(*STATE_WEIGHTS, strict=True)
    state = rng.choices(states, state_w)[0]
    enrolled = now - timedelta(days=rng.randint(1, 900), minutes=rng.randint(0, 1439))
    if state == ActivationState.ACTIVATED:
        last_seen = now - timedelta(minutes=rng.randint(1, 60 * 24 * 45))
    elif state == ActivationState.DEACTIVATED:
        last_seen = now - timedelta(days=rng.randint(60, 400))
    else:
        last_seen = None  # enrolment started, the agent never checked in
    apple = platform in APPLE_PLATFORMS
    has_push = apple and state == ActivationState.ACTIVATED and rng.random() < 0.85
    return {
        "platform": platform,
        "activation_state": state,
        "serial_number": "".join(rng.choices(string.ascii_uppercase + string.digits, k=12 if apple else 10)),
        "model": rng.choice(MODELS[platform]),
        "os_version": rng.choice(OS_VERSIONS[platform]),
        "enrolled_at": enrolled,
        "last_seen_at": max(last_seen, enrolled) if last_seen else None,
        "push_token": f"{rng.getrandbits(256):064x}" if has_push else "",
    }
