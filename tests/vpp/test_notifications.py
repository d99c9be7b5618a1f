"""Apple's notification receiver: auth, de-duplication, effects, malformed bodies."""

from __future__ import annotations

import json
import logging

import pytest
from django.urls import reverse

from vpp import secrets as vault
from vpp.models import AppleNotification, VppServerSetting, VppUser, VppUserStatus
from vpp.services.notifications import MAX_BODY_BYTES

BEARER = "bearer-secret-for-tests"
URL = "/vpp/notifications/"


@pytest.fixture
def configured(db):
    setting = VppServerSetting.load()
    setting.notification_auth_token_encrypted = vault.encrypt(BEARER)
    setting.save()
    return setting


def post(client, body, token=BEARER, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(URL, data=data, content_type="application/json", **headers, **extra)


def associated(notification_id, client_user_id, id_hash="hash-1"):
    return {
        "notificationId": notification_id,
        "notificationType": "USER_ASSOCIATED",
        "uId": "2049",
        "notification": {
            "associatedUsers": [{"clientUserId": str(client_user_id), "status": "Associated", "idHash": id_hash}]
        },
    }


def test_it_resolves_the_receiver_url():
    assert reverse("vpp-notifications") == URL


@pytest.mark.parametrize("token", [None, "wrong", "", BEARER + "x"])
def test_it_refuses_a_missing_or_wrong_bearer_and_changes_nothing(client, configured, token):
    user = VppUser.objects.create(status=VppUserStatus.INVITED)
    response = post(client, associated("n-1", user.client_user_id), token=token)
    assert response.status_code == 401
    assert not AppleNotification.objects.exists()
    user.refresh_from_db()
    assert user.status == VppUserStatus.INVITED


def test_it_refuses_everything_when_notifications_were_never_configured(client, db):
    assert post(client, {"notificationId": "t", "notificationType": "TEST_NOTIFICATION"}, token="").status_code == 401


def test_it_answers_the_test_notification(client, configured):
    response = post(client, {"notificationId": "t-1", "notificationType": "TEST_NOTIFICATION", "notification": {}})
    assert response.status_code == 200
    assert response.json() == {"received": "TEST_NOTIFICATION", "duplicate": False}


def test_it_marks_a_user_associated_at_once_and_only_once(client, configured):
    user = VppUser.objects.create(status=VppUserStatus.INVITED, invite_code="abc")
    assert post(client, associated("n-1", user.client_user_id, "h-1")).json()["duplicate"] is False
    user.refresh_from_db()
    assert (user.status, user.id_hash) == (VppUserStatus.ASSOCIATED, "h-1")
    # Apple retries delivery: the same notificationId is acknowledged and ignored.
    VppUser.objects.filter(pk=user.pk).update(id_hash="changed-since")
    again = post(client, associated("n-1", user.client_user_id, "h-1"))
    assert again.status_code == 200 and again.json()["duplicate"] is True
    user.refresh_from_db()
    assert user.id_hash == "changed-since"
    assert AppleNotification.objects.count() == 1


def test_it_does_not_revive_a_retired_user(client, configured):
    user = VppUser.objects.create(status=VppUserStatus.RETIRED)
    post(client, associated("n-2", user.client_user_id))
    user.refresh_from_db()
    assert user.status == VppUserStatus.RETIRED


def test_it_stores_user_management_results_by_event(client, configured):
    body = {
        "notificationId": "um-1",
        "notificationType": "USER_MANAGEMENT",
        "notification": {
            "eventId": "ev-9",
            "type": "CREATE",
            "result": "SUCCESS",
            "users": [{"clientUserId": "c-1", "status": "Registered", "inviteCode": "i-1"}],
        },
    }
    assert post(client, body).status_code == 200
    stored = AppleNotification.objects.for_event("ev-9").get()
    assert (stored.event_type, stored.result) == ("CREATE", "SUCCESS")
    assert stored.payload["users"][0]["inviteCode"] == "i-1"


def test_it_records_asset_management(client, configured):
    body = {
        "notificationId": "am-1",
        "notificationType": "ASSET_MANAGEMENT",
        "notification": {"eventId": "ev-3", "type": "REVOKE", "result": "SUCCESS", "assignments": []},
    }
    assert post(client, body).status_code == 200
    assert AppleNotification.objects.get(notification_id="am-1").event_type == "REVOKE"


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b"\xff\xfe\x00binary",
        b"[1, 2, 3]",
        b'{"notificationType": "TEST_NOTIFICATION"}',
        b'{"notificationId": "x", "notificationType": 7}',
        b'{"notificationId": "x", "notificationType": "USER_ASSOCIATED", "notification": "nope"}',
    ],
)
def test_it_rejects_malformed_bodies_and_logs_without_secrets(client, configured, body, caplog):
    with caplog.at_level(logging.WARNING):
        response = post(client, body)
    assert response.status_code == 400
    assert not AppleNotification.objects.exists()
    assert "malformed Apple notification" in caplog.text
    assert BEARER not in caplog.text


def test_it_caps_the_body_size(client, configured):
    huge = json.dumps(
        {
            "notificationId": "big",
            "notificationType": "TEST_NOTIFICATION",
            "notification": {"pad": "x" * MAX_BODY_BYTES},
        }
    )
    assert post(client, huge).status_code == 413
    assert not AppleNotification.objects.exists()


def test_it_only_accepts_post(client, configured):
    assert client.get(URL, HTTP_AUTHORIZATION=f"Bearer {BEARER}").status_code == 405
