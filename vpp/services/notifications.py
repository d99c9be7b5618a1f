"""Apple's notification receiver (docs/apple-vpp.md#notifications).

Apple POSTs JSON with ``Authorization: Bearer <notificationAuthToken>``; any 2xx means
delivered, and delivery is retried up to 3 times, so we de-duplicate on ``notificationId``.
Notifications are best effort: syncs and Event Status polling stay the source of truth.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from vpp import secrets as vault
from vpp.models import AppleNotification, NotificationType, VppServerSetting, VppUser, VppUserStatus
from vpp.signals import vpp_event_after_commit

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 512 * 1024  # ≤100 elements per notification; generous, but bounded


class MalformedNotification(ValueError):
    pass


@dataclass(frozen=True)
class Received:
    notification_type: str
    duplicate: bool
    changed: int = 0


def notification_authorized(header: str | None) -> bool:
    """Constant-time check of ``Bearer <token>`` against the stored (encrypted) token."""
    setting = VppServerSetting.load()
    if not header or not setting.notification_auth_token_encrypted:
        return False
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    try:
        expected = vault.decrypt(setting.notification_auth_token_encrypted)
    except vault.SecretUnreadable:
        return False
    return hmac.compare_digest(presented.strip().encode(), expected.encode())


# Deeper than any notification Apple documents (an object of arrays of objects); bounds the walk.
MAX_DEPTH = 16


def _not_json_constant(name: str):
    raise MalformedNotification(f"{name} is not a JSON value")


def _loads(body: bytes):
    """The JSON document of ``body``: strict JSON (no NaN/Infinity), or MalformedNotification."""
    try:
        return json.loads(body, parse_constant=_not_json_constant)
    except MalformedNotification:
        raise
    except RecursionError:  # e.g. 200,000 nested brackets
        raise MalformedNotification("body is nested too deeply") from None
    except (UnicodeDecodeError, ValueError):  # JSONDecodeError; an integer of over 4,300 digits
        raise MalformedNotification("body is not JSON") from None


def _check_values(data) -> None:
    """Refuse what no column can store: NUL characters (Postgres), non-finite numbers, deep nesting."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise MalformedNotification(f"body is nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    raise MalformedNotification("a key holds a NUL character")
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and "\x00" in value:
            raise MalformedNotification("a value holds a NUL character")
        elif isinstance(value, float) and not math.isfinite(value):  # 1e999 reads as infinity
            raise MalformedNotification("a number is out of range")


def _parse(body: bytes) -> dict:
    """The notification as a dict whose shape ``notification_receive`` can rely on.

    Raises MalformedNotification (a 400, nothing stored) for a body that is not one JSON object,
    holds NaN/Infinity or NUL characters, nests deeper than MAX_DEPTH, lacks a short
    ``notificationId``/``notificationType``, or whose ``notification`` is not an object or whose
    ``associatedUsers`` is not a list of objects (docs/apple-vpp.md#notifications).
    """
    data = _loads(body)
    if not isinstance(data, dict):
        raise MalformedNotification("body is not a JSON object")
    _check_values(data)
    nid, ntype = data.get("notificationId"), data.get("notificationType")
    if not isinstance(nid, str) or not nid or len(nid) > 100:
        raise MalformedNotification("notificationId missing or not a short string")
    if not isinstance(ntype, str) or not ntype or len(ntype) > 40:
        raise MalformedNotification("notificationType missing or not a short string")
    payload = data.get("notification", {})
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise MalformedNotification("notification is not an object")
    users = payload.get("associatedUsers")
    if users is not None and not (isinstance(users, list) and all(isinstance(entry, dict) for entry in users)):
        raise MalformedNotification("associatedUsers is not a list of objects")
    return data


def notification_receive(*, body: bytes) -> Received:
    """Record one notification (once) and apply what it says. Raises MalformedNotification."""
    data = _parse(body)
    payload = data.get("notification") or {}
    ntype = data["notificationType"]
    try:
        with transaction.atomic():
            record = AppleNotification.objects.create(
                notification_id=data["notificationId"],
                notification_type=ntype,
                # Clipped by their columns (vpp.models.fields.OutsideCharField).
                event_id=str(payload.get("eventId") or ""),
                event_type=str(payload.get("type") or ""),
                result=str(payload.get("result") or ""),
                uid=str(data.get("uId") or ""),
                payload=payload,
            )
            changed = _apply(record)
            record.processed_at = timezone.now()
            record.save(update_fields=["processed_at"])
    except IntegrityError:
        logger.info("duplicate Apple notification %s ignored", data["notificationId"])
        return Received(ntype, duplicate=True)
    return Received(ntype, duplicate=False, changed=changed)


def _apply(record: AppleNotification) -> int:
    if record.notification_type == NotificationType.USER_ASSOCIATED:
        return users_mark_associated(users=record.payload.get("associatedUsers") or [])
    return 0


def users_mark_associated(*, users: list) -> int:
    """USER_ASSOCIATED: the invitation was accepted — associated at once, with the idHash."""
    changed = 0
    now = timezone.now()
    for entry in users:
        if not isinstance(entry, dict) or not entry.get("clientUserId"):
            continue
        rows = VppUser.objects.filter(client_user_id=_uuid_or_none(entry["clientUserId"])).exclude(
            status__in=(VppUserStatus.RETIRED, VppUserStatus.ASSOCIATED)
        )
        newly = list(rows.values_list("client_user_id", "user_id"))
        changed += (
            VppUser.objects.filter(client_user_id=_uuid_or_none(entry["clientUserId"]))
            .exclude(status=VppUserStatus.RETIRED)
            .update(
                status=VppUserStatus.ASSOCIATED,
                id_hash=str(entry.get("idHash") or ""),
                last_synced_at=now,
                updated_at=now,
            )
        )
        for client_user_id, user_id in newly:
            vpp_event_after_commit("user.associated", {"client_user_id": str(client_user_id), "user_id": user_id})
    return changed


def _uuid_or_none(value):
    import uuid

    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
