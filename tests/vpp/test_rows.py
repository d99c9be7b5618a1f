"""The executemany row helpers store what the ORM would store."""

from __future__ import annotations

import pytest

from tests.support.users import make_users
from vpp.jobs.rows import rows_insert, rows_update
from vpp.models import VppUser, VppUserStatus

pytestmark = pytest.mark.django_db


def test_it_inserts_rows_with_defaults_and_timestamps_like_the_orm():
    users = make_users(3)
    inserted = rows_insert([VppUser(user_id=user.pk, status=VppUserStatus.PENDING) for user in users])
    assert inserted == 3
    rows = list(VppUser.objects.filter(user__in=users))
    assert len(rows) == 3
    assert len({row.client_user_id for row in rows}) == 3  # each got its own minted UUID
    assert all(row.created_at and row.updated_at for row in rows)
    assert {row.status for row in rows} == {VppUserStatus.PENDING}
    assert {row.invitation_count for row in rows} == {0}  # the model default


def test_it_updates_only_the_named_fields_and_touches_updated_at():
    users = make_users(2)
    rows_insert([VppUser(user_id=user.pk) for user in users])
    rows = list(VppUser.objects.filter(user__in=users).order_by("pk"))
    before = rows[0].updated_at
    rows[0].status, rows[0].invite_code = VppUserStatus.INVITED, "abc"
    rows[1].invite_code = "not saved"
    assert rows_update(rows[:1], ["status"]) == 1
    first, second = VppUser.objects.filter(user__in=users).order_by("pk")
    assert first.status == VppUserStatus.INVITED and first.invite_code == "" and first.updated_at >= before
    assert second.invite_code == ""


def test_it_inserts_awkward_text_and_nulls_unchanged():
    # Postgres takes these through COPY: tabs, newlines, backslashes and NULLs must survive.
    from vpp.models import ItemStatus, Job, JobAction, JobItem

    job = Job.objects.create(action=JobAction.INVITE, selection={"ids": [1, 2], "note": "a\tb"})
    labels = ["Tab\there", "New\nline", "Back\\slash \\N", "Ünïcödé ✓", ""]
    rows_insert([JobItem(job=job, user_label=label, status=ItemStatus.SKIPPED, reason=label) for label in labels])
    stored = list(JobItem.objects.filter(job=job).order_by("pk").values_list("user_label", "reason", "vpp_user_id"))
    assert stored == [(label, label, None) for label in labels]
