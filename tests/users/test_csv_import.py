"""CSV import: reading (encodings, dialects, columns), the preview, applying, re-importing, bad rows.

docs/import.md is the promise these tests hold the code to.
"""

from __future__ import annotations

import csv
import io

import pytest

from tests.support.job_loop import run_job
from tests.support.users import make_user
from users import csv_import
from users.csv_import import COLUMNS, ImportFileError, import_preview, import_start, parse
from users.models import ActivationState, Device, ImportStatus, Platform, User, UserImport
from vpp.models import AuditEvent, Job, JobAction, JobStatus

pytestmark = pytest.mark.django_db

HEADER = [c.header for c in COLUMNS]


def csv_bytes(rows, *, header=HEADER, delimiter=",", encoding="utf-8") -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


def row(login="jdoe", name="Jane Doe", email="jane@example.org", maa="", dept="Sales", active="yes",
        serial="", platform="", state="", model="", os=""):  # fmt: skip
    return [login, name, email, maa, dept, active, serial, platform, state, model, os]


GOOD = [
    row(serial="C02AAA", platform="macOS", state="Activated", model="MacBook Air", os="15.1"),
    row(serial="F2LBBB", platform="iOS", state="pending", model="iPhone 16", os="18.1"),
    row("rroe", "Richard Roe", "richard@example.org", dept="Support", active="no"),
]


def preview(data: bytes) -> UserImport:
    return import_preview(data=data, filename="people.csv")


def apply(imported: UserImport) -> UserImport:
    """Apply as the Users page does: ``import_start`` hands it to the job engine (the runner the VPP
    app registers); the job then runs through the real task code (no Apple client is needed)."""
    assert import_start(user_import=imported)
    imported.refresh_from_db()
    job = Job.objects.get(pk=imported.job_id)
    run_job(job, None)
    imported.refresh_from_db()
    return imported


def snapshot():
    users = list(User.objects.order_by("login_id").values())
    devices = list(Device.objects.order_by("serial_number").values())
    return users, devices


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize(
    ("encoding", "prefix", "label"),
    [
        ("utf-8", b"", "UTF-8"),
        ("utf-8", b"\xef\xbb\xbf", "UTF-8 with BOM"),
        ("utf-16", b"", "UTF-16"),  # Python writes the BOM
        ("utf-16-le", b"", "UTF-16"),  # no BOM: charset-normalizer recognises it
        ("cp1252", b"", "Windows-1252 (Latin-1)"),
    ],
)
def test_encodings_are_detected_and_named(encoding, prefix, label):
    data = prefix + csv_bytes(
        [row(name="Zoë Ångström Müller"), row("b", "François Lefèvre", "b@example.org")], encoding=encoding
    )
    parsed = parse(data)
    assert parsed.encoding == label
    assert [r.name for r in parsed.rows] == ["Zoë Ångström Müller", "François Lefèvre"]
    assert parsed.rejected == []


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_delimiter_is_sniffed(delimiter):
    parsed = parse(csv_bytes(GOOD, delimiter=delimiter))
    assert parsed.delimiter == delimiter
    assert len(parsed.rows) == 3


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (HEADER[:-1], "missing column “OS version”"),
        ([*HEADER, "notes"], "unknown column “notes”"),
        (["login id", "name", "emial", *HEADER[3:]], "did you mean “email”"),
        ([*HEADER[:-1], "login"], "appears twice"),
    ],
)
def test_wrong_columns_refuse_the_file(header, message):
    with pytest.raises(ImportFileError, match=message):
        preview(csv_bytes([], header=header) + b"x\r\n")
    assert not UserImport.objects.exists()


def test_alternative_header_spellings_are_accepted():
    header = ["Login_ID", "Display Name", "E-mail address" if False else "Email", "managed-apple-account", "Department",
              "ACTIVE", "Serial Number", "Platform", "Activation_State", "Model", "os version"]  # fmt: skip
    assert len(parse(csv_bytes(GOOD, header=header)).rows) == 3


def test_a_file_over_the_limit_is_refused_before_it_is_read():
    data = csv_bytes(GOOD) + b"x" * (50 * 1024 * 1024)
    with pytest.raises(ImportFileError, match=r"The file is 50\.0 MB; the limit is 20 MB"):
        preview(data)
    assert not UserImport.objects.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "empty"), (csv_bytes([]), "no rows"), (b"\xef\xbb\xbf\xff\xfe", "not readable as UTF-8 with BOM")],
)
def test_empty_or_unreadable_files(data, message):
    with pytest.raises(ImportFileError, match=message):
        preview(data)


# --------------------------------------------------------------------------- bad rows

BAD_ROWS = [
    (row(email="not-an-email"), "email “not-an-email” is not an email address"),
    (row(maa="jane@"), "Managed Apple Account “jane@” is not an email address"),
    (row(serial="X1", platform="Linux"), "unknown platform “Linux”"),
    (row(serial="X1", platform=""), "platform is empty"),
    (row(serial="X1", platform="iOS", state="lost"), "unknown activation state “lost”"),
    (row(platform="iOS"), "device columns are filled but the device serial is empty"),
    (row(name='=HYPERLINK("http://x")'), "name starts with “=”"),
    (row(dept="+1+2"), "department starts with “+”"),
    (row(dept="-2+3"), "department starts with “-”"),
    (row(login="@SUM(A1)"), "login id starts with “@”"),
    (row(model="\t=1", serial="X1", platform="iOS"), "model starts with"),
    (row(login=""), "login id is empty"),
    (row(name=" "), "name is empty"),
    (row(active="maybe"), "active “maybe” is not yes or no"),
    (row(login="x" * 151), "login id is longer than 150 characters"),
    (row()[:-1], "has 10 cells; the header has 11"),
    ([*row(), "extra"], "has 12 cells; the header has 11"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_ROWS, ids=[r for _, r in BAD_ROWS])
def test_a_bad_row_is_rejected_with_its_row_number_and_reason(bad, reason):
    imported = preview(csv_bytes([row("ok", "Okay", "ok@example.org"), bad]))
    assert len(imported.rejected) == 1
    number, why = imported.rejected[0]
    assert number == 3 and reason in why
    assert imported.preview["users"]["created"] == 1
    assert not User.objects.exists()  # a preview writes nothing


def test_duplicates_in_the_file_are_rejected():
    data = csv_bytes([
        row(serial="S1", platform="iOS"),
        row(serial="S1", platform="iOS"),  # the same row again
        row(serial="S1", platform="macOS"),  # the same serial on another row
        row(name="Janet Doe", serial="S2", platform="iOS"),  # the same login, other details
        row("other", "Other", maa="shared@corp.example"),
        row("third", "Third", maa="shared@corp.example"),  # the same Managed Apple Account
    ])  # fmt: skip
    imported = preview(data)
    assert [r[0] for r in imported.rejected] == [3, 4, 5, 7]
    reasons = dict(imported.rejected)
    assert reasons[3] == "repeats row 2"
    assert "device serial “S1” is already on row 2" in reasons[4]
    assert "login id “jdoe” is on row 2 with another name" in reasons[5]
    assert "already on row 6" in reasons[7]


def test_several_problems_of_one_row_are_all_named():
    imported = preview(csv_bytes([row(email="bad", serial="S", platform="Linux", name="=1")]))
    assert imported.rejected[0][1].count(";") == 2


# --------------------------------------------------------------------------- preview and apply


def test_preview_counts_what_would_change_and_writes_nothing():
    existing = make_user("Richard Roe", login_id="rroe", email="old@example.org", devices=())
    before = snapshot()
    imported = preview(csv_bytes(GOOD))
    assert snapshot() == before
    assert imported.status == ImportStatus.PREVIEWED
    assert imported.preview["users"] == {"created": 1, "updated": 1, "unchanged": 0}
    assert imported.preview["devices"] == {"created": 2, "updated": 0, "unchanged": 0}
    updated = imported.preview["samples"]["updated"]
    assert updated[0][:3] == [4, "user", "rroe"] and "old@example.org" in updated[0][3]
    assert existing.pk


def test_apply_writes_the_rows_and_a_reimport_changes_nothing():
    apply(preview(csv_bytes(GOOD)))
    jane = User.objects.get(login_id="jdoe")
    assert (jane.display_name, jane.email, jane.department, jane.is_active) == (
        "Jane Doe",
        "jane@example.org",
        "Sales",
        True,
    )
    assert not User.objects.get(login_id="rroe").is_active
    mac = Device.objects.get(serial_number="C02AAA")
    assert (mac.user_id, mac.platform, mac.activation_state, mac.model, mac.os_version) == (
        jane.pk, Platform.MACOS, ActivationState.ACTIVATED, "MacBook Air", "15.1")  # fmt: skip
    assert Device.objects.get(serial_number="F2LBBB").activation_state == ActivationState.PENDING
    jane.refresh_from_db()
    assert jane.has_activated_apple_device and jane.has_macos and jane.has_ios  # the summary columns follow
    first = UserImport.objects.get()
    assert first.status == ImportStatus.APPLIED and first.applied_rows == 3
    assert first.result["users"]["created"] == 2 and first.result["devices"]["created"] == 2

    before = snapshot()
    again = preview(csv_bytes(GOOD))
    assert again.preview["users"] == {"created": 0, "updated": 0, "unchanged": 2}
    assert again.preview["devices"] == {"created": 0, "updated": 0, "unchanged": 2}
    apply(again)
    assert snapshot() == before  # not even updated_at moved
    again.refresh_from_db()
    assert again.result["users"]["unchanged"] == 2


def test_a_device_moves_to_the_owner_the_file_names():
    old = make_user("Old Owner", login_id="old", devices=())
    Device.objects.create(user=old, serial_number="C02AAA", platform=Platform.MACOS, activation_state="activated")
    imported = preview(csv_bytes(GOOD))
    assert imported.preview["devices"] == {"created": 1, "updated": 1, "unchanged": 0}
    apply(imported)
    assert Device.objects.get(serial_number="C02AAA").user.login_id == "jdoe"
    old.refresh_from_db()
    assert not old.has_macos


def test_a_failing_chunk_leaves_earlier_chunks_written_and_resumes(monkeypatch):
    monkeypatch.setattr(csv_import, "CHUNK_ROWS", 2)
    rows = [row(f"u{i}", f"User {i}", f"u{i}@example.org") for i in range(5)]
    imported = preview(csv_bytes(rows))
    real = csv_import.users_upsert
    calls = []

    def fail_second(**kwargs):
        calls.append(1)
        if len(calls) == 2:
            User.objects.create(login_id="half-written", display_name="x")  # rolled back with its chunk
            raise RuntimeError("database went away")
        return real(**kwargs)

    monkeypatch.setattr(csv_import, "users_upsert", fail_second)
    imported = apply(imported)
    assert imported.status == ImportStatus.FAILED and "database went away" in imported.error
    assert imported.applied_rows == 2
    assert sorted(User.objects.values_list("login_id", flat=True)) == ["u0", "u1"]
    assert Job.objects.get(pk=imported.job_id).status == JobStatus.FAILED
    imported = apply(imported)  # resume: a second job goes on after the committed chunk
    assert imported.status == ImportStatus.APPLIED and imported.applied_rows == 5
    assert User.objects.count() == 5
    assert imported.result["users"] == {"created": 5, "updated": 0, "unchanged": 0}


def test_the_job_reports_progress_counts_and_audit():
    imported = apply(preview(csv_bytes([*GOOD, row("bad", "Bad", "nope")])))
    job = Job.objects.get(pk=imported.job_id)
    assert (job.action, job.status, job.total, job.succeeded, job.skipped) == (
        JobAction.USER_IMPORT,
        JobStatus.DONE,
        3,
        3,
        1,
    )
    finished = AuditEvent.objects.get(action="users.import.finished")
    assert finished.outcome == "Done: users 2 created, 0 updated; devices 2 created, 0 updated"
    assert AuditEvent.objects.filter(action="users.import", job=job).exists()


def test_an_import_is_applied_once():
    imported = preview(csv_bytes(GOOD))
    assert import_start(user_import=imported)
    assert not import_start(user_import=imported)


def test_fields_without_a_column_keep_their_value():
    make_user(
        "Jane Doe", login_id="jdoe", email="jane@example.org", department="Sales", employee_number="E-7", devices=()
    )
    imported = preview(csv_bytes([row()]))
    assert imported.preview["users"] == {"created": 0, "updated": 0, "unchanged": 1}
    apply(imported)
    assert User.objects.get(login_id="jdoe").employee_number == "E-7"


def test_quoted_cells_may_hold_delimiters_and_line_breaks_and_old_mac_line_ends_are_read():
    data = csv_bytes([row(name="Doe, Jane", dept="Sales\nNorth"), row("b", "B", "b@example.org")])
    assert [r.department for r in parse(data).rows] == ["Sales\nNorth", "Sales"]
    old_mac = csv_bytes([row(), row("b", "B", "b@example.org")]).replace(b"\r\n", b"\r")
    assert [r.login_id for r in parse(old_mac).rows] == ["jdoe", "b"]


def test_a_managed_apple_account_another_active_user_holds_is_rejected_and_the_rest_applies():
    make_user("Holder", login_id="holder", managed_apple_account="jane@corp.example", devices=())
    imported = preview(
        csv_bytes([row(maa="Jane@Corp.example"), row("rroe", "Richard Roe", "r@example.org", maa="r@corp.example")])
    )
    assert imported.rejected == [[2, "Managed Apple Account “jane@corp.example” belongs to active user “holder”"]]
    apply(imported)
    assert User.objects.get(login_id="rroe").managed_apple_account == "r@corp.example"
    assert not User.objects.filter(login_id="jdoe").exists()
