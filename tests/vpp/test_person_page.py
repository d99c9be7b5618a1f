"""A person's page (/users/<id>/): devices, the VPP user, the timeline, the helpdesk link and
its QR code, the licences read live from the sandbox over real HTTP, the one-user actions."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from tests.support.job_loop import run_job
from tests.support.sandbox import Api, store_sandbox_token
from tests.support.users import make_user
from users.forms import UserSelectionForm
from users.models import ActivationState as S
from users.models import Platform as P
from vpp.bulk_views import _plan_for
from vpp.content_token import vpp_client
from vpp.jobs.engine import job_create
from vpp.models import AuditEvent, InvitationDelivery, Job, JobAction, JobItem, JobStatus, VppUser, VppUserStatus

pytestmark = pytest.mark.django_db
PAGES, NUMBERS = "361309726", "361304891"  # apps of the sandbox's catalogue


def login(client, *codenames):
    Admin = get_user_model()
    admin = Admin.objects.create_user(f"admin{Admin.objects.count()}", password="pw-0123456789")
    admin.user_permissions.add(*Permission.objects.filter(content_type__app_label="vpp", codename__in=codenames))
    client.force_login(admin)
    return admin


def test_the_page_shows_devices_the_vpp_user_a_shared_account_and_the_timeline(client, token_setting):
    login(client, "delete_vppuser")
    person = make_user(
        "Ada Lovelace",
        devices=[(P.IOS, S.ACTIVATED, "push-token-1"), (P.MACOS, S.DEACTIVATED)],
        vpp_status=VppUserStatus.ASSOCIATED,
        vpp_fields={"id_hash": "hash-shared-1"},
    )
    make_user("Ada's twin", vpp_status=VppUserStatus.ASSOCIATED, vpp_fields={"id_hash": "hash-shared-1"})
    vpp_user = VppUser.objects.get(user=person)
    job = Job.objects.create(action=JobAction.INVITE, total=1, status=JobStatus.DONE)
    JobItem.objects.create(job=job, user=person, vpp_user=vpp_user, status="succeeded", user_label="Ada")
    InvitationDelivery.objects.create(vpp_user=vpp_user, channel="email", job=job, link="https://x/1", state="sent")
    AuditEvent.objects.create(actor_name="boss", action="vpp.invite", target_summary="1 selected user", job=job)

    html = client.get(f"/users/{person.pk}/").content.decode()
    assert "Ada Lovelace" in html and "iOS" in html and "macOS" in html
    assert html.count("Present") == 1  # one device with a push token
    assert str(vpp_user.client_user_id) in html
    assert 'id="shared-account-warning"' in html and "1 other VPP user" in html
    assert f"Invitation to {person.email}" in html
    assert f'href="/vpp/jobs/{job.pk}/"' in html
    assert "Send VPP invitation: succeeded" in html and "by boss" in html
    assert "Invitation accepted" in html
    assert f'hx-get="/vpp/users/{person.pk}/licences/"' in html
    # The actions post a one-user selection to the bulk confirmation.
    assert f'name="pk" value="{person.pk}"' in html and 'hx-post="/vpp/bulk/delete/confirm/"' in html
    assert 'hx-post="/vpp/bulk/invite/confirm/"' not in html  # the same permissions as the bulk actions
    assert "style=" not in html


def test_the_users_table_links_each_name_to_the_page(client):
    login(client)
    person = make_user("Grace Hopper")
    html = client.get("/users/").content.decode()
    assert f'<a class="cell-main person-link" href="/users/{person.pk}/">Grace Hopper</a>' in html
    assert client.get("/users/999999/").status_code == 404


def test_revealing_the_link_is_audited_and_shows_a_qr_code(client):
    person = make_user("Lin", email="", vpp_status=VppUserStatus.INVITED, vpp_fields={"invite_code": "CODE123"})
    vpp_user = VppUser.objects.get(user=person)
    job = Job.objects.create(action=JobAction.INVITE, total=1)
    link = "https://buy.itunes.apple.com/associate?inviteCode=CODE123"
    InvitationDelivery.objects.create(vpp_user=vpp_user, channel="helpdesk", job=job, link=link, state="sent")

    login(client)  # no invite permission: refused, nothing recorded
    refused = client.post(f"/vpp/users/{person.pk}/invitation-link/", HTTP_HX_REQUEST="true")
    assert refused.status_code == 403 and link not in refused.content.decode()
    assert not AuditEvent.objects.filter(action="vpp.person.invitation_link_shown").exists()

    actor = login(client, "invite_vppuser")
    shown = client.post(f"/vpp/users/{person.pk}/invitation-link/", HTTP_HX_REQUEST="true").content.decode()
    assert f'value="{link}"' in shown
    assert "<svg" in shown and "segno" in shown and "style=" not in shown
    event = AuditEvent.objects.get(action="vpp.person.invitation_link_shown")
    assert event.actor == actor and f"device user #{person.pk} (" in event.target_summary
    assert "Invitation link shown at the helpdesk" in client.get(f"/users/{person.pk}/").content.decode()


def test_no_link_without_an_invitation(client):
    login(client, "invite_vppuser")
    person = make_user("Never invited")
    answer = client.post(f"/vpp/users/{person.pk}/invitation-link/", HTTP_HX_REQUEST="true").content.decode()
    assert "Send a VPP invitation first" in answer
    assert not AuditEvent.objects.exists()


# --------------------------------------------------------------------------- over real HTTP


@pytest.fixture
def sandbox_setting(vpp_sandbox, settings):
    settings.VPP_EVENT_POLL_INTERVAL = 1
    return store_sandbox_token(vpp_sandbox)


@pytest.mark.sandbox
def test_the_licences_come_live_from_apple(client, vpp_sandbox, sandbox_setting):
    login(client)
    person = make_user("Holder", vpp_status=VppUserStatus.ASSOCIATED, at_apple=vpp_client(sandbox_setting))
    other = make_user("Other", vpp_status=VppUserStatus.ASSOCIATED, at_apple=vpp_client(sandbox_setting))
    api = Api(vpp_sandbox)
    cuid, other_cuid = (str(VppUser.objects.get(user=u).client_user_id) for u in (person, other))
    body = {"assets": [{"adamId": a, "pricingParam": "STDQ"} for a in (PAGES, NUMBERS)], "clientUserIds": [cuid]}
    api.finished(api.ok("POST", "/assets/associate", body)["eventId"])
    body = {"assets": [{"adamId": PAGES, "pricingParam": "STDQ"}], "clientUserIds": [other_cuid]}
    api.finished(api.ok("POST", "/assets/associate", body)["eventId"])

    html = client.get(f"/vpp/users/{person.pk}/licences/").content.decode()
    assert PAGES in html and NUMBERS in html and "2 licences" in html
    html = client.get(f"/vpp/users/{other.pk}/licences/").content.decode()
    assert PAGES in html and NUMBERS not in html and "1 licence." in html

    vpp_sandbox.control(fail_next=10, fail_status=503)  # Apple down: a message, not an error page
    answer = client.get(f"/vpp/users/{person.pk}/licences/")
    assert answer.status_code == 200 and "Apple could not be asked right now" in answer.content.decode()
    assert PAGES not in answer.content.decode()


@pytest.mark.sandbox
def test_the_licences_when_apple_is_unreachable_or_no_token(client, sandbox_setting):
    login(client)
    person = make_user("Holder", vpp_status=VppUserStatus.ASSOCIATED)
    sandbox_setting.api_base_url = "http://127.0.0.1:9/mdm/v2"  # nothing listens on port 9
    sandbox_setting.save()
    assert "could not be" in client.get(f"/vpp/users/{person.pk}/licences/").content.decode()
    sandbox_setting.content_token_encrypted = ""
    sandbox_setting.save()
    assert "No content token" in client.get(f"/vpp/users/{person.pk}/licences/").content.decode()
    nobody = make_user("Not VPP")
    assert "Not a VPP user" in client.get(f"/vpp/users/{nobody.pk}/licences/").content.decode()


@pytest.mark.sandbox
def test_a_user_without_email_or_push_is_invited_for_the_helpdesk(client, vpp_sandbox, sandbox_setting):
    login(client, "invite_vppuser")
    person = make_user("No Contact", email="")
    one = {"pk": [str(person.pk)]}

    def confirm(data):
        body = urlencode(data, doseq=True)
        url = "/vpp/bulk/invite/confirm/"
        return client.post(url, body, content_type="application/x-www-form-urlencoded", HTTP_HX_REQUEST="true")

    assert "No email address" in confirm(one).content.decode()  # the setting's channel cannot reach them
    html = confirm({**one, "channel": "helpdesk"}).content.decode()
    assert "the helpdesk (link and qr code" in html and 'name="channel" value="helpdesk"' in html
    # ... and only for one ticked user, never for a whole filter.
    form = UserSelectionForm({"select_all": "1", "channel": "helpdesk"})
    assert form.is_valid()

    class Post:
        POST = {"channel": "helpdesk"}

    assert _plan_for(Post, JobAction.INVITE, form, sandbox_setting).channel != "helpdesk"

    form = UserSelectionForm(one)
    assert form.is_valid()
    plan = _plan_for(Post, JobAction.INVITE, form, sandbox_setting)
    job = run_job(job_create(plan=plan, actor=None, selection=form.selection()), vpp_client(sandbox_setting))
    assert (job.status, job.succeeded) == (JobStatus.DONE, 1)
    vpp_user = VppUser.objects.get(user=person)
    assert vpp_user.status == VppUserStatus.INVITED and vpp_user.invite_code
    delivery = InvitationDelivery.objects.get(vpp_user=vpp_user)
    assert delivery.channel == "helpdesk" and vpp_user.invite_code in delivery.link

    shown = client.post(f"/vpp/users/{person.pk}/invitation-link/", HTTP_HX_REQUEST="true").content.decode()
    assert vpp_user.invite_code in shown and "<svg" in shown
    page = client.get(f"/users/{person.pk}/").content.decode()
    assert "Invitation for the helpdesk" in page and "Invitation link shown at the helpdesk" in page


def test_job_results_link_each_user_to_their_page(client):
    login(client)
    person = make_user("Linked")
    job = Job.objects.create(action=JobAction.INVITE, total=2, status=JobStatus.DONE)
    JobItem.objects.create(job=job, user=person, status="succeeded", user_label="Linked (user1)")
    JobItem.objects.create(job=job, user=None, status="failed", user_label="Deleted since (gone)")
    html = client.get(f"/vpp/jobs/{job.pk}/").content.decode()
    assert f'href="/users/{person.pk}/">Linked (user1)</a>' in html
    assert '<span class="cell-main">Deleted since (gone)</span>' in html


def test_the_timeline_shows_retirement_errors_and_a_former_units_vpp_user(client):
    login(client)
    person = make_user(
        "Retiree",
        vpp_status=VppUserStatus.RETIRED,
        vpp_fields={"last_error_number": 9610, "last_error_message": "No longer listed by Apple"},
    )
    old = VppUser.objects.create(user=None, former_user=person, status=VppUserStatus.ASSOCIATED, unit_uid="old-unit")
    html = client.get(f"/users/{person.pk}/").content.decode()
    assert "Retired from VPP" in html
    assert "Apple error 9610: No longer listed by Apple" in html
    assert f"clientUserId {old.client_user_id}" in html  # the earlier unit's VPP user stays in the history
    current = VppUser.objects.get(user=person)
    assert f'<dt>clientUserId</dt><dd class="mono">{current.client_user_id}</dd>' in html


def test_a_reminder_round_shows_as_a_reminder(client):
    login(client)
    person = make_user("Reminded", vpp_status=VppUserStatus.INVITED)
    vpp_user = VppUser.objects.get(user=person)
    job = Job.objects.create(action="reminders", total=1, status=JobStatus.DONE)
    InvitationDelivery.objects.create(vpp_user=vpp_user, channel="email", job=job, link="https://x/2", state="sent")
    html = client.get(f"/users/{person.pk}/").content.decode()
    assert f"Reminder to {person.email}" in html


def test_an_audit_event_of_the_page_names_its_person():
    from vpp.person import audit_event_person

    summary = "Showed the invitation link of device user #42 (ada), clientUserId x."
    assert audit_event_person(AuditEvent(action="vpp.person.invitation_link_shown", target_summary=summary)) == 42
    assert audit_event_person(AuditEvent(action="vpp.invite", target_summary=summary)) is None
    assert audit_event_person(AuditEvent(action="vpp.person.x", target_summary="3 selected users")) is None


def test_the_audit_log_links_a_shown_link_to_the_persons_page(client):
    person = make_user("Lin", email="", vpp_status=VppUserStatus.INVITED, vpp_fields={"invite_code": "CODE9"})
    job = Job.objects.create(action=JobAction.INVITE, total=1)
    link = "https://buy.itunes.apple.com/associate?inviteCode=CODE9"
    vpp_user = VppUser.objects.get(user=person)
    InvitationDelivery.objects.create(vpp_user=vpp_user, channel="helpdesk", job=job, link=link, state="sent")
    admin = login(client, "invite_vppuser")
    admin.is_superuser = True  # the audit log is an Administrator's page
    admin.save()
    client.post(f"/vpp/users/{person.pk}/invitation-link/", HTTP_HX_REQUEST="true")
    html = client.get("/setting/audit-log/").content.decode()
    assert "Invitation link shown (helpdesk, person page)" in html
    assert f'href="/users/{person.pk}/">Open the person' in html
