"""An in-memory stand-in for VppClient for fast service tests (the sandbox covers real HTTP)."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

from vpp.apple.errors import InvalidRequestError
from vpp.apple.types import ClientConfig, EventFailure, EventStatus, ServiceConfig, VppApiUser


class Listing(list):
    version_id = None


@dataclass
class FakeApple:
    max_users: int = 100
    pending_polls: int = 0  # how many status polls an event stays PENDING
    version: int = 1
    users: dict = field(default_factory=dict)  # cuid -> VppApiUser (active or retired)
    versions: dict = field(default_factory=dict)  # cuid -> version of last change
    events: dict = field(default_factory=dict)
    calls: list = field(default_factory=list)
    fail_next: list = field(default_factory=list)  # exceptions raised by the next calls, in order
    assignments: dict = field(default_factory=dict)  # cuid -> number of licences
    refuse: dict = field(default_factory=dict)  # cuid -> (errorNumber, message) for the next create

    _codes = itertools.count(1000)

    # -- helpers
    def _call(self, name):
        self.calls.append(name)
        if self.fail_next:
            raise self.fail_next.pop(0)

    def _touch(self, cuid):
        self.version += 1
        self.versions[cuid] = self.version

    def _event(self, kind, requested, failures):
        event_id = str(uuid.uuid4())
        self.events[event_id] = {"type": kind, "n": requested, "failures": failures, "polls": 0}
        return event_id

    def count(self, name):
        return self.calls.count(name)

    # -- the VppClient surface used by the services
    def service_config(self):
        return ServiceConfig(
            limits={"maxUsers": self.max_users, "maxRevokeClientUserIds": self.max_users, "maxRequestPerSecond": 15},
            urls={"invitationEmail": "https://apple.example/invite?inviteCode=%25inviteCode%25&mt=8"},
            error_codes={},
        )

    def client_config(self):
        """The unit's client config, nobody's mdmInfo (a job reads it once as it starts; not in ``calls``)."""
        return ClientConfig.from_json({"locationName": "Fake unit", "uId": "1"})

    def iter_users(self, *, active_only=False, retired_only=False, client_user_id=None, since_version_id=None):
        self._call("iter_users")
        page = Listing()
        for cuid, user in self.users.items():
            if client_user_id and cuid != client_user_id:
                continue
            if since_version_id and self.versions.get(cuid, 0) <= int(since_version_id):
                continue
            page.append(user)
        page.version_id = str(self.version)
        return [page] if False else _Paged(page)

    def get_user(self, client_user_id):
        self._call("get_user")
        user = self.users.get(client_user_id)
        return user if user and user.status in ("Registered", "Associated") else None

    def create_users(self, users):
        self._call("create_users")
        if len(users) > self.max_users:
            raise InvalidRequestError("too many users", error_number=9714)
        failures = []
        for request in users:
            cuid = request.client_user_id
            existing = self.users.get(cuid)
            if cuid in self.refuse:
                number, message = self.refuse.pop(cuid)
                failures.append(EventFailure(number, message, [cuid], []))
            elif existing and existing.status in ("Registered", "Associated"):
                failures.append(EventFailure(9716, "A registered user already exists", [cuid], []))
            else:
                self.users[cuid] = VppApiUser(cuid, "Registered", request.email, f"code{next(self._codes)}", None)
                self._touch(cuid)
        return [self._event("CREATE", len(users), failures)]

    def update_users(self, users):
        self._call("update_users")
        failures = []
        for request in users:
            user = self.users.get(request.client_user_id)
            if user is None:
                failures.append(EventFailure(9609, "Unable to find the registered user", [request.client_user_id], []))
            else:
                user.email = request.email
                self._touch(request.client_user_id)
        return [self._event("UPDATE", len(users), failures)]

    def retire_users(self, client_user_ids):
        self._call("retire_users")
        failures = []
        for cuid in client_user_ids:
            user = self.users.get(cuid)
            if user is None or user.status not in ("Registered", "Associated"):
                failures.append(EventFailure(9609, "Unable to find the registered user", [cuid], []))
            else:
                user.status = "Retired"
                self._touch(cuid)
        return [self._event("RETIRE", len(client_user_ids), failures)]

    def revoke_assets(self, *, client_user_ids):
        self._call("revoke_assets")
        failures = []
        for cuid in client_user_ids:
            if cuid not in self.users:
                failures.append(EventFailure(9609, "Unable to find the registered user", [cuid], []))
            self.assignments.pop(cuid, None)
        return [self._event("REVOKE", len(client_user_ids), failures)]

    def event_status(self, event_id):
        self._call("event_status")
        event = self.events[event_id]
        event["polls"] += 1
        if event["polls"] <= self.pending_polls:
            return EventStatus(event_id, "PENDING", event["type"], event["n"], 0, [])
        failed = len({c for f in event["failures"] for c in f.client_user_ids})
        status = "FAILED" if event["failures"] else "COMPLETE"
        return EventStatus(event_id, status, event["type"], event["n"], event["n"] - failed, event["failures"])

    # -- the invitation page
    def accept(self, cuid):
        user = self.users[cuid]
        user.status = "Associated"
        user.id_hash = f"hash-{cuid[:8]}"
        self._touch(cuid)


class _Paged:
    """Iterable over pages, like the client's UserListing (version_id after the first page)."""

    def __init__(self, page):
        self._page = page
        self.version_id = page.version_id

    def __iter__(self):
        yield list(self._page)
