"""Bad input gets a 4xx with a reason (or the page's documented fallback), never a 5xx, and a
refused request changes nothing (issue 10).

``TABLE`` sends malformed values — wrong types, overflowing ids, NULs, NaN, deep nesting,
header injection, huge and non-UTF-8 bodies — to every form and endpoint: the Users page
parameters, bulk confirm/apply, the job pages, a full sync's orphan actions, token upload, each
settings section, Apple's notification receiver and the login. Each row checks: no 5xx, and when the answer is a refusal
(4xx, or a row marked ``changes_nothing``) a snapshot of the database rows is the same before
and after. The scenario tests below the table pin the messages of each fault.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from dataclasses import dataclass, field
from html import unescape
from urllib.parse import urlencode

import pytest
import responses
import time_machine
from django.contrib.auth.models import User as Admin
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.support.redis_db import rate_limiter
from tests.support.users import make_user
from tests.support.vpp_api import make_stoken
from users.models import Device, User
from vpp import secrets as vault
from vpp.apple.client import VppClient, clear_service_config_cache
from vpp.apple.errors import ServiceUnavailableError
from vpp.models import (
    AppleNotification,
    AuditEvent,
    InvitationDelivery,
    ItemStatus,
    Job,
    JobAction,
    JobItem,
    JobStatus,
    SyncOrphan,
    SyncRun,
    SyncSchedule,
    VppServerSetting,
    VppUser,
    VppUserStatus,
)

pytestmark = pytest.mark.django_db

FORM = "application/x-www-form-urlencoded"
BEARER = "bearer-for-bad-input"
HUGE_ID = "99999999999999999999"  # over a 64-bit primary key
HUGE_BODY = b"q=" + b"x" * 3_000_000  # over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB)
NON_UTF8 = b"pk=\xff\xfe&select_all=1&q=\xc3\x28&understood=yes"
SETTING_URL = "/setting/ios-macos/vpp-server/"
RECEIVER = "/vpp/notifications/"
SNAPSHOT_MODELS = (
    User,
    Device,
    VppUser,
    InvitationDelivery,
    Job,
    JobItem,
    AuditEvent,
    AppleNotification,
    VppServerSetting,
    SyncSchedule,
    SyncRun,
    SyncOrphan,
)


def db_snapshot() -> dict[str, list[tuple]]:
    """Every row of the tables a console request can change, in pk order."""
    return {model._meta.label: list(model.objects.order_by("pk").values_list()) for model in SNAPSHOT_MODELS}


@dataclass(frozen=True)
class Bad:
    """One malformed request: ``data`` is a dict (urlencoded or multipart), or raw bytes/str."""

    id: str
    method: str
    url: str
    data: object = None
    content_type: str = FORM
    headers: dict = field(default_factory=dict)
    refused: bool = True  # must be a 4xx
    changes_nothing: bool = True  # the database is the same afterwards, whatever the status


def notification(**overrides) -> dict:
    body = {
        "notificationId": "n-1",
        "notificationType": "USER_ASSOCIATED",
        "uId": "2049",
        "notification": {"associatedUsers": [{"clientUserId": "{cuid}", "idHash": "h"}]},
    }
    body.update(overrides)
    return body


def receiver(id: str, body, **extra) -> Bad:
    raw = body if isinstance(body, bytes | str) else json.dumps(body)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {BEARER}", **extra}
    return Bad(id, "post", RECEIVER, raw, "application/json", headers)


def bulk(
    id: str, data, *, content_type: str = FORM, actions=("invite", "delete", "sync"), steps=("confirm", "apply")
) -> list[Bad]:
    rows = []
    for action in actions:
        for step in steps:
            rows.append(Bad(f"{action}-{step}-{id}", "post", f"/vpp/bulk/{action}/{step}/", data, content_type))
    return rows


def section(id: str, data: dict, **kwargs) -> Bad:
    return Bad(f"setting-{id}", "post", SETTING_URL, data, **kwargs)


def invitations(**overrides) -> dict:
    return {
        "section": "invitations",
        "invitation_channel": "email",
        "invitation_sender": "",
        "invitation_subject": "Join",
        "invitation_body_text": "Hi {user_name}: {invitation_link}",
        "invitation_body_html": "",
        **overrides,
    }


NESTED = "[" * 200_000 + "]" * 200_000

TABLE: list[Bad] = [
    # --- the Users page: bad parameters fall back to the page's defaults (never a 5xx) ---------
    *[
        Bad(f"users-{name}", "get", f"/users/?{query}", refused=False)
        for name, query in [
            ("page-overflow", f"page={HUGE_ID}"),
            ("page-negative", "page=-3"),
            ("page-text", "page=abc"),
            ("size-overflow", f"size={HUGE_ID}"),
            ("sort-bogus", "sort=drop+table"),
            ("q-huge", "q=" + "x" * 20_000),
            ("q-nul", "q=a%00b"),
            ("q-non-utf8", "q=%ff%fe"),
            ("platform-list", "platform=ios&platform=bogus"),
            ("vpp-status-bogus", "vpp_status=bogus"),
        ]
    ],
    # --- bulk confirm / apply: every action, both steps ------------------------------------------
    *bulk("pk-overflow", {"pk": [HUGE_ID], "understood": "yes"}),
    *bulk("pk-negative", {"pk": ["-1"], "understood": "yes"}),
    *bulk("pk-sql", {"pk": ["1 OR 1=1"], "understood": "yes"}),
    *bulk("pk-unicode-digits", {"pk": ["١٢"], "understood": "yes"}),
    *bulk("pk-unknown", {"pk": ["987654"], "understood": "yes"}),
    *bulk("nothing", {"understood": "yes"}),
    *bulk("all-q-too-long", {"select_all": "1", "q": "x" * 201, "understood": "yes"}),
    *bulk("all-q-nul", {"select_all": "1", "q": "a\x00b", "understood": "yes"}),
    *bulk("all-platform-bogus", {"select_all": "1", "platform": "bogus", "understood": "yes"}),
    *bulk("all-activated-bogus", {"select_all": "1", "activated": "maybe", "understood": "yes"}),
    *bulk("all-vpp-status-bogus", {"select_all": "1", "vpp_status": "bogus", "understood": "yes"}),
    *bulk("plan-forged", {"select_all": "1", "plan": "forged:signature", "understood": "yes"}, steps=("apply",)),
    *bulk("non-utf8", NON_UTF8),
    *bulk("huge-body", HUGE_BODY, actions=("delete",)),
    *bulk("json-body", json.dumps({"select_all": 1}), content_type="application/json", actions=("delete",)),
    # --- job pages ------------------------------------------------------------------------------
    Bad("job-overflow", "get", f"/vpp/jobs/{HUGE_ID}/"),
    Bad("job-panel-overflow", "get", f"/vpp/jobs/{HUGE_ID}/panel/"),
    Bad("job-export-overflow", "get", f"/vpp/jobs/{HUGE_ID}/export.csv"),
    Bad("job-retry-overflow", "post", f"/vpp/jobs/{HUGE_ID}/retry-failed/", {}),
    Bad("job-page-text", "get", "/vpp/jobs/{job}/?page=abc&status=bogus", refused=False),
    Bad("job-page-overflow", "get", f"/vpp/jobs/{{job}}/?page={HUGE_ID}", refused=False),
    Bad("jobs-list-params", "get", "/vpp/jobs/?page=%ff", refused=False),
    # --- a full sync's orphans (the sync result page) ---------------------------------------------
    *[
        Bad(f"orphans-{step}-{name}", "post", f"/vpp/jobs/{{sync}}/orphans/{step}/", data, refused=step == "apply")
        for step in ("confirm", "apply")
        for name, data in [
            ("id-overflow", {f"do_{HUGE_ID}": "retire", "understood": "yes"}),
            ("adopt-overflow", {"do_1": f"adopt:{HUGE_ID}", "understood": "yes"}),
            ("login-nul", {"do_1": "x", "adopt_login_1": "a\x00b", "understood": "yes"}),
            ("unicode-digits", {"do_١": "retire", "understood": "yes"}),
            ("non-utf8", b"do_1=\xff&adopt_login_1=\xfe&understood=yes"),
        ]
    ],
    # --- settings sections ----------------------------------------------------------------------
    section("unknown", {"section": "bogus"}),
    section("token-garbage", {"section": "token", "token_text": "not a token"}),
    section("token-nul", {"section": "token", "token_text": "a\x00b"}),
    section("token-non-utf8-file", {"section": "token", "token_file": b"\xff\xfe\x00garbage"}, content_type=""),
    section("token-huge-file", {"section": "token", "token_file": b"x" * 200_000}, content_type=""),
    section("token-nothing", {"section": "token"}),
    section("takeover-unticked", {"section": "takeover"}),
    section("unit-change-nothing-pending", {"section": "token_unit_change", "understood": "on"}, refused=False),
    section("unit-change-list", {"section": "token_unit_change", "understood": ["a", "b"]}, refused=False),
    section("assignment-bogus", {"section": "assignment", "assignment_method": "bogus"}),
    section("invitations-sender-crlf", invitations(invitation_sender="IT <it@example.com>\r\nBcc: x@example.net")),
    section("invitations-sender-two", invitations(invitation_sender="a@example.com, b@example.com")),
    section("invitations-sender-nul", invitations(invitation_sender="it@exa\x00mple.com")),
    section("invitations-no-link", invitations(invitation_body_text="Hello {user_name}")),
    section("invitations-html-no-link", invitations(invitation_body_html="<p>Hello</p>")),
    section("invitations-channel-bogus", invitations(invitation_channel="pigeon")),
    section("invitations-subject-huge", invitations(invitation_subject="x" * 10_000)),
    section("invitations-placeholder", invitations(invitation_subject="{__class__}")),
    section("schedule-overflow", {"section": "schedule", "mode": "interval", "interval_hours": HUGE_ID}),
    section(
        "schedule-bogus",
        {"section": "schedule", "mode": "weekly", "time_of_day": "25:99", "timezone": "Mars/Olympus"},
    ),
    section("notifications-url", {"section": "notifications", "public_url": "javascript:alert(1)"}),
    section("notifications-http", {"section": "notifications", "public_url": "http://example.com"}),
    section("non-utf8", b"section=invitations&invitation_sender=\xff\xfe"),
    section("huge-body", HUGE_BODY),
    section("send-test-smtp-down", {"send_test": "1"}, refused=False),  # a message, then the page
    # --- Apple's notification receiver (a valid bearer) ---------------------------------------
    receiver("nul-in-id", notification(notificationId="n\x00-1")),
    receiver("nul-in-payload", notification(notification={"associatedUsers": [{"clientUserId": "a\x00"}]})),
    receiver("nul-in-key", notification(notification={"a\x00": 1})),
    receiver("nan", '{"notificationId": "n-1", "notificationType": "USER_ASSOCIATED", "x": NaN}'),
    receiver("infinity", '{"notificationId": "n-1", "notificationType": "T", "x": -Infinity}'),
    receiver("overflowing-number", '{"notificationId": "n-1", "notificationType": "T", "x": 1e999}'),
    receiver("huge-integer", '{"notificationId": "n-1", "notificationType": "T", "x": ' + "9" * 5000 + "}"),
    receiver("nested-200000", NESTED),
    receiver("nested-object", notification(notification={"a": json.loads("[" * 40 + "]" * 40)})),
    receiver("associated-users-int", notification(notification={"associatedUsers": 5})),
    receiver("associated-users-strings", notification(notification={"associatedUsers": ["x"]})),
    receiver("payload-list", notification(notification=[1, 2])),
    receiver("id-number", notification(notificationId=5)),
    receiver("id-huge", notification(notificationId="x" * 5000)),
    receiver("not-an-object", "[1, 2]"),
    receiver("not-json", "notificationId=n-1"),
    receiver("non-utf8", b'{"notificationId": "\xff\xfe"}'),
    receiver("empty", b""),
    receiver("content-length-text", notification(), CONTENT_LENGTH="abc"),
    # --- login ------------------------------------------------------------------------------------
    Bad("login-huge-username", "post", "/login/", {"username": "x" * 100_000, "password": "x"}, refused=False),
    Bad("login-nul", "post", "/login/", {"username": "ro\x00ot", "password": "x\x00"}, refused=False),
    Bad("login-non-utf8", "post", "/login/", b"username=\xff\xfe&password=\xc3\x28", refused=False),
    Bad("login-lists", "post", "/login/", "username=a&username=b&password=x", refused=False),
    Bad("login-huge-body", "post", "/login/", HUGE_BODY),
]


@pytest.fixture
def console(client, settings):
    """A superuser logged in, a (fake) token, the notification bearer, users at every VPP status,
    a finished job with a failed item; the mail server unreachable (a closed local port)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", closed_port()
    client.raise_request_exception = False  # a crash must show as a 500 here, not as an exception
    admin = Admin.objects.create_superuser("root", email="root@example.com", password="pw-0123456789")
    client.force_login(admin)
    setting = VppServerSetting.load()
    setting.content_token_encrypted = vault.encrypt("fake-s-token")
    setting.token_org_name = "Example Org"
    setting.notification_auth_token_encrypted = vault.encrypt(BEARER)
    setting.save()
    SyncSchedule.load()  # the singleton rows exist, as after the first page view
    users = [make_user(vpp_status=status) for status in (None, *VppUserStatus.values)]
    Job.objects.create(action=JobAction.SYNC_ALL, status=JobStatus.DONE)  # its orphans page
    job = Job.objects.create(action=JobAction.INVITE, status=JobStatus.DONE, total=1, channel="email")
    JobItem.objects.create(job=job, user=users[0], user_label="x", status=ItemStatus.FAILED, reason="=1+1")
    return client, job


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def send(client, row: Bad, job: Job):
    url = row.url.replace("{job}", str(job.pk))
    url = url.replace("{sync}", str(Job.objects.filter(action=JobAction.SYNC_ALL).values_list("pk", flat=True).first()))
    if row.method == "get":
        return client.get(url, **row.headers)
    data = row.data
    if row.content_type == "":  # multipart, with files
        data = {
            key: SimpleUploadedFile("t.vpptoken", value) if isinstance(value, bytes) else value
            for key, value in data.items()
        }
        return client.post(url, data, **row.headers)
    if isinstance(data, dict):
        data = urlencode(data, doseq=True)
    return client.post(url, data or b"", content_type=row.content_type, **row.headers)


@pytest.mark.parametrize("row", TABLE, ids=[row.id for row in TABLE])
def test_bad_input_is_refused_with_a_reason_and_changes_nothing(console, row):
    client, job = console
    before = db_snapshot()
    response = send(client, row, job)
    assert response.status_code < 500, f"{row.id}: {response.status_code}"
    if row.refused:
        assert 400 <= response.status_code < 500, f"{row.id}: {response.status_code}"
    if row.changes_nothing or 400 <= response.status_code < 500:
        assert db_snapshot() == before, row.id


# =========================================================================== item 1: never wider
def confirm(client, action: str, data: dict):
    return client.post(f"/vpp/bulk/{action}/confirm/", urlencode(data, doseq=True), content_type=FORM)


def apply(client, action: str, data: dict):
    return client.post(f"/vpp/bulk/{action}/apply/", urlencode(data, doseq=True), content_type=FORM)


def carried(confirmation) -> list[tuple[str, str]]:
    """The hidden fields the confirmation modal carries to apply (what the browser posts)."""
    html = confirmation.content.decode()
    return [
        (name, unescape(value))
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html)
    ]


@pytest.fixture
def vpp_users(console):
    client, _job = console
    return client, [make_user(vpp_status=VppUserStatus.INVITED) for _ in range(6)]


@pytest.mark.parametrize(
    "bad_filter",
    [{"q": "x" * 201}, {"vpp_status": "bogus"}, {"platform": "bogus"}, {"activated": "maybe"}],
    ids=["search-over-200", "vpp-status", "platform", "activated"],
)
def test_select_all_with_a_filter_that_does_not_validate_deletes_nobody(vpp_users, bad_filter):
    client, _users = vpp_users
    data = {"select_all": "1", **bad_filter, "understood": "yes"}
    refused = confirm(client, "delete", data)
    assert refused.status_code == 422
    assert "The filter was not understood" in refused.content.decode()
    applied = apply(client, "delete", data)
    assert applied.status_code == 422 and "The filter was not understood" in applied.content.decode()
    assert not Job.objects.filter(action=JobAction.DELETE).exists()


def test_apply_acts_on_exactly_what_the_confirmation_showed(vpp_users):
    client, _users = vpp_users
    invited = VppUser.objects.filter(status=VppUserStatus.INVITED).count()
    shown = confirm(client, "delete", {"select_all": "1", "vpp_status": "invited"})
    assert f"<strong>{invited} users</strong>" in shown.content.decode()
    make_user(vpp_status=VppUserStatus.INVITED)  # one more matches now
    changed = apply(client, "delete", dict(carried(shown), understood="yes"))
    assert changed.status_code == 409
    html = changed.content.decode()
    assert "The selection changed since the confirmation" in html and f"<strong>{invited + 1} users</strong>" in html
    assert not Job.objects.filter(action=JobAction.DELETE).exists()
    started = apply(client, "delete", dict(carried(changed), understood="yes"))  # confirmed again
    assert started.status_code == 200
    assert Job.objects.get(action=JobAction.DELETE).total == invited + 1


def test_apply_refuses_a_selection_other_than_the_confirmed_one(vpp_users):
    client, users = vpp_users
    shown = confirm(client, "delete", {"pk": [users[0].pk]})
    forged = [(k, v) for k, v in carried(shown)] + [("pk", str(users[1].pk)), ("understood", "yes")]
    response = client.post("/vpp/bulk/delete/apply/", urlencode(forged), content_type=FORM)
    assert response.status_code == 409
    unconfirmed = apply(client, "delete", {"pk": [users[0].pk], "understood": "yes"})
    assert unconfirmed.status_code == 409 and "confirm the action first" in unconfirmed.content.decode()
    assert not Job.objects.filter(action=JobAction.DELETE).exists()


def test_another_admins_confirmation_is_not_valid(vpp_users, client):
    console_client, users = vpp_users
    shown = confirm(console_client, "sync", {"pk": [users[0].pk]})
    other = Admin.objects.create_superuser("other", password="pw-0123456789")
    client.force_login(other)
    response = apply(client, "sync", dict(carried(shown)))
    assert response.status_code == 409
    assert not Job.objects.filter(action=JobAction.SYNC).exists()


@pytest.mark.parametrize("ids", [["987654"], [HUGE_ID]], ids=["deleted", "overflow"])
def test_unknown_or_overflowing_ids_give_a_message_not_an_empty_job(vpp_users, ids):
    client, _users = vpp_users
    for send_step in (confirm, apply):
        response = send_step(client, "sync", {"pk": ids})
        assert response.status_code == 422
        html = response.content.decode()
        assert "None of the selected users exist any more" in html or "not understood" in html
    assert not Job.objects.filter(action=JobAction.SYNC).exists()


def test_ids_deleted_between_confirm_and_apply_start_nothing(vpp_users):
    client, users = vpp_users
    shown = confirm(client, "sync", {"pk": [users[0].pk]})
    users[0].delete()
    response = apply(client, "sync", dict(carried(shown)))
    assert response.status_code == 422 and "None of the selected users exist any more" in response.content.decode()
    assert not Job.objects.filter(action=JobAction.SYNC).exists()


def test_retry_failed_only_when_the_failed_users_are_gone_says_so(console):
    client, job = console
    JobItem.objects.get(job=job).user.delete()
    jobs = Job.objects.count()
    response = client.post(f"/vpp/jobs/{job.pk}/retry-failed/", follow=True)
    assert response.status_code == 200
    assert f"Nothing to retry: job #{job.pk} has no failed users that still exist." in response.content.decode()
    assert Job.objects.count() == jobs


def test_the_csv_export_neutralises_every_cell_a_spreadsheet_would_evaluate(console):
    client, job = console
    JobItem.objects.filter(job=job).update(user_label="-2+3", reason='=HYPERLINK("http://x")')
    for start in ("+1", "@SUM(A1)", "\tx", "\rx", "plain"):
        JobItem.objects.create(job=job, user=make_user(), user_label="u", status=ItemStatus.FAILED, reason=start)
    text = b"".join(client.get(f"/vpp/jobs/{job.pk}/export.csv").streaming_content).decode()
    cells = [cell for line in text.splitlines()[1:] for cell in line.split(",")]
    assert "'-2+3" in cells and "'+1" in cells and "'@SUM(A1)" in cells and "plain" in cells
    assert '"\'=HYPERLINK(""http://x"")"' in text
    assert "'\tx" in text and "'\rx" in text
    assert not any(cell[:1] in ("=", "+", "-", "@") for cell in cells)


# =========================================================================== item 2
def test_a_notification_that_cannot_be_stored_is_a_400_and_nothing_changes(console):
    client, _job = console
    user = VppUser.objects.filter(status=VppUserStatus.INVITED).get()
    body = notification(notification={"associatedUsers": [{"clientUserId": str(user.client_user_id), "x": "\x00"}]})
    response = client.post(
        RECEIVER, json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {BEARER}"
    )
    assert response.status_code == 400 and "NUL" in response.json()["error"]
    assert not AppleNotification.objects.exists()
    user.refresh_from_db()
    assert user.status == VppUserStatus.INVITED


def test_apple_strings_longer_than_their_column_are_stored_clipped(console):
    setting = VppServerSetting.load()
    setting.location_name = "L" * 500
    setting.token_health_detail = "D\x00" * 400
    setting.save()
    user = VppUser.objects.first()
    VppUser.objects.filter(pk=user.pk).update(id_hash="h" * 300, last_error_message="e" * 900, apple_email="a" * 300)
    setting.refresh_from_db()
    user.refresh_from_db()
    assert setting.location_name == "L" * 199 + "…"
    assert "\x00" not in setting.token_health_detail and len(setting.token_health_detail) == 400
    assert (len(user.id_hash), len(user.last_error_message), len(user.apple_email)) == (200, 500, 254)


def test_a_token_whose_location_name_is_too_long_is_saved_clipped(admin_client_for_upload, vpp_sandbox):
    client = admin_client_for_upload
    token = vpp_sandbox.mint_token(org="O" * 150, location="loc-" + "x" * 150)
    VppServerSetting.objects.filter(pk=VppServerSetting.load().pk).update(api_base_url=vpp_sandbox.base_url)
    response = client.post(SETTING_URL, {"section": "token", "token_text": token})
    assert response.status_code == 302
    setting = VppServerSetting.load()
    assert setting.has_token and len(setting.location_name) == 200 and setting.location_name.endswith("…")


@pytest.fixture
def admin_client_for_upload(client, db):
    client.force_login(Admin.objects.create_superuser("uploader", password="pw-0123456789"))
    return client


def test_an_invitation_sender_with_a_line_break_is_a_form_error(console):
    client, _job = console
    audits = AuditEvent.objects.count()
    response = client.post(SETTING_URL, invitations(invitation_sender="IT <it@example.com>\r\nBcc: x@example.net"))
    assert response.status_code == 422
    assert "The sender must be one line" in response.content.decode()
    assert VppServerSetting.load().invitation_sender == "" and AuditEvent.objects.count() == audits
    response = client.post(SETTING_URL, invitations(invitation_body_text="Hello {user_name}"))
    assert response.status_code == 422 and "The body must contain {invitation_link}" in unescape(
        response.content.decode()
    )


def test_send_test_with_a_sender_saved_before_the_check_is_a_message(console, settings):
    client, _job = console
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    VppServerSetting.objects.update(invitation_sender="IT <it@example.com>\r\nBcc: x@example.net")
    response = client.post(SETTING_URL, {"send_test": "1"}, follow=True)
    assert response.status_code == 200
    assert "The test invitation could not be sent" in unescape(response.content.decode())


class _SilentSmtp:
    """A local 'mail server' that answers a fixed line on connect (or nothing at all)."""

    def __init__(self, greeting: bytes | None):
        self.greeting = greeting
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.held.append(conn)
        if self.greeting:
            conn.sendall(self.greeting)

    def close(self):
        for conn in self.held:
            conn.close()
        self.listener.close()


@pytest.mark.parametrize(
    "greeting, says",
    [(b"554 5.3.2 no service for you\r\n", "no service for you"), (None, "timed out")],
    ids=["refused", "timeout"],
)
def test_send_test_when_the_mail_server_refuses_or_times_out_is_a_message(console, settings, greeting, says):
    client, _job = console
    server = _SilentSmtp(greeting)
    settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = server.port, 0.2
    try:
        response = client.post(SETTING_URL, {"send_test": "1"}, follow=True)
    finally:
        server.close()
    assert response.status_code == 200
    html = unescape(response.content.decode())
    assert "The test invitation could not be sent" in html and says in html


def test_an_answer_from_apple_nested_absurdly_is_unreadable_not_a_crash():
    base = "https://vpp.example/mdm/v2"
    clear_service_config_cache()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{base}/service/config", body=NESTED, content_type="application/json")
        client = VppClient(
            make_stoken(), base_url=base, rate_limiter=rate_limiter(), backoff_base=0.001, backoff_max=0.002
        )
        with pytest.raises(ServiceUnavailableError, match="unreadable answer"):
            client.service_config()


def test_the_users_page_says_which_filter_it_did_not_apply(console):
    client, _job = console
    html = unescape(client.get("/users/?vpp_status=bogus&q=" + "x" * 201).content.decode())
    assert "Not understood, so not applied: q, vpp_status." in html
    assert "Not understood" not in client.get("/users/?vpp_status=invited").content.decode()


def test_a_confirmation_older_than_an_hour_is_shown_again(vpp_users):
    client, users = vpp_users
    with time_machine.travel("2026-01-01 10:00:00Z", tick=False):
        shown = confirm(client, "sync", {"pk": [users[0].pk]})
    with time_machine.travel("2026-01-01 11:00:02Z", tick=False):
        response = apply(client, "sync", dict(carried(shown)))
    assert response.status_code == 409 and "over an hour old" in response.content.decode()
    assert not Job.objects.filter(action=JobAction.SYNC).exists()
