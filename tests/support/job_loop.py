"""Jobs driven in-process through the real task code (vpp/tasks.py), as a worker would run them.

``run_job(job, client)`` starts with the message ``engine.job_enqueue`` sends (``vpp.job_dispatch``
for the job) and runs every message the task code publishes, in order, until none is left: one
``vpp.job_chunk`` per chunk, a chunk's retries, the re-dispatch when a phase ends.

- Publishing is captured at the Celery app's ``send_task``, where ``Task.apply_async``,
  ``Task.retry`` and enqueueing by name all end: nothing reaches a broker, and the options a
  message carries (countdown, retries, time limits) are kept on it (``JobLoop.published``).
- Each task runs with a request as a worker sets it up (``called_directly=False``), so
  ``self.retry(...)`` takes its real path: it publishes the retry and raises ``Retry``.
- No real waiting: a message published with a countdown runs in its turn, after the job's
  ``retry_after_until`` is cleared, as if the countdown had passed.
- ``client`` (a VppClient or tests.support.fake_apple.FakeApple) stands in for the client the
  engine builds from the stored setting (``engine.vpp_client`` is patched while the loop runs);
  ``None`` keeps the stored setting, as in production.
- ``max_rounds`` caps the messages run; what is left in the queue then is dropped (a test can
  stop a job mid-way and look at it).
"""

from __future__ import annotations

import uuid
from collections import deque
from contextlib import ExitStack
from dataclasses import dataclass, field
from unittest import mock

from celery.exceptions import Retry
from django.conf import settings

from kmconsole.celery import app
from vpp import tasks
from vpp.jobs import engine
from vpp.models import Job

# The tasks publish through this app (and engine.job_enqueue through current_app, the same one).
assert tasks.job_chunk.app is app

# Options of a published message worth keeping (the rest is Celery plumbing).
KEPT_OPTIONS = ("task_id", "countdown", "eta", "retries", "time_limit", "soft_time_limit")


@dataclass(frozen=True)
class Message:
    task: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)


class JobLoop:
    """Runs one job's messages in-process; ``published`` lists every message the code sent."""

    def __init__(self, client=None, *, max_rounds: int = 200) -> None:
        self.client = client
        self.max_rounds = max_rounds
        self.published: list[Message] = []

    def run(self, job: Job) -> Job:
        queue: deque[Message] = deque()
        with ExitStack() as stack:
            stack.enter_context(mock.patch.object(app, "send_task", self._publisher(queue)))
            if self.client is not None:
                stack.enter_context(mock.patch.object(engine, "vpp_client", lambda *args, **kwargs: self.client))
            queue.append(Message(engine.DISPATCH_TASK, (job.pk,)))
            rounds = 0
            while queue and rounds < self.max_rounds:
                rounds += 1
                message = queue.popleft()
                if message.options.get("countdown"):
                    Job.objects.filter(pk=job.pk).update(retry_after_until=None)  # the countdown has passed
                self._execute(message)
        job.refresh_from_db()
        return job

    def _publisher(self, queue: deque[Message]):
        def send_task(name, args=None, kwargs=None, **options):
            kept = {key: options[key] for key in KEPT_OPTIONS if options.get(key) is not None}
            message = Message(name, tuple(args or ()), dict(kwargs or {}), kept)
            self.published.append(message)
            queue.append(message)

        return send_task

    def _execute(self, message: Message) -> None:
        task = app.tasks[message.task]  # registered by importing vpp.tasks
        options = message.options
        task.push_request(
            id=options.get("task_id") or str(uuid.uuid4()),
            args=list(message.args),
            kwargs=message.kwargs,
            retries=options.get("retries", 0),
            timelimit=(options.get("time_limit"), options.get("soft_time_limit")),
            delivery_info={"exchange": "", "routing_key": settings.CELERY_TASK_DEFAULT_QUEUE, "redelivered": False},
            called_directly=False,
            is_eager=False,
        )
        try:
            task.run(*message.args, **message.kwargs)
        except Retry:
            pass  # the retry is already published into the queue, as a worker's broker would hold it
        finally:
            task.pop_request()


def run_job(job: Job, client, *, max_rounds: int = 200) -> Job:
    """Drive ``job`` to its end in-process through vpp/tasks.py (see the module docstring)."""
    return JobLoop(client, max_rounds=max_rounds).run(job)
