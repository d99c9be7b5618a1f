"""Issue 12: Setting › Audit log and Setting › Sent messages over HTTP; the jobs list's filters."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
import time_machine
from django.contrib.auth.models import User as Admin
from django.core import mail

from vpp.audit import audit_record
from vpp.models import AuditEvent, Job, JobAction, JobStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(client):
    """An admin with no permission at all: the audit log is read-only for everyone."""
    user = Admin.objects.create_user("viewer", password="pw-0123456789")
    client.force_login(user)
    return user


def test_the_audit_log_lists_filters_and_exports_every_event(client, viewer):
    boss = Admin.objects.create_user("boss")
    job = Job.objects.create(action=JobAction.INVITE, total=3)
    with time_machine.travel(dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC), tick=False):
        AuditEvent.objects.create(
            actor=boss,
            actor_name="boss",
            action="vpp.invite",
            target_summary="=HYPERLINK(1)",
            count=3,
            ip="10.0.0.7",
            job=job,
        )
    with time_machine.travel(dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC), tick=False):
        audit_record(actor=None, action="vpp.assignment_changed", details={"from": "user", "to": "device"})
    html = client.get("/setting/audit-log/").content.decode()
    assert "Send VPP invitation" in html and "10.0.0.7" in html and f'href="/vpp/jobs/{job.pk}/"' in html
    assert "Changed the assignment method from user to device." in html
    assert "2026-11-01 09:00 UTC" in html

    html = client.get("/setting/audit-log/", {"actor": "boss"}).content.decode()
    assert "10.0.0.7" in html and "Changed the assignment method" not in html
    html = client.get("/setting/audit-log/", {"date_from": "2026-11-10"}).content.decode()
    assert "10.0.0.7" not in html and "Changed the assignment method" in html

    response = client.get("/setting/audit-log/export.csv", {"action": "vpp.invite"})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["when", "who", "action", "what", "count", "outcome", "ip", "job"]
    assert rows[1][:5] == ["2026-11-01 09:00 UTC", "boss", "Send VPP invitation", "'=HYPERLINK(1)", "3"]
    assert len(rows) == 2
    # Read-only: nothing on the page writes.
    assert client.post("/setting/audit-log/").status_code == 405


def test_the_jobs_list_filters_by_action_status_starter_and_date_and_pages(client, viewer):
    boss = Admin.objects.create_user("boss")
    with time_machine.travel(dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC), tick=False):
        Job.objects.create(action=JobAction.DELETE, status=JobStatus.DONE, started_by=boss, failed=2)
    for _ in range(55):
        Job.objects.create(action=JobAction.SYNC_ALL, status=JobStatus.FAILED)
    html = client.get("/vpp/jobs/", {"action": "delete"}).content.decode()
    assert html.count("Delete from VPP #") == 1 and "Full sync with Apple #" not in html
    assert "Failed</span>" in html  # every user failed: badged Failed, not Done
    assert client.get("/vpp/jobs/", {"started_by": "boss"}).content.decode().count("Delete from VPP #") == 1
    assert "Delete from VPP #" not in client.get("/vpp/jobs/", {"started_by": "schedule"}).content.decode()
    assert "Delete from VPP #" not in client.get("/vpp/jobs/", {"date_from": "2026-11-02"}).content.decode()
    assert client.get("/vpp/jobs/", {"status": "with_failures"}).content.decode().count("Delete from VPP #") == 1
    html = client.get("/vpp/jobs/").content.decode()
    assert "Page 1 of 2" in html and 'rel="next" href="?page=2"' in html
    assert 'title="2026-' in html  # absolute time on hover


def test_sent_messages_shows_the_file_outbox(client, viewer, settings, tmp_path):
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path)
    mail.send_mail("Join Acme's app programme", "Open https://example.com/invite/abc", "it@acme.test", ["ann@x.test"])
    mail.send_mail("Other", "body", "it@acme.test", ["bob@x.test"])
    html = client.get("/setting/sent-messages/").content.decode()
    assert "Join Acme&#x27;s app programme" in html and "https://example.com/invite/abc" in html
    assert html.index("Other") < html.index("Join Acme")  # newest first
    assert "bob@x.test" not in client.get("/setting/sent-messages/", {"q": "ann@"}).content.decode()
    assert "Sent messages</a>" in html
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    assert client.get("/setting/sent-messages/").status_code == 404
