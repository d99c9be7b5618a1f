"""Waiting for Apple's events: a notification ends the wait between polls (apple_io.events_wait)."""

from __future__ import annotations

import json

import pytest

from vpp.apple.types import EventStatus
from vpp.jobs import apple_io
from vpp.models import Job, JobAction, JobStatus
from vpp.services.notifications import notification_receive

pytestmark = pytest.mark.django_db


class FakeClock:
    """Stands in for the time module: sleeping advances the clock at once and may run a hook."""

    def __init__(self, on_sleep=None):
        self.now = 0.0
        self.slept: list[float] = []
        self.on_sleep = on_sleep

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept.append(seconds)
        if self.on_sleep:
            self.on_sleep(len(self.slept))


class PollingClient:
    """Answers GET /status for one event: PENDING until the ``polls``-th call."""

    def __init__(self, pending_polls: int):
        self.pending_polls = pending_polls
        self.polls = 0

    def event_status(self, event_id: str) -> EventStatus:
        self.polls += 1
        state = "PENDING" if self.polls <= self.pending_polls else "COMPLETE"
        return EventStatus(
            event_id=event_id,
            status=state,
            event_type="CREATE",
            num_requested=2,
            num_completed=0 if state == "PENDING" else 2,
        )


def notify(event_id: str, notification_id: str = "n1") -> None:
    body = {
        "notificationId": notification_id,
        "notificationType": "USER_MANAGEMENT",
        "uId": "2049",
        "notification": {"eventId": event_id, "type": "CREATE", "result": "SUCCESS", "users": []},
    }
    notification_receive(body=json.dumps(body).encode())


@pytest.fixture
def job(settings):
    settings.VPP_EVENT_POLL_INTERVAL = 30  # Apple's pace for pending events
    return Job.objects.create(action=JobAction.INVITE, status=JobStatus.RUNNING, total=2)


def test_a_notification_ends_the_wait_for_a_pending_event(job, monkeypatch):
    clock = FakeClock(on_sleep=lambda n: n == 3 and notify("ev-1"))
    monkeypatch.setattr(apple_io, "time", clock)
    client = PollingClient(pending_polls=1)

    finished, unknown = apple_io.events_wait(job=job, token="t", client=client, event_ids=["ev-1"])

    assert finished["ev-1"].status == "COMPLETE" and not unknown
    assert client.polls == 2
    assert sum(clock.slept) == 3  # polled again right after the notification, not 30 s later


def test_without_a_notification_it_polls_at_apples_pace(job, monkeypatch):
    notify("ev-1", "before-the-wait")  # an earlier notification (e.g. the first of several chunks)
    clock = FakeClock()
    monkeypatch.setattr(apple_io, "time", clock)
    client = PollingClient(pending_polls=2)

    finished, _ = apple_io.events_wait(job=job, token="t", client=client, event_ids=["ev-1"])

    assert finished["ev-1"].status == "COMPLETE"
    assert client.polls == 3
    assert sum(clock.slept) == 60  # 30 s between polls: the old notification did not wake it


def test_a_notification_for_another_event_does_not_end_the_wait(job, monkeypatch):
    clock = FakeClock(on_sleep=lambda n: n == 2 and notify("someone-elses-event"))
    monkeypatch.setattr(apple_io, "time", clock)
    client = PollingClient(pending_polls=1)

    apple_io.events_wait(job=job, token="t", client=client, event_ids=["ev-1"])

    assert sum(clock.slept) == 30
