"""/api/v1/: device users, devices, VPP users, the setting's health, errors as JSON."""

from __future__ import annotations

import pytest

from tests.support.users import make_user
from users.models import ActivationState, Device, Platform, User
from vpp.models import AuditEvent, VppUserStatus

pytestmark = pytest.mark.django_db


def test_users_list_uses_the_users_page_filters_and_paging(api):
    make_user("Ada", vpp_status=VppUserStatus.INVITED)
    make_user("Bob")
    make_user("Cy", platform=Platform.ANDROID)
    response = api.get("/api/v1/users", {"vpp_status": "invited"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert [row["display_name"] for row in body["results"]] == ["Ada"]
    assert body["results"][0]["vpp_status"] == "invited"
    page = api.get("/api/v1/users", {"size": 25, "sort": "-name"}).json()
    assert [row["display_name"] for row in page["results"]] == ["Cy", "Bob", "Ada"]
    assert api.get("/api/v1/users", {"platform": "android"}).json()["count"] == 1


def test_a_filter_it_does_not_understand_is_a_422_naming_the_field(api):
    response = api.get("/api/v1/users", {"size": 7})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "size"
    response = api.get("/api/v1/users", {"platform": "beos"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "platform"


def test_create_update_deactivate_a_device_user(api):
    response = api.post(
        "/api/v1/users",
        {"display_name": "Dee", "login_id": "dee", "email": "dee@example.com"},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    pk = response.json()["id"]
    again = api.post("/api/v1/users", {"display_name": "Dee", "login_id": "dee"}, content_type="application/json")
    assert again.status_code == 409
    bad = api.post(
        "/api/v1/users", {"display_name": "X", "login_id": "x", "email": "nope"}, content_type="application/json"
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "email"
    patched = api.patch(f"/api/v1/users/{pk}", {"department": "Sales"}, content_type="application/json")
    assert patched.json()["department"] == "Sales"
    assert api.post(f"/api/v1/users/{pk}/deactivate").json()["is_active"] is False
    assert User.objects.get(pk=pk).is_active is False
    assert api.get("/api/v1/users/999999").status_code == 404
    assert api.get("/api/v1/users/99999999999999999999").status_code == 422


def test_devices_create_update_deactivate(api):
    user = make_user("Eve", devices=())
    created = api.post(
        f"/api/v1/users/{user.pk}/devices",
        {"platform": "ios", "activation_state": "activated"},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    device_id = created.json()["id"]
    assert User.objects.get(pk=user.pk).has_activated_apple_device
    api.post(f"/api/v1/devices/{device_id}/deactivate")
    assert Device.objects.get(pk=device_id).activation_state == ActivationState.DEACTIVATED
    assert not User.objects.get(pk=user.pk).has_activated_apple_device
    assert [d["id"] for d in api.get(f"/api/v1/users/{user.pk}/devices").json()] == [device_id]


def test_vpp_user_and_health(api, token_setting):
    user = make_user("Fay", vpp_status=VppUserStatus.ASSOCIATED)
    body = api.get(f"/api/v1/users/{user.pk}/vpp").json()
    assert body["status"] == "associated" and body["client_user_id"]
    assert api.get(f"/api/v1/users/{make_user('Gus').pk}/vpp").json()["status"] == "none"
    health = api.get("/api/v1/setting/health").json()
    assert health["organization"] == "Example Org" and health["actions_disabled_reason"] is None


def test_every_call_is_an_audit_event_with_the_tokens_name(api):
    api.get("/api/v1/users")
    event = AuditEvent.objects.filter(action="api.call").get()
    assert event.target_summary == "GET /api/v1/users with the API token “automation”."


def test_openapi_schema_and_docs_page_are_served_locally(api, client):
    assert client.get("/api/v1/openapi.json").json()["info"]["title"] == "kmconsole API"
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "cdn" not in html.lower() and "/static/ninja/swagger-ui-bundle.js" in html
    assert "script-src 'self'" in docs["Content-Security-Policy"]
