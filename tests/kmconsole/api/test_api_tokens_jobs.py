"""API tokens (scopes, revocation, expiry, rate limit), starting jobs and the Idempotency-Key."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from kmconsole.api import services
from kmconsole.api.models import ApiToken
from tests.kmconsole.api.conftest import grant
from tests.support.users import make_user, make_users
from users.models import Platform
from vpp.models import Job, JobItem, VppUserStatus

pytestmark = pytest.mark.django_db


def _bearer(secret: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def test_a_token_is_stored_hashed_and_shown_once(api_token):
    token, secret = api_token
    assert secret.startswith("kmc_")
    row = ApiToken.objects.get(pk=token.pk)
    assert secret not in (row.token_hash, row.prefix) and row.token_hash == services._hash(secret)


def test_no_token_a_wrong_one_a_revoked_one_an_expired_one_are_401(client, api_token):
    token, secret = api_token
    assert client.get("/api/v1/users").status_code == 401
    assert client.get("/api/v1/users", **_bearer("kmc_wrong")).status_code == 401
    assert client.get("/api/v1/users", **_bearer(secret)).status_code == 200
    services.token_revoke(token)
    response = client.get("/api/v1/users", **_bearer(secret))
    assert response.status_code == 401 and "detail" in response.json()
    _, fresh = services.token_create(
        admin=token.created_by,
        name="short",
        scopes=["users.view_user"],
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    assert client.get("/api/v1/users", **_bearer(fresh)).status_code == 401


def test_a_token_cannot_be_given_more_than_its_admin_holds(django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password=None)
    grant(viewer, "users.view_user")
    viewer = django_user_model.objects.get(pk=viewer.pk)
    with pytest.raises(services.ScopeRefused) as refused:
        services.token_create(admin=viewer, name="x", scopes=["users.view_user", "vpp.invite_vppuser"])
    assert refused.value.scopes == ["vpp.invite_vppuser"]
    assert not ApiToken.objects.exists()


def test_a_scope_the_token_lacks_or_its_admin_lost_is_a_403(client, operator, token_setting):
    make_user("Ada")
    _, reader = services.token_create(admin=operator, name="reader", scopes=["users.view_user"])
    assert client.get("/api/v1/users", **_bearer(reader)).status_code == 200
    body = {"action": "invite", "filter": {}}
    refused = client.post(
        "/api/v1/jobs", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k1", **_bearer(reader)
    )
    assert refused.status_code == 403 and "vpp.invite_vppuser" in refused.json()["detail"]
    # The admin loses the permission: the token loses it too.
    _, inviter = services.token_create(admin=operator, name="inviter", scopes=["vpp.invite_vppuser"])
    operator.user_permissions.remove(*operator.user_permissions.filter(codename="invite_vppuser"))
    response = client.post(
        "/api/v1/jobs", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k2", **_bearer(inviter)
    )
    assert response.status_code == 403
    assert not Job.objects.exists()


def test_rate_limit_per_token_is_a_429_with_retry_after(client, operator, settings):
    settings.API_RATE_LIMIT = 3
    _, one = services.token_create(admin=operator, name="one", scopes=["users.view_user"])
    _, two = services.token_create(admin=operator, name="two", scopes=["users.view_user"])
    codes = [client.get("/api/v1/users", **_bearer(one)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = client.get("/api/v1/users", **_bearer(one))
    assert int(limited["Retry-After"]) >= 1 and "Rate limit" in limited.json()["detail"]
    assert client.get("/api/v1/users", **_bearer(two)).status_code == 200  # per token


def test_start_a_job_returns_the_confirmation_plan_and_the_job(api, token_setting):
    ok = make_users(3)
    no_device = make_user("Nod", devices=())
    associated = make_user("Asa", vpp_status=VppUserStatus.ASSOCIATED)
    ids = [u.pk for u in ok] + [no_device.pk, associated.pk, 987654]
    response = api.post(
        "/api/v1/jobs", {"action": "invite", "user_ids": ids}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="a"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["plan"]["eligible"] == 3 and body["plan"]["unknown_ids"] == 1
    assert {s["code"]: s["count"] for s in body["plan"]["skipped"]} == {"no_device": 1, "associated": 1}
    job = Job.objects.get()
    assert body["job"]["id"] == job.pk and job.started_by.username == "operator"
    assert JobItem.objects.filter(job=job).count() == 5
    assert api.get(f"/api/v1/jobs/{job.pk}").json()["pending"] == 3
    items = api.get(f"/api/v1/jobs/{job.pk}/items", {"status": "skipped"}).json()
    assert items["count"] == 2


def test_two_identical_posts_with_one_idempotency_key_start_one_job(api, token_setting):
    users = make_users(4)
    body = {"action": "invite", "user_ids": [u.pk for u in users]}
    first = api.post("/api/v1/jobs", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="onboard-1")
    second = api.post("/api/v1/jobs", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="onboard-1")
    assert first.status_code == second.status_code == 201
    assert first.json()["job"]["id"] == second.json()["job"]["id"]
    assert second.json()["replayed"] is True
    assert Job.objects.count() == 1
    other = api.post(
        "/api/v1/jobs", {**body, "action": "sync"}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="onboard-1"
    )
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "Idempotency-Key"
    missing = api.post("/api/v1/jobs", body, content_type="application/json")
    assert missing.status_code == 422
    assert Job.objects.count() == 1


def test_a_filter_selection_and_a_dry_run(api, token_setting):
    make_user("Mac", platform=Platform.MACOS)
    make_user("Ios")
    body = {"action": "invite", "filter": {"platform": "macos"}, "dry_run": True}
    response = api.post("/api/v1/jobs", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="dry")
    assert response.status_code == 200 and response.json()["job"] is None
    assert response.json()["plan"]["eligible"] == 1
    assert not Job.objects.exists()
    both = api.post(
        "/api/v1/jobs",
        {"action": "invite", "filter": {}, "user_ids": [1]},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="both",
    )
    assert both.status_code == 422


def test_nobody_eligible_is_a_409_with_the_plan_and_no_job(api, token_setting):
    user = make_user("Asa", vpp_status=VppUserStatus.ASSOCIATED)
    response = api.post(
        "/api/v1/jobs",
        {"action": "invite", "user_ids": [user.pk]},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="n",
    )
    assert response.status_code == 409
    assert response.json()["plan"]["skipped"][0]["code"] == "associated"
    assert not Job.objects.exists()


def test_no_content_token_is_a_409(api):
    user = make_user("Ada")
    response = api.post(
        "/api/v1/jobs",
        {"action": "invite", "user_ids": [user.pk]},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="t",
    )
    assert response.status_code == 409 and not Job.objects.exists()


def test_retry_failed_makes_one_job_over_the_failed_users(api, token_setting):
    users = make_users(2)
    started = api.post(
        "/api/v1/jobs",
        {"action": "sync", "user_ids": [u.pk for u in users]},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="s",
    )
    assert started.status_code == 409  # nobody is a VPP user yet: nothing to sync
    vpp_users = [make_user(f"V{i}", vpp_status=VppUserStatus.INVITED) for i in range(2)]
    job_id = api.post(
        "/api/v1/jobs",
        {"action": "sync", "user_ids": [u.pk for u in vpp_users]},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="s2",
    ).json()["job"]["id"]
    assert api.post(f"/api/v1/jobs/{job_id}/retry", HTTP_IDEMPOTENCY_KEY="r").status_code == 409  # still running
    JobItem.objects.filter(job_id=job_id).update(status="failed")
    Job.objects.filter(pk=job_id).update(status="done")
    first = api.post(f"/api/v1/jobs/{job_id}/retry", HTTP_IDEMPOTENCY_KEY="r2")
    again = api.post(f"/api/v1/jobs/{job_id}/retry", HTTP_IDEMPOTENCY_KEY="r2")
    assert first.status_code == 201, first.content
    assert first.json()["job"]["id"] == again.json()["job"]["id"]
    assert Job.objects.filter(retry_of_id=job_id).count() == 1


@pytest.mark.parametrize(
    ("role", "grantable"),
    [
        ("Viewer", {"users.view_user", "vpp.view_vppuser", "vpp.view_job", "vpp.view_vppserversetting"}),
        (
            "Operator",
            {"users.view_user", "vpp.view_vppuser", "vpp.view_job", "vpp.view_vppserversetting"}
            | {"vpp.invite_vppuser", "vpp.sync_vppuser"},
        ),
    ],
)
def test_scopes_follow_the_console_roles(role, grantable):
    from tests.support.roles import make_admin

    admin = make_admin(f"a-{role}", role=role)
    assert set(services.grantable_scopes(admin)) == grantable
    with pytest.raises(services.ScopeRefused):
        services.token_create(admin=admin, name="x", scopes=["vpp.delete_vppuser"])


def test_only_administrators_manage_tokens(client):
    from tests.support.roles import make_admin

    client.force_login(make_admin("op", role="Operator"))
    assert client.get("/setting/api/tokens/").status_code == 403
    assert client.get("/setting/api/webhooks/").status_code == 403
    client.force_login(make_admin("boss", role="Administrator"))
    assert client.get("/setting/api/tokens/").status_code == 200


def test_redis_down_lets_calls_through_instead_of_a_500(api, monkeypatch):
    import redis

    class Down:
        def pipeline(self):
            raise redis.ConnectionError("Redis is down")

    monkeypatch.setattr(services, "_redis", lambda: Down())
    assert api.get("/api/v1/users").status_code == 200


def test_the_link_job_kind_and_the_managed_apple_account(api, token_setting):
    user = make_user(
        "Lin", vpp_status=VppUserStatus.ASSOCIATED, vpp_fields={"managed_apple_account": "lin@corp.example"}
    )
    body = api.get(f"/api/v1/users/{user.pk}/vpp").json()
    assert body["managed_apple_account"] == "lin@corp.example"
    response = api.post(
        "/api/v1/jobs",
        {"action": "convert", "user_ids": [user.pk], "dry_run": True},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="link",
    )
    assert response.status_code == 200, response.content
    assert response.json()["plan"]["action"] == "convert" and response.json()["plan"]["selected"] == 1


def test_jobs_list_filters_like_the_jobs_page(api, token_setting):
    users = make_users(2)
    api.post(
        "/api/v1/jobs",
        {"action": "invite", "user_ids": [u.pk for u in users]},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="j",
    )
    assert [j["action"] for j in api.get("/api/v1/jobs").json()] == ["invite"]
    assert api.get("/api/v1/jobs", {"action": "sync"}).json() == []
    assert api.get("/api/v1/jobs", {"status": "queued"}).json()[0]["status"] == "queued"
    assert api.get("/api/v1/jobs", {"status": "nope"}).status_code == 422
