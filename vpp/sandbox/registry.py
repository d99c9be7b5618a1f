"""Extension point for extra control routes under /_sandbox/ (e.g. the fake APNs's ``pushes``).

Another module registers a handler once at import or start-up:

    from vpp.sandbox.registry import register_control_route
    register_control_route("GET", "pushes", lambda query, body: {"pushes": [...]})

The handler gets the query dict and the decoded JSON body (or None) and returns a JSON-ready
object (answered 200) or raises ValueError (answered 400).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ControlHandler = Callable[[dict[str, str], Any], Any]

_ROUTES: dict[tuple[str, str], ControlHandler] = {}


def register_control_route(method: str, name: str, handler: ControlHandler) -> None:
    _ROUTES[(method.upper(), name.strip("/"))] = handler


def control_route(method: str, name: str) -> ControlHandler | None:
    return _ROUTES.get((method.upper(), name.strip("/")))


def control_routes() -> list[str]:
    return sorted(f"{method} /_sandbox/{name}" for method, name in _ROUTES)
