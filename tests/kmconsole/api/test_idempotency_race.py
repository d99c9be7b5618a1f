"""Two identical POSTs with one Idempotency-Key at the same moment start one job."""

from __future__ import annotations

import threading

import pytest
from django.db import connections
from django.test import Client

from tests.support.users import make_users
from vpp.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def _race(secret: str, body: dict, keys: list[str]) -> list:
    """POST ``body`` once per key, all at the same moment; the (status, JSON) answers."""
    barrier = threading.Barrier(len(keys))
    answers: list = []

    def post(key):
        client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
        barrier.wait()
        try:
            response = client.post("/api/v1/jobs", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)
            answers.append((response.status_code, response.json()))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post, args=[key]) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return answers


def test_simultaneous_twins_start_one_job(api_token, token_setting):
    users = make_users(50)
    body = {"action": "invite", "user_ids": [u.pk for u in users]}
    answers = _race(api_token[1], body, ["twin", "twin"])
    assert Job.objects.count() == 1
    assert len(answers) == 2, answers
    assert {code for code, _ in answers} == {201}
    assert {body["job"]["id"] for _, body in answers} == {Job.objects.get().pk}


def test_two_keys_for_the_same_users_at_once_start_one_job_and_never_a_500(api_token, token_setting):
    users = make_users(50)
    answers = _race(api_token[1], {"action": "invite", "user_ids": [u.pk for u in users]}, ["one", "two"])
    assert len(answers) == 2, answers
    assert sorted(code for code, _ in answers) == [201, 409]
    assert Job.objects.count() == 1
