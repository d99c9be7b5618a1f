"""One invitation message: "Send test to me" mails exactly what a device user gets, only the link is a sample."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core import mail
from django.urls import reverse
from django.utils.html import escape

from tests.support.job_loop import run_job
from users.models import User
from users.selectors import UserSelection
from vpp.invitations.channels import Invitation
from vpp.invitations.email import EmailChannel
from vpp.invitations.message import SAMPLE_LINK, push_alert
from vpp.jobs.engine import job_create
from vpp.jobs.plan import vpp_plan_build
from vpp.models import JobAction, VppServerSetting, VppUser

pytestmark = pytest.mark.django_db

NAME, EMAIL = "Alex Admin", "alex@example.com"
CUSTOM_TEXT = "Hi {user_name}, {organisation} says: {invitation_link} {{literal}}"
CUSTOM_HTML = '<p>Hi {user_name} &amp; co, <a href="{invitation_link}">join {organisation}</a></p>'


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.VPP_EVENT_POLL_INTERVAL = 0
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def _real_invitation(apple, user: User):
    """The email an invite job sends this device user, and the link in it."""
    plan = vpp_plan_build(action=JobAction.INVITE, users=User.objects.filter(pk=user.pk), channel="email")
    run_job(job_create(plan=plan, actor=None, selection=UserSelection(ids=(user.pk,)), ip="127.0.0.1"), apple)
    [message] = mail.outbox
    mail.outbox.clear()
    code = VppUser.objects.get(user=user).invite_code
    return message, apple.service_config().invitation_url(code)


def _send_test(client, django_user_model):
    """An admin with the device user's name and address presses "Send test to me"."""
    first, last = NAME.split()
    admin = django_user_model.objects.create_user("alex", email=EMAIL, first_name=first, last_name=last)
    admin.user_permissions.add(Permission.objects.get(codename="change_vppserversetting"))
    client.force_login(admin)
    assert client.post(reverse("vpp:server-setting"), {"send_test": "1"}).status_code == 302
    [message] = mail.outbox
    return message


@pytest.mark.parametrize(
    "templates",
    [
        pytest.param({}, id="default templates"),  # the default has no HTML template
        pytest.param({"invitation_body_text": CUSTOM_TEXT}, id="custom text, no HTML template"),
        pytest.param(
            {
                "invitation_sender": "IT <it@example.com>",
                "invitation_subject": "{organisation}: apps for {user_name}",
                "invitation_body_text": CUSTOM_TEXT,
                "invitation_body_html": CUSTOM_HTML,
            },
            id="custom text and HTML",
        ),
    ],
)
def test_send_test_mails_the_real_invitation(client, django_user_model, apple, token_setting, user_factory, templates):
    VppServerSetting.objects.filter(pk=token_setting.pk).update(token_org_name="Acme & Sons", **templates)
    real, real_link = _real_invitation(apple, user_factory(name=NAME, email=EMAIL))
    test = _send_test(client, django_user_model)

    assert (test.subject, test.to, test.from_email) == (real.subject, real.to, real.from_email)
    assert test.body == real.body.replace(real_link, SAMPLE_LINK)
    assert [kind for _, kind in test.alternatives] == [kind for _, kind in real.alternatives] == ["text/html"]
    assert test.alternatives[0][0] == real.alternatives[0][0].replace(escape(real_link), escape(SAMPLE_LINK))
    # The link reaches the reader the same way in both, and only the test is marked as one.
    for message, link in ((real, real_link), (test, SAMPLE_LINK)):
        assert link in message.body
        assert f'href="{escape(link)}"' in message.alternatives[0][0]
    assert test.extra_headers == {"X-Kmconsole-Test": "1"}
    assert "X-Kmconsole-Test" not in real.extra_headers
    assert "Acme &amp; Sons" in test.alternatives[0][0] and NAME in test.body


def test_the_push_title_is_the_email_subject():
    setting = VppServerSetting(invitation_subject="Apps\nfrom {organisation} for {user_name}")
    user = User(display_name="Line\r\nBreak", email="lb@example.com")
    invitation = Invitation(1, user, "https://apple.example/i?c=1", "Acme")
    title, body = push_alert(invitation, setting=setting)
    assert title == EmailChannel().build(invitation, setting=setting).subject == "Apps from Acme for Line Break"
    assert body == "Tap to join and receive apps and books from Acme."
