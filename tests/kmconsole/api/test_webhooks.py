"""Webhooks: signed with HMAC-SHA256 over timestamp and body, delivered to a local receiver over
real HTTP, retried with backoff, logged per endpoint; and the agent app's push-token registration."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kmconsole.api import services, webhooks
from kmconsole.api.models import ApiToken, EnrolmentSecret, WebhookDelivery
from kmconsole.api.tasks import webhook_deliver
from tests.support.users import make_user
from users.models import Device
from vpp.signals import vpp_event

pytestmark = pytest.mark.django_db


class Receiver:
    """A local HTTP receiver: answers with ``self.statuses`` in turn (then 200), keeps what it got."""

    def __init__(self):
        self.received: list[tuple[dict, bytes]] = []
        self.statuses: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((dict(self.headers), body))
                self.send_response(outer.statuses.pop(0) if outer.statuses else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/hook"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_HTTP_LOOPBACK = True
    server = Receiver()
    yield server
    server.close()


def test_sign_and_verify():
    body = b'{"a":1}'
    header = webhooks.sign("whsec_x", body, 1_700_000_000)
    assert webhooks.verify("whsec_x", body, header, now=1_700_000_010)
    assert not webhooks.verify("whsec_y", body, header, now=1_700_000_010)  # another secret
    assert not webhooks.verify("whsec_x", b'{"a":2}', header, now=1_700_000_010)  # another body
    assert not webhooks.verify("whsec_x", body, header, now=1_700_000_000 + 301)  # replayed later
    assert not webhooks.verify("whsec_x", body, "garbage")


def test_only_https_endpoints(settings):
    settings.WEBHOOK_ALLOW_HTTP_LOOPBACK = False
    with pytest.raises(ValueError, match="https"):
        webhooks.endpoint_create(url="http://example.com/hook")
    with pytest.raises(ValueError, match="https"):
        webhooks.endpoint_create(url="http://127.0.0.1:9/hook")
    with pytest.raises(ValueError, match="Unknown event"):
        webhooks.endpoint_create(url="https://example.com/hook", events=["nope"])


def test_a_job_finished_event_reaches_the_receiver_signed(receiver, django_capture_on_commit_callbacks):
    _, secret = webhooks.endpoint_create(url=receiver.url, events=["job.finished"])
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        vpp_event.send(sender=None, event_type="job.finished", data={"job_id": 7, "status": "done"})
        vpp_event.send(sender=None, event_type="user.retired", data={})  # not subscribed
    delivery = WebhookDelivery.objects.get()
    assert len(enqueued) == 1
    assert webhooks.deliver(delivery.pk) is None
    headers, body = receiver.received[0]
    assert webhooks.verify(secret, body, headers["Kmconsole-Signature"])
    assert headers["Kmconsole-Event-Id"] == str(delivery.event_id)
    assert json.loads(body)["data"] == {"job_id": 7, "status": "done"}
    delivery.refresh_from_db()
    assert delivery.state == "delivered" and delivery.last_status_code == 200 and delivery.response_ms is not None


def test_the_job_engine_emits_job_finished(receiver, django_capture_on_commit_callbacks):
    from users.selectors import UserSelection
    from vpp.jobs.engine import job_create
    from vpp.jobs.plan import vpp_plan_build
    from vpp.models import VppUserStatus

    webhooks.endpoint_create(url=receiver.url, events=["job.finished"])
    user = make_user("Asa", vpp_status=VppUserStatus.ASSOCIATED)
    selection = UserSelection(ids=(user.pk,))
    plan = vpp_plan_build(action="invite", users=selection.users(), channel="email")
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(plan=plan, actor=None, selection=selection)  # nobody eligible: finished at once
    delivery = WebhookDelivery.objects.get(event_type="job.finished")
    assert delivery.payload["data"]["job_id"] == job.pk and delivery.payload["data"]["skipped"] == 1


def test_token_health_change_is_an_event(receiver, django_capture_on_commit_callbacks):
    from vpp.content_token import TokenCheck, token_health_store

    webhooks.endpoint_create(url=receiver.url, events=["token.health_changed"])
    with django_capture_on_commit_callbacks(execute=True):
        token_health_store(check=TokenCheck(health="expired", detail="Expired"))
        token_health_store(check=TokenCheck(health="expired", detail="Still expired"))  # no change, no event
    (delivery,) = WebhookDelivery.objects.filter(event_type="token.health_changed")
    assert delivery.payload["data"]["health"] == "expired"


def test_a_failing_receiver_is_retried_with_backoff_then_given_up(receiver):
    endpoint, _ = webhooks.endpoint_create(url=receiver.url)
    receiver.statuses = [500, 503]
    (delivery,) = webhooks.event_emit("ping", {}, endpoints=[endpoint])
    assert webhooks.deliver(delivery.pk) == webhooks.backoff_seconds(1) == 30
    delivery.refresh_from_db()
    assert delivery.state == "pending" and delivery.last_status_code == 500 and delivery.next_retry_at
    assert webhooks.deliver(delivery.pk) == 60
    assert webhooks.deliver(delivery.pk) is None  # third time lucky
    delivery.refresh_from_db()
    assert delivery.state == "delivered" and delivery.attempts == 3
    ids = {headers["Kmconsole-Event-Id"] for headers, _ in receiver.received}
    assert ids == {str(delivery.event_id)}  # the same event id on every retry
    receiver.statuses = [500] * webhooks.MAX_ATTEMPTS
    (doomed,) = webhooks.event_emit("ping", {}, endpoints=[endpoint])
    for _ in range(webhooks.MAX_ATTEMPTS):
        webhooks.deliver(doomed.pk)
    doomed.refresh_from_db()
    assert doomed.state == "failed" and doomed.next_retry_at is None


def test_the_task_asks_celery_to_retry_a_failed_delivery(receiver):
    from celery.exceptions import Retry

    endpoint, _ = webhooks.endpoint_create(url=receiver.url)
    receiver.statuses = [502]
    (delivery,) = webhooks.event_emit("ping", {}, endpoints=[endpoint])
    with pytest.raises(Retry):
        webhook_deliver.apply(args=[delivery.pk], throw=True).get()


def test_a_dead_receiver_never_raises_into_the_caller(settings):
    settings.WEBHOOK_ALLOW_HTTP_LOOPBACK = True
    endpoint, _ = webhooks.endpoint_create(url="http://127.0.0.1:9/closed")
    (delivery,) = webhooks.event_emit("ping", {}, endpoints=[endpoint])
    started = time.monotonic()
    assert webhooks.deliver(delivery.pk) == 30
    delivery.refresh_from_db()
    assert "ConnectionError" in delivery.last_error and time.monotonic() - started < webhooks.TIMEOUT + 5


def test_send_test_button_and_delivery_log(admin_client, receiver, django_capture_on_commit_callbacks):
    response = admin_client.post("/setting/api/webhooks/", {"url": receiver.url, "description": "SIEM"})
    assert response.status_code == 201 and "whsec_" in response.content.decode()
    endpoint = webhooks.WebhookEndpoint.objects.get()
    with django_capture_on_commit_callbacks(execute=False):
        admin_client.post(f"/setting/api/webhooks/{endpoint.pk}/test/")
    webhooks.deliver(WebhookDelivery.objects.get(event_type="ping").pk)
    page = admin_client.get("/setting/api/webhooks/").content.decode()
    assert "whsec_" not in page  # the secret is shown once
    assert "Delivered" in page and " ms" in page
    refused = admin_client.post("/setting/api/webhooks/", {"url": "ftp://example.com"})
    assert refused.status_code == 422


# --------------------------------------------------------------------------- agent app


def _register(client, secret, token):
    body = {"push_token": token}
    path = "/api/v1/agent/push-token"
    return client.post(path, body, content_type="application/json", HTTP_X_ENROLMENT_SECRET=secret)


def test_the_agent_app_registers_its_push_token(client, admin_user):
    user = make_user("Ada")
    device = user.devices.get()
    row, secret = services.enrolment_secret_issue(device=device, admin=admin_user)
    response = _register(client, secret, "AB" * 32)
    assert response.status_code == 200, response.content
    device.refresh_from_db()
    assert device.push_token == "ab" * 32
    assert _register(client, secret, "cd" * 32).status_code == 200  # a refresh replaces it
    device.refresh_from_db()
    assert device.push_token == "cd" * 32
    assert _register(client, secret, "not hex").status_code == 422
    assert _register(client, "kme_wrong", "ef" * 32).status_code == 401
    services.enrolment_secret_revoke(row)
    assert _register(client, secret, "ef" * 32).status_code == 401
    device.refresh_from_db()
    assert device.push_token == "cd" * 32


def test_a_token_moves_to_the_device_that_registers_it(client, admin_user):
    one = make_user("One").devices.get()
    two = make_user("Two").devices.get()
    Device.objects.filter(pk=one.pk).update(push_token="aa" * 32)
    _, secret = services.enrolment_secret_issue(device=two, admin=admin_user)
    _register(client, secret, "aa" * 32)
    assert Device.objects.get(pk=one.pk).push_token == ""
    assert Device.objects.get(pk=two.pk).push_token == "aa" * 32


def test_registration_is_rate_limited_per_secret(client, admin_user):
    device = make_user("Ada").devices.get()
    _, secret = services.enrolment_secret_issue(device=device, admin=admin_user)
    codes = [_register(client, secret, "ab" * 32).status_code for _ in range(services.ENROLMENT_RATE_LIMIT + 1)]
    assert codes[:-1] == [200] * services.ENROLMENT_RATE_LIMIT and codes[-1] == 429


def test_enrolment_page_issues_and_revokes(admin_client):
    device = make_user("Ada").devices.get()
    Device.objects.filter(pk=device.pk).update(serial_number="C02XYZ")
    response = admin_client.post("/setting/api/enrolment/", {"device": "C02XYZ"})
    assert response.status_code == 201 and "kme_" in response.content.decode()
    row = EnrolmentSecret.objects.get()
    admin_client.post(f"/setting/api/enrolment/{row.pk}/revoke/")
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert admin_client.post("/setting/api/enrolment/", {"device": "nope"}).status_code == 422


def test_tokens_page_creates_shows_once_and_revokes(admin_client):
    form = {"name": "CI", "scopes": ["users.view_user"], "expires_days": "30"}
    response = admin_client.post("/setting/api/tokens/", form)
    assert response.status_code == 201
    secret = response.context["secret"]
    assert secret.startswith("kmc_") and secret not in admin_client.get("/setting/api/tokens/").content.decode()
    token = ApiToken.objects.get()
    admin_client.post(f"/setting/api/tokens/{token.pk}/revoke/")
    assert admin_client.get("/api/v1/users", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 401


def test_a_failing_listener_never_fails_the_event_source(django_capture_on_commit_callbacks, monkeypatch):
    from vpp.signals import vpp_event_after_commit

    def broken(event_type, data, **kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(webhooks, "event_emit", broken)
    with django_capture_on_commit_callbacks(execute=True):
        vpp_event_after_commit("job.finished", {"job_id": 1})  # raises nothing
