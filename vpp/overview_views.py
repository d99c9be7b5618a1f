"""The VPP overview page and the live parts of a person's page (thin views; reads in
vpp/overview.py and vpp/person.py)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import QueryDict
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from users.models import User
from vpp import overview, person, selectors
from vpp.bulk_views import PERMISSIONS, _client_ip, _forbidden
from vpp.models import JobAction, SyncSchedule, VppUser
from vpp.views import HEALTH_BADGE

RECENT_JOBS = 8


@login_required
@require_GET
def overview_page(request):
    """Funnel, token health, next sync, the last jobs (bench/overview.py: p95 < 100 ms at 100,000 users)."""
    users_url = reverse("users:list")
    rows = []
    for row in overview.funnel():
        query = QueryDict(mutable=True)
        query.update(row.url_params)
        rows.append({"row": row, "url": f"{users_url}?{query.urlencode()}"})
    setting = selectors.request_setting(request)
    context = {
        "funnel": rows,
        "setting": setting,
        "health_badge": HEALTH_BADGE.get(setting.token_health, "badge-danger"),
        "token_problem": selectors.token_problem(setting),
        "actions_disabled_reason": selectors.vpp_actions_disabled_reason(setting),
        "schedule": SyncSchedule.load(),
        "jobs": selectors.jobs_filtered()[:RECENT_JOBS],
        "nav_section": "vpp-overview",
    }
    return render(request, "vpp/overview.html", context)


@login_required
@require_GET
def person_licences(request, pk: int):
    """The licences a person holds at Apple, read live (an htmx fragment the person page loads)."""
    user = get_object_or_404(User, pk=pk)
    vpp_user = VppUser.objects.filter(user=user).first()
    return render(request, "vpp/person/licences.html", {"licences": person.person_licences(vpp_user)})


@login_required
@require_POST
def invitation_link(request, pk: int):
    """Reveal a person's invitation link and its QR code (an audit event; needs the invite permission)."""
    if not request.user.has_perm(PERMISSIONS[JobAction.INVITE]):
        return _forbidden(request, JobAction.INVITE)
    user = get_object_or_404(User, pk=pk)
    try:
        shown = person.invitation_link_reveal(user=user, actor=request.user, ip=_client_ip(request))
    except person.LinkUnavailable as exc:
        return render(request, "vpp/person/invitation_link.html", {"problem": str(exc)})
    return render(request, "vpp/person/invitation_link.html", shown)
