"""Notification delivery, Apple style: POST JSON with ``Authorization: Bearer <notificationAuthToken>``,
any 2xx = delivered, up to N attempts, best effort (reference §6). A background thread sends
them so the API never waits on the receiver.
"""

from __future__ import annotations

import logging
import queue
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
    def __init__(self, *, attempts: int = 3, retry_seconds: float = 1.0, keep: int = 2000):
        self.attempts = attempts
        self.retry_seconds = retry_seconds
        self.log: deque[Delivery] = deque(maxlen=keep)
        self._queue: queue.Queue[tuple[int, Delivery] | None] = queue.Queue()
        self._generation = 0  # bumped by reset(): queued deliveries of an old generation are skipped
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self._thread:
            self._thread = threading.Thread(target=self._run, name="sandbox-notifier", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def reset(self) -> None:
        with self._lock:
            self._generation += 1
            self.log.clear()

    def send(self, url: str, auth_token: str, payload: dict[str, Any], *, drop: bool = False) -> None:
        delivery = Delivery(url=url, auth_token=auth_token, payload=payload, dropped=drop)
        with self._lock:
            self.log.append(delivery)
            generation = self._generation
        if not drop:
            self._queue.put((generation, delivery))

    def deliveries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [d.to_json() for d in self.log]

    def pending(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            generation, delivery = item
            self._deliver(generation, delivery)

    def _deliver(self, generation: int, delivery: Delivery) -> None:
        while delivery.attempts < self.attempts and generation == self._generation:
            delivery.attempts += 1
            try:
                delivery.last_status = post_once(delivery.url, delivery.auth_token, delivery.payload)
                delivery.last_error = ""
            except Exception as exc:  # noqa: BLE001 - best effort: any failure is a failed attempt
                delivery.last_status, delivery.last_error = None, type(exc).__name__
            if delivery.last_status is not None and 200 <= delivery.last_status < 300:
                delivery.delivered = True
                return
            if delivery.attempts < self.attempts:
                time.sleep(self.retry_seconds)
        log.info("sandbox: notification %s not delivered", delivery.payload["notificationId"])
