"""The page of one device user (``/users/<id>/``) and its extension hook.

The page itself shows what users/ knows: the person and their devices (platform, activation,
push token present, last seen). Other apps add sections below it through
``register_person_section`` (the vpp app: the VPP user, the invitation link for the helpdesk,
the licences held at Apple, the timeline and the actions), the same way they add a cell and a
filter to the Users page (users/table.py, users.selectors.register_filter). users/ never
imports vpp (import contract in pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.utils.safestring import SafeString

from users.models import Device, User


@dataclass(frozen=True)
class PersonSection:
    """A section of the person page: ``render(request, user)`` returns its HTML (already
    escaped, e.g. ``render_to_string(...)``); sections show in ascending ``order``."""

    name: str
    order: int
    render: Callable[[HttpRequest, User], SafeString | str]


PERSON_SECTIONS: dict[str, PersonSection] = {}


def register_person_section(name: str, render: Callable[[HttpRequest, User], str], *, order: int = 100) -> None:
    """Add (or replace, by ``name``) a section of the person page; called from an AppConfig.ready()."""
    PERSON_SECTIONS[name] = PersonSection(name=name, order=order, render=render)


def person_sections(request: HttpRequest, user: User) -> list[SafeString | str]:
    """The registered sections' HTML for ``user``, in order."""
    sections = sorted(PERSON_SECTIONS.values(), key=lambda section: (section.order, section.name))
    return [section.render(request, user) for section in sections]


def person_get(pk: int) -> tuple[User, list[Device]]:
    """The device user ``pk`` and their devices (newest first). Raises Http404 for an unknown id."""
    user = get_object_or_404(User, pk=pk)
    devices = list(Device.objects.filter(user=user).order_by("-last_seen_at", "-id"))
    return user, devices
