"""The client against the sandbox speaking like Apple's real answers (issue 11.7 and 11.9), over real HTTP.

Bodies recorded from Apple by other MDM projects and Apple's documented examples: 9622 (even with
HTTP 200), 9610, 9623, error bodies with only errorNumber or an empty errorInfo, base64 idHash,
a Retired record in an activeOnly listing, list bodies without paging fields, unlimited assets, and
a server clock that differs from ours for an HTTP-date Retry-After.
"""

from __future__ import annotations

import pytest

from tests.support.job_loop import run_job
from tests.support.redis_db import rate_limiter
from tests.support.sandbox import store_sandbox_token
from users.models import User
from users.selectors import UserSelection
from vpp.apple.client import VppClient
from vpp.apple.errors import InvalidRequestError, ServiceUnavailableError, TokenInvalidError
from vpp.apple.types import RequestUser
from vpp.content_token import vpp_client
from vpp.jobs.engine import job_create
from vpp.jobs.plan import vpp_plan_build
from vpp.models import JobAction, JobItem, JobStatus, TokenHealth, VppServerSetting

pytestmark = pytest.mark.sandbox


@pytest.fixture
def client(vpp_sandbox) -> VppClient:
    return VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url, rate_limiter=rate_limiter(), max_retries=0)


def created(client, *cuids: str) -> None:
    for event_id in client.create_users([RequestUser(c, email=f"{c}@example.com") for c in cuids]):
        client.wait_for_event(event_id, poll_interval=0.05)


# --------------------------------------------------------------------------- 11.7


def test_an_http_date_retry_after_counts_from_apples_date_not_our_clock(vpp_sandbox, client):
    client.service_config()
    # Our clock runs 50 s ahead of Apple's: Apple says "retry at its now + 60 s".
    vpp_sandbox.control(fail_next=1, retry_after=60, retry_after_form="http-date", clock_offset=-50)
    with pytest.raises(ServiceUnavailableError) as caught:
        client.client_config()
    assert caught.value.retry_after == pytest.approx(60, abs=2)  # not 10: a fast local clock would call early


# --------------------------------------------------------------------------- 11.9: errors


@pytest.mark.parametrize("http_200", [False, True])
def test_9622_is_an_invalid_token_even_with_http_200(vpp_sandbox, client, http_200):
    vpp_sandbox.control(invalid_tokens=[vpp_sandbox.token], errors_with_http_200=http_200)
    with pytest.raises(TokenInvalidError) as caught:
        client.client_config()
    assert (caught.value.error_number, caught.value.http_status) == (9622, 200 if http_200 else 401)
    assert "Upload the content token again" in caught.value.message


@pytest.mark.django_db
def test_a_job_stops_on_9622_and_records_the_tokens_health(vpp_sandbox, settings, user_factory):
    settings.VPP_EVENT_POLL_INTERVAL = 1
    setting = store_sandbox_token(vpp_sandbox)
    users = [user_factory() for _ in range(2)]
    users_qs = User.objects.filter(pk__in=[u.pk for u in users])
    plan = vpp_plan_build(action=JobAction.INVITE, users=users_qs, channel="email")
    vpp_sandbox.control(invalid_tokens=[vpp_sandbox.token], errors_with_http_200=True)
    job = run_job(job_create(plan=plan, actor=None, selection=UserSelection(ids=tuple(u.pk for u in users))),
                  vpp_client(setting))  # fmt: skip
    assert job.status == JobStatus.FAILED and "content token" in job.error
    assert set(JobItem.objects.filter(job=job).values_list("error_number", flat=True)) == {9622}
    assert VppServerSetting.load().token_health == TokenHealth.INVALID


@pytest.mark.parametrize(
    ("number", "body", "sentence"),
    [
        (9610, "bare", "Apple could not find the licence"),
        (9623, "empty_info", "Apple rejected the push notification token."),
        (9610, "full", "Apple could not find the licence"),
        (9799, "bare", "Apple reported an error without an explanation."),
    ],
)
def test_error_bodies_without_a_message_or_with_an_empty_errorinfo(vpp_sandbox, client, number, body, sentence):
    client.service_config()
    vpp_sandbox.control(inject_errors=[{"number": number, "path": "/assets/revoke", "body": body}])
    with pytest.raises(InvalidRequestError) as caught:
        client.revoke_assets(client_user_ids=["u1"])
    error = caught.value
    assert error.error_number == number and error.message.startswith(sentence)
    assert error.client_user_ids == []  # names nobody: the whole request failed


# --------------------------------------------------------------------------- 11.9: answers


def test_a_retired_record_inside_an_active_only_listing_is_not_taken_as_the_user(vpp_sandbox, client):
    created(client, "u1")
    client.wait_for_event(client.retire_users(["u1"])[0], poll_interval=0.05)
    created(client, "u1")
    statuses = [u.status for u in client.iter_users(active_only=True)]
    assert statuses == ["Retired", "Registered"]  # as Apple's answers show
    user = client.get_user("u1")
    assert user is not None and user.status == "Registered" and user.invite_code


def test_list_bodies_without_paging_fields_are_read_whole(vpp_sandbox, client):
    created(client, "u1", "u2")
    vpp_sandbox.control(bare_list_bodies=True)
    assert sorted(u.client_user_id for u in client.iter_users()) == ["u1", "u2"]
    assert len(client.list_assets()) >= 1


def test_an_unlimited_free_asset_reads_apples_2147483647(vpp_sandbox, client):
    (unlimited,) = [a for a in client.list_assets() if a.total_count == 2147483647]
    assert unlimited.available_count == 2147483647 - unlimited.assigned_count


def test_an_id_hash_is_base64_as_apple_sends_it(vpp_sandbox, client):
    created(client, "u1")
    vpp_sandbox.accept_invitation(client.get_user("u1").invite_code, "someone@icloud.example")
    user = client.get_user("u1")
    assert user.status == "Associated" and user.id_hash.endswith("=") and len(user.id_hash) == 44


def test_client_user_ids_that_are_not_uuids_are_kept_as_sent(vpp_sandbox, client):
    created(client, "OTHER-MDM-0042")
    assert client.get_user("OTHER-MDM-0042").client_user_id == "OTHER-MDM-0042"
