"""The sandbox's own state: per-location users, assets, assignments, events and client config.

Plain dicts (JSON-ready) guarded by one lock held by the caller (see ``service.Sandbox``).
Persisted to a JSON file written atomically (temp file + rename) by a flusher thread, so a
restart keeps everything and a crash never leaves half a file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = 1

# A small catalogue every location starts with (real App Store ids of Apple's free apps).
CATALOGUE: list[dict[str, Any]] = [
    {"adamId": "361309726", "name": "Pages", "productType": "App", "totalCount": 100},
    {"adamId": "361304891", "name": "Numbers", "productType": "App", "totalCount": 100},
    {"adamId": "361285480", "name": "Keynote", "productType": "App", "totalCount": 50},
    {"adamId": "1274495053", "name": "Microsoft Outlook", "productType": "App", "totalCount": 3},
    {"adamId": "1459887391", "name": "The Field Guide (book)", "productType": "Book", "totalCount": 20},
    # A free app with unlimited licences: Apple reports totalCount 2147483647 (docs/apple-vpp.md#licences).
    {"adamId": "1130498044", "name": "Apple Support (free, unlimited)", "productType": "App", "totalCount": 2147483647},
]


def _asset(item: dict[str, Any]) -> dict[str, Any]:
    book = item["productType"] == "Book"
    return {
        "adamId": item["adamId"],
        "name": item["name"],
        "pricingParam": "STDQ",
        "productType": item["productType"],
        "totalCount": item["totalCount"],
        "retiredCount": 0,
        # Book licences are irrevocable and not device-assignable (docs/apple-vpp.md#licences).
        "revocable": not book,
        "deviceAssignable": not book,
        "supportedPlatforms": ["books"] if book else ["iOS", "macOS"],
    }


def location_uid(location: str) -> str:
    """A stable numeric library id (Apple's uId looks like 2049025000431439)."""
    return str(int(hashlib.sha256(location.encode()).hexdigest()[:13], 16))


def new_location(location: str, org_name: str) -> dict[str, Any]:
    return {
        "token": location,
        "orgName": org_name,
        "uId": location_uid(location),
        "versionId": 1,
        "nextRecord": 1,
        "clientConfig": {
            "countryISO2ACode": "US",
            "defaultPlatform": "volumestore",
            "locationName": f"{org_name} ({location})",
            "websiteURL": "business.apple.com",
            "subscribedNotificationTypes": [],
        },
        "users": [],
        "assets": [_asset(item) for item in CATALOGUE],
        "assignments": [],
        "events": {},
    }


class Store:
    """All locations, plus the atomic JSON persistence."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else None
        self.locations: dict[str, dict[str, Any]] = {}
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._snapshot_lock = threading.Lock()
        if self.path and self.path.exists():
            self._load()

    # --- lookup -------------------------------------------------------------------
    def location(self, location: str, org_name: str) -> dict[str, Any]:
        loc = self.locations.get(location)
        if loc is None:
            loc = self.locations[location] = new_location(location, org_name)
            self.mark_dirty()
        return loc

    def bump(self, loc: dict[str, Any]) -> int:
        """Every write gets a new versionId (docs/apple-vpp.md#versionid)."""
        loc["versionId"] += 1
        self.mark_dirty()
        return loc["versionId"]

    def clear(self) -> None:
        self.locations = {}
        self.mark_dirty()

    # --- persistence --------------------------------------------------------------
    def mark_dirty(self) -> None:
        if self.path:
            self._dirty.set()

    def _load(self) -> None:
        data = json.loads(self.path.read_text())
        if data.get("schema") != SCHEMA:
            raise ValueError(f"{self.path}: unknown sandbox state schema {data.get('schema')!r}")
        self.locations = data["locations"]

    def snapshot(self) -> str:
        """Caller holds the sandbox lock."""
        return json.dumps({"schema": SCHEMA, "locations": self.locations}, separators=(",", ":"))

    def write(self, text: str) -> None:
        assert self.path is not None
        with self._snapshot_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".sandbox-", suffix=".json", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def start_flusher(self, lock: threading.RLock, interval: float = 0.2) -> None:
        """Write the file at most every INTERVAL seconds while something changed."""
        if not self.path or self._flusher:
            return

        def run() -> None:
            while not self._stop.is_set():
                if self._dirty.wait(interval) and not self._stop.is_set():
                    self.flush(lock)
                    self._stop.wait(interval)

        self._flusher = threading.Thread(target=run, name="sandbox-flusher", daemon=True)
        self._flusher.start()

    def flush(self, lock: threading.RLock) -> None:
        if not self.path:
            return
        with lock:
            self._dirty.clear()
            text = self.snapshot()
        try:
            self.write(text)
        except OSError:
            log.exception("sandbox: could not write %s", self.path)
            self._dirty.set()

    def stop(self, lock: threading.RLock) -> None:
        self._stop.set()
        if self._flusher:
            self._flusher.join(timeout=5)
            self._flusher = None
        self.flush(lock)
