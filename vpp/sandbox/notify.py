"""Notification delivery, Apple style: POST JSON with ``Authorization: Bearer <notificationAuthToken>``,
any 2xx = delivered, up to N attempts, best effort (docs/apple-vpp.md#notifications). A background thread sends
them so the API never waits on the receiver.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import requests

log = logging.getLogger(__name__)

TIMEOUT = (3, 10)


@dataclass
class Delivery:
    url: str
    auth_token: str
    payload: dict[str, Any]
    attempts: int = 0
    delivered: bool = False
    dropped: bool = False
    last_status: int | None = None
    last_error: str = ""
    created_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {
            "notificationId": self.payload["notificationId"],
            "notificationType": self.payload["notificationType"],
            "url": self.url,
            "attempts": self.attempts,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "lastStatus": self.last_status,
            "lastError": self.last_error,
            "createdAt": self.created_at,
            "payload": self.payload,
        }


def envelope(notification_type: str, notification: dict[str, Any], uid: str) -> dict[str, Any]:
    return {
        "notificationId": str(uuid.uuid4()),
        "notificationType": notification_type,
        "notification": notification,
        "uId": uid,
    }


def post_once(url: str, auth_token: str, payload: dict[str, Any]) -> int:
    """One attempt; returns the HTTP status (raises requests.RequestException on no answer)."""
    response = requests.post(
        url,
        json=payload,
        headers={"Authorization": f"Bearer {auth_token}", "User-Agent": "kmconsole-vpp-sandbox"},
        timeout=TIMEOUT,
        allow_redirects=False,
    )
    return response.status_code


class Notifier:
    """One background thread; a failed attempt is rescheduled, so a dead receiver doesn't hold up others."""

    def __init__(self, *, attempts: int = 3, retry_seconds: float = 1.0, keep: int = 2000):
        self.attempts = attempts
        self.retry_seconds = retry_seconds
        self.log: deque[Delivery] = deque(maxlen=keep)
        self._due: list[tuple[float, int, int, Delivery]] = []  # heap of (due, seq, generation, delivery)
        self._seq = itertools.count()
        self._generation = 0  # bumped by reset(): scheduled deliveries of an old generation are skipped
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self._thread:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="sandbox-notifier", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread:
            with self._cond:
                self._stopping = True
                self._cond.notify()
            self._thread.join(timeout=5)
            self._thread = None

    def reset(self) -> None:
        with self._cond:
            self._generation += 1
            self._due.clear()
            self.log.clear()

    def send(self, url: str, auth_token: str, payload: dict[str, Any], *, drop: bool = False) -> None:
        delivery = Delivery(url=url, auth_token=auth_token, payload=payload, dropped=drop)
        with self._cond:
            self.log.append(delivery)
            if not drop:
                self._schedule(delivery, time.monotonic())

    def _schedule(self, delivery: Delivery, due: float) -> None:
        heapq.heappush(self._due, (due, next(self._seq), self._generation, delivery))
        self._cond.notify()

    def deliveries(self) -> list[dict[str, Any]]:
        with self._cond:
            return [d.to_json() for d in self.log]

    def pending(self) -> int:
        with self._cond:
            return len(self._due)

    def _next(self) -> tuple[int, Delivery] | None:
        with self._cond:
            while not self._stopping:
                if self._due and self._due[0][0] <= time.monotonic():
                    _, _, generation, delivery = heapq.heappop(self._due)
                    return generation, delivery
                timeout = self._due[0][0] - time.monotonic() if self._due else None
                self._cond.wait(timeout)
            return None

    def _run(self) -> None:
        while (item := self._next()) is not None:
            generation, delivery = item
            if generation == self._generation:
                self._attempt(generation, delivery)

    def _attempt(self, generation: int, delivery: Delivery) -> None:
        delivery.attempts += 1
        try:
            delivery.last_status = post_once(delivery.url, delivery.auth_token, delivery.payload)
            delivery.last_error = ""
        except Exception as exc:  # noqa: BLE001 - best effort: any failure is a failed attempt
            delivery.last_status, delivery.last_error = None, type(exc).__name__
        if delivery.last_status is not None and 200 <= delivery.last_status < 300:
            delivery.delivered = True
            return
        with self._cond:
            if delivery.attempts < self.attempts and generation == self._generation:
                self._schedule(delivery, time.monotonic() + self.retry_seconds)
                return
        log.info("sandbox: notification %s not delivered", delivery.payload["notificationId"])
