"""The CSV import pages: permission, upload → preview (nothing written) → apply → result, the
template download, the rejected rows download, a file refused as a whole."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.support.job_loop import run_job
from tests.users.test_csv_import import GOOD, csv_bytes, row
from users.csv_import import COLUMNS, parse
from users.models import ImportStatus, User, UserImport
from vpp.models import Job

pytestmark = pytest.mark.django_db


def upload(client, data: bytes, name="people.csv"):
    return client.post("/users/import/", {"file": SimpleUploadedFile(name, data, content_type="text/csv")})


def test_the_users_page_offers_import_only_with_permission(client, admin_client, django_user_model):
    assert 'href="/users/import/"' in admin_client.get("/users/").text
    viewer = django_user_model.objects.create_user("viewer", password="x")
    client.force_login(viewer)
    assert 'href="/users/import/"' not in client.get("/users/").text
    assert client.get("/users/import/").status_code == 403
    assert upload(client, csv_bytes(GOOD)).status_code == 403
    assert not UserImport.objects.exists()
    wanted = Permission.objects.filter(codename__in=["add_user", "change_user"], content_type__app_label="users")
    viewer.user_permissions.add(*wanted)
    viewer = django_user_model.objects.get(pk=viewer.pk)
    client.force_login(viewer)
    assert 'href="/users/import/"' in client.get("/users/").text
    assert client.get("/users/import/").status_code == 200


def test_upload_previews_then_apply_writes(admin_client):
    response = upload(admin_client, csv_bytes([*GOOD, row("bad", "Bad", "nope")]))
    imported = UserImport.objects.get()
    assert response.status_code == 302 and response.url == f"/users/import/{imported.pk}/"
    page = admin_client.get(response.url).text
    assert "Nothing has been written yet." in page
    assert "read as UTF-8, comma separated" in page
    assert "email “nope” is not an email address" in page
    assert "Apply 3 rows" in page
    assert not User.objects.exists()

    response = admin_client.post(f"/users/import/{imported.pk}/apply/")
    assert response.status_code == 302
    imported.refresh_from_db()
    assert imported.status == ImportStatus.APPLYING and imported.job_id
    fragment = admin_client.get(f"/users/import/{imported.pk}/", headers={"HX-Request": "true"}).text
    assert 'hx-trigger="every 1s"' in fragment and "0 of 3 rows applied" in fragment
    run_job(Job.objects.get(pk=imported.job_id), None)
    page = admin_client.get(f"/users/import/{imported.pk}/").text
    assert "3 of 3 rows applied" in page and "Apply 3 rows" not in page
    assert User.objects.count() == 2
    # a second click does not start a second job
    admin_client.post(f"/users/import/{imported.pk}/apply/")
    assert Job.objects.count() == 1
    # the job page of the import job renders
    assert admin_client.get(f"/vpp/jobs/{imported.job_id}/").status_code == 200


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (csv_bytes([row()], header=[c.header for c in COLUMNS][:-1]), "missing column “OS version”"),
        (b"", "Choose a CSV file"),
    ],
)
def test_a_file_refused_as_a_whole_says_why_and_stores_nothing(admin_client, data, message):
    response = upload(admin_client, data) if data else admin_client.post("/users/import/", {})
    assert response.status_code == 400
    assert message in response.text
    assert not UserImport.objects.exists()


def test_the_preview_names_encoding_and_delimiter(admin_client):
    upload(admin_client, csv_bytes(GOOD, delimiter="\t", encoding="utf-16"))
    page = admin_client.get(f"/users/import/{UserImport.objects.get().pk}/").text
    assert "3 rows read as UTF-16, tab separated." in page


def test_a_50_mb_upload_is_refused_with_its_size(admin_client):
    response = upload(admin_client, csv_bytes(GOOD) + b"," * (50 * 1024 * 1024))
    assert response.status_code == 400
    assert "The file is 50.0 MB; the limit is 20 MB" in response.text
    assert not UserImport.objects.exists()


def test_the_template_is_importable_and_spreadsheet_safe(admin_client):
    response = admin_client.get("/users/import/template.csv")
    assert response["Content-Type"].startswith("text/csv")
    parsed = parse(response.content)
    assert parsed.encoding == "UTF-8 with BOM"
    assert parsed.rejected == [] and len(parsed.rows) == 3


def test_rejected_rows_download_neutralises_formulas(admin_client):
    upload(admin_client, csv_bytes([row(name="=cmd|' /C calc'!A0")]))
    imported = UserImport.objects.get()
    response = admin_client.get(f"/users/import/{imported.pk}/rejected.csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["row", "reason"]
    assert rows[1][0] == "2" and "looks like" not in rows[1][1] and "formula" in rows[1][1]
