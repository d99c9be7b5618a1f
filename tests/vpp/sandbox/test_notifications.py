"""Client config notification settings and the notifications Apple would send."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.sandbox

SECRET = "shared-secret-123"


def subscribe(api, receiver, **extra) -> dict:
    return api.ok("POST", "/client/config", {"notificationUrl": receiver.url, "notificationAuthToken": SECRET, **extra})


def test_it_sends_a_test_notification_with_the_bearer_token_when_configured(api, receiver):
    config = subscribe(api, receiver, notificationTypes=["USER_MANAGEMENT", "USER_ASSOCIATED"])
    assert config["notificationUrl"] == receiver.url
    assert config["subscribedNotificationTypes"] == ["USER_MANAGEMENT", "USER_ASSOCIATED"]
    ((headers, body),) = receiver.received
    assert headers["Authorization"] == f"Bearer {SECRET}"
    assert body["notificationType"] == "TEST_NOTIFICATION"
    assert body["notification"] == {}
    assert body["uId"] == config["uId"]
    assert body["notificationId"]


def test_it_rejects_the_configuration_with_9728_when_the_test_notification_fails(api, receiver):
    receiver.statuses = [500]
    api.error(api.post("/client/config", {"notificationUrl": receiver.url, "notificationAuthToken": SECRET}), 9728, 400)
    assert "notificationUrl" not in api.ok("GET", "/client/config")


def test_it_rejects_an_unreachable_url_with_9728(api):
    body = {"notificationUrl": "http://127.0.0.1:9/nothing", "notificationAuthToken": SECRET}
    api.error(api.post("/client/config", body), 9728, 400)


@pytest.mark.parametrize(
    ("body", "number"),
    [
        ({"notificationUrl": "https://console.example/n"}, 9710),
        ({"notificationAuthToken": SECRET}, 9710),
        ({"notificationUrl": "https://console.example/" + "n" * 600, "notificationAuthToken": SECRET}, 9711),
        ({"notificationUrl": "https://console.example/n", "notificationAuthToken": "t" * 513}, 9711),
        ({"notificationUrl": "http://console.example/n", "notificationAuthToken": SECRET}, 9712),
        ({"notificationUrl": "ftp://127.0.0.1/n", "notificationAuthToken": SECRET}, 9712),
        ({"notificationUrl": "not a url", "notificationAuthToken": SECRET}, 9712),
        ({"notificationTypes": ["NOPE"]}, 9602),
    ],
)
def test_it_validates_notification_settings(api, body, number):
    api.error(api.post("/client/config", body), number, 400)


def test_it_allows_plain_http_to_other_hosts_only_when_started_so(api, vpp_sandbox):
    vpp_sandbox.control(allow_http_notifications=True)
    body = {"notificationUrl": "http://192.0.2.1/n", "notificationAuthToken": SECRET}
    api.error(api.post("/client/config", body), 9728, 400)  # allowed, but nobody answers there


def test_it_clears_notifications_with_empty_url_and_token(api, receiver):
    subscribe(api, receiver)
    config = api.ok("POST", "/client/config", {"notificationUrl": "", "notificationAuthToken": ""})
    assert "notificationUrl" not in config


def test_it_sends_user_management_notifications_for_finished_events(api, vpp_sandbox, receiver):
    subscribe(api, receiver)
    api.finished(api.create({"clientUserId": "ok"}))
    event_id = api.create({"clientUserId": "ok"}, {"clientUserId": "new"})
    api.finished(event_id)
    notes = vpp_sandbox.wait_for(
        lambda: len(receiver.of_type("USER_MANAGEMENT")) >= 3 and receiver.of_type("USER_MANAGEMENT")
    )
    assert all(h["Authorization"] == f"Bearer {SECRET}" for h, _ in notes)
    second = [b["notification"] for _, b in notes if b["notification"]["eventId"] == event_id]
    success = next(n for n in second if n["result"] == "SUCCESS")
    failure = next(n for n in second if n["result"] == "FAILURE")
    assert success["type"] == "CREATE"
    assert [(u["clientUserId"], u["status"]) for u in success["users"]] == [("new", "Registered")]
    assert success["users"][0]["inviteCode"]
    assert failure["error"]["errorNumber"] == 9716
    assert failure["error"]["errorInfo"]["clientUserIds"] == ["ok"]


def test_it_splits_notifications_at_100_users(api, vpp_sandbox, receiver):
    subscribe(api, receiver)
    vpp_sandbox.control(limits={"maxUsers": 250})
    api.finished(api.create(*({"clientUserId": f"u{i}"} for i in range(250))))
    notes = vpp_sandbox.wait_for(
        lambda: len(receiver.of_type("USER_MANAGEMENT")) >= 3 and receiver.of_type("USER_MANAGEMENT")
    )
    assert sorted(len(b["notification"]["users"]) for _, b in notes) == [50, 100, 100]


def test_it_only_sends_subscribed_types(api, vpp_sandbox, receiver):
    subscribe(api, receiver, notificationTypes=["USER_ASSOCIATED"])
    api.finished(api.create({"clientUserId": "u1"}))
    vpp_sandbox.advance()
    assert [d["notificationType"] for d in vpp_sandbox.notifications()] == []


def test_it_retries_a_failed_delivery_up_to_three_times(api, vpp_sandbox, receiver):
    subscribe(api, receiver)
    receiver.statuses = [503, 500]
    api.finished(api.create({"clientUserId": "u1"}))
    delivered = vpp_sandbox.wait_for(lambda: [d for d in vpp_sandbox.notifications() if d["delivered"]])
    assert [d["attempts"] for d in delivered] == [3]
    assert len(receiver.of_type("USER_MANAGEMENT")) == 3


def test_it_gives_up_after_three_attempts(api, vpp_sandbox, receiver):
    subscribe(api, receiver)
    receiver.statuses = [500, 500, 500, 500]
    api.finished(api.create({"clientUserId": "u1"}))
    vpp_sandbox.wait_for(lambda: len(receiver.of_type("USER_MANAGEMENT")) >= 3)
    ((delivery),) = vpp_sandbox.wait_for(lambda: [d for d in vpp_sandbox.notifications() if d["attempts"] == 3])
    assert (delivery["delivered"], delivery["lastStatus"]) == (False, 500)
    assert len(receiver.of_type("USER_MANAGEMENT")) == 3


def test_it_drops_notifications_when_asked(api, vpp_sandbox, receiver):
    subscribe(api, receiver)
    vpp_sandbox.control(drop_notifications=True)
    api.finished(api.create({"clientUserId": "u1"}))
    (delivery,) = vpp_sandbox.wait_for(vpp_sandbox.notifications)
    assert (delivery["dropped"], delivery["attempts"]) == (True, 0)
    assert receiver.of_type("USER_MANAGEMENT") == []
