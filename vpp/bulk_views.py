"""Bulk VPP actions and their jobs: thin views over vpp.services / vpp.selectors.

Flow: POST confirm (modal with the plan) → POST apply (job + panel) → GET panel (polled).
Permissions are checked on confirm and apply; a viewer sees the pages but cannot act.
"""

from __future__ import annotations

import csv

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling, trigger_client_event

from users.forms import UserSelectionForm
from users.models import User
from users.selectors import EXTRA_FILTERS
from vpp import selectors
from vpp.invitations.helpdesk import HELPDESK, HELPDESK_LABEL
from vpp.jobs.engine import job_create, job_retry_failed
from vpp.jobs.plan import vpp_plan_build
from vpp.models import InvitationChannel, ItemStatus, Job, JobAction, VppServerSetting
from vpp.services.orphans import OrphansRefused, orphan_plan_build, orphans_act

ACTION_SLUGS = {"invite": JobAction.INVITE, "delete": JobAction.DELETE, "sync": JobAction.SYNC}
PERMISSIONS = {
    JobAction.INVITE: "vpp.invite_vppuser",
    JobAction.DELETE: "vpp.delete_vppuser",
    JobAction.SYNC: "vpp.sync_vppuser",
}
# Ticked rows are at most a page (200); anything far above that is not the Users page.
MAX_TICKED_IDS = 5000
PREVIEW_NAMES = 8


def _client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def action_blocker(setting: VppServerSetting) -> str:
    """Why no VPP user action can run now ("" when they can)."""
    return selectors.vpp_actions_disabled_reason(setting) or ""


def _forbidden(request, action: str) -> HttpResponse:
    context = {"message": f"You do not have permission to {JobAction(action).label.lower()}.", "action": action}
    return render(request, "vpp/bulk/forbidden.html", context, status=403)


def _selection(request):
    """(the parsed selection form or None, a problem to show)."""
    if getattr(request, "bulk_too_many", False):
        return None, (
            f"Too many users were ticked at once (more than {MAX_TICKED_IDS:,}). "
            "Use “Select all users matching this filter” instead."
        )
    form = UserSelectionForm(request.POST)
    if "pk" in form.errors:
        return None, "The selection was not understood (invalid user ids). Reload the page and try again."
    if not form.selects_all and not form.cleaned_data.get("pk"):
        return None, "Select at least one user."
    if len(form.cleaned_data.get("pk") or []) > MAX_TICKED_IDS:
        return None, f"Too many users ticked at once (more than {MAX_TICKED_IDS:,}). Use “Select all matching”."
    return form, ""


def _channel(request, action: str, form, setting: VppServerSetting) -> str:
    """The invitation channel: the setting's, or the helpdesk for one ticked user when the
    person page asks for it (``channel=helpdesk``; vpp/invitations/helpdesk.py)."""
    if action != JobAction.INVITE:
        return ""
    one_user = not form.selects_all and len(set(form.cleaned_data.get("pk") or [])) == 1
    if request.POST.get("channel") == HELPDESK and one_user:
        return HELPDESK
    return setting.invitation_channel


def _channel_label(channel: str) -> str:
    return HELPDESK_LABEL if channel == HELPDESK else InvitationChannel(channel).label


def _plan_for(request, action: str, form, setting: VppServerSetting):
    channel = _channel(request, action, form, setting)
    return vpp_plan_build(action=action, users=form.selected_users(), channel=channel)


def _hidden_selection(request) -> list[tuple[str, str]]:
    """The posted selection, carried unchanged from the confirm modal to apply."""
    keep = ("pk", "select_all", "q", "platform", "activated", "channel", *EXTRA_FILTERS)
    return [(key, value) for key in keep for value in request.POST.getlist(key)]


@login_required
@require_POST
def bulk_confirm(request, action: str):
    action = ACTION_SLUGS.get(action) or _not_found()
    if not request.user.has_perm(PERMISSIONS[action]):
        return _forbidden(request, action)
    setting = VppServerSetting.load()
    form, problem = _selection(request)
    context = {
        "action": action,
        "action_label": JobAction(action).label,
        "problem": problem,
        "blocker": action_blocker(setting),
        "setting": setting,
    }
    if form is not None and not context["blocker"]:
        plan = _plan_for(request, action, form, setting)
        posted = form.cleaned_data.get("pk") or []
        context.update(
            plan=plan,
            eligible_count=len(plan.eligible),
            skip_counts=plan.skip_counts(),
            steps=plan.step_counts(),
            preview=[row.label for row in plan.eligible[:PREVIEW_NAMES]],
            unknown_ids=0 if form.selects_all else max(0, len(set(posted)) - len(plan.rows)),
            selection=_hidden_selection(request),
            select_all=form.selects_all,
            channel_label=_channel_label(plan.channel or setting.invitation_channel),
        )
        if action == JobAction.INVITE:
            eligible = {row.user_id for row in plan.eligible}
            context["shared_mailboxes"] = selectors.shared_mailboxes(form.selected_users(), eligible)
    return render(request, "vpp/bulk/confirm.html", context)


@login_required
@require_POST
def bulk_apply(request, action: str):
    action = ACTION_SLUGS.get(action) or _not_found()
    if not request.user.has_perm(PERMISSIONS[action]):
        return _forbidden(request, action)
    setting = VppServerSetting.load()
    blocker = action_blocker(setting)
    form, problem = _selection(request)
    if action == JobAction.DELETE and request.POST.get("understood") != "yes":
        problem = "Tick the box to confirm that licences will be revoked and the users retired."
    if blocker or problem:
        context = {"action": action, "action_label": JobAction(action).label, "problem": problem or blocker}
        return render(request, "vpp/bulk/confirm.html", context, status=200)
    plan = _plan_for(request, action, form, setting)
    job = job_create(plan=plan, actor=request.user, selection=form.selection(), ip=_client_ip(request))
    return render(request, "vpp/bulk/started.html", _panel_context(job))


def _not_found():
    raise Http404("Unknown action")


# --------------------------------------------------------------------------- job pages


def _panel_context(job: Job) -> dict:
    counts = selectors.job_item_counts(job)
    done = counts[ItemStatus.SUCCEEDED] + counts[ItemStatus.FAILED] + counts[ItemStatus.SKIPPED]
    waiting = job.delivery_retry_until is not None and job.delivery_retry_until > timezone.now()
    return {
        "job": job,
        "counts": counts,
        "processed": done,
        "delivery_waiting": waiting,
        "percent": 100 if not job.total else min(100, round(100 * done / job.total)),
    }


@login_required
@require_GET
def job_panel(request, pk: int):
    job = get_object_or_404(Job, pk=pk)
    response = render(request, "vpp/jobs/panel.html", _panel_context(job))
    if job.finished:
        # 286: htmx swaps this last version in and stops polling; the Users table refreshes.
        response.status_code = HttpResponseStopPolling.status_code
        trigger_client_event(response, "vppJobFinished", {"job": job.pk})
    return response


@login_required
@require_GET
def job_detail(request, pk: int):
    job = get_object_or_404(Job.objects.select_related("started_by"), pk=pk)
    status = request.GET.get("status", "")
    status = status if status in ItemStatus.values else ""
    items = Paginator(selectors.job_items(job, status=status or None), 100).get_page(request.GET.get("page"))
    context = {
        **_panel_context(job),
        "items": items,
        "status_filter": status,
        "statuses": ItemStatus.choices,
        "can_retry": job.action in PERMISSIONS and request.user.has_perm(PERMISSIONS[job.action]),
    }
    return render(request, "vpp/jobs/detail.html", context)


@login_required
@require_GET
def job_list(request):
    return render(request, "vpp/jobs/list.html", {"jobs": selectors.recent_jobs(100)})


class _Echo:
    def write(self, value):
        return value


@login_required
@require_GET
def job_export(request, pk: int):
    job = get_object_or_404(Job, pk=pk)
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow(["user", "status", "apple_error_number", "reason", "client_user_id", "attempts"])
        for item in selectors.job_items(job).iterator(chunk_size=2000):
            cuid = str(item.vpp_user.client_user_id) if item.vpp_user else ""
            label = item.user_label
            if label[:1] in ("=", "+", "-", "@"):
                label = "'" + label  # no formula injection in spreadsheets
            yield writer.writerow([label, item.status, item.error_number or "", item.reason, cuid, item.attempts])

    response = StreamingHttpResponse(rows(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="vpp-job-{job.pk}.csv"'
    return response


@login_required
@require_POST
def job_retry(request, pk: int):
    job = get_object_or_404(Job, pk=pk)
    if job.action not in PERMISSIONS:
        raise Http404("Only bulk actions can be retried here")
    if not request.user.has_perm(PERMISSIONS[job.action]):
        return _forbidden(request, job.action)
    blocker = action_blocker(VppServerSetting.load())
    if blocker:
        return render(request, "vpp/bulk/forbidden.html", {"message": blocker}, status=409)
    retry = job_retry_failed(job=job, actor=request.user, ip=_client_ip(request))
    target = reverse("jobs:detail", args=[retry.pk if retry else job.pk])
    return HttpResponseClientRedirect(target) if request.htmx else redirect(target)


# --------------------------------------------------------------------------- orphans (sync result page)

ORPHANS_PERMISSION = "vpp.delete_vppuser"  # retiring at Apple is a deletion; adopting changes who is a VPP user


def _orphan_choices(request) -> tuple[list[int], dict[int, int], str]:
    """(orphan ids, {orphan id: device user id} to adopt, a problem) from the posted form:
    ``do_<id>`` = "retire" | "adopt:<user id>", or ``adopt_login_<id>`` = a login id or email."""
    orphan_ids, adopt, unknown = [], {}, []
    for key, value in request.POST.items():
        if not key.startswith("do_") or not key[3:].isdigit():
            continue
        orphan_id = int(key[3:])
        login = request.POST.get(f"adopt_login_{orphan_id}", "").strip()
        if login:
            user = User.objects.filter(login_id=login).first() or User.objects.filter(email__iexact=login).first()
            if user is None:
                unknown.append(login)
                continue
            orphan_ids.append(orphan_id)
            adopt[orphan_id] = user.pk
        elif value == "retire":
            orphan_ids.append(orphan_id)
        elif value.startswith("adopt:") and value[6:].isdigit():
            orphan_ids.append(orphan_id)
            adopt[orphan_id] = int(value[6:])
    problem = f"No device user has the login id or email {', '.join(unknown)}." if unknown else ""
    return orphan_ids, adopt, problem


def _orphans_context(request, job: Job) -> dict:
    orphan_ids, adopt, problem = _orphan_choices(request)
    context = {"job": job, "problem": problem, "blocker": action_blocker(VppServerSetting.load())}
    if problem or context["blocker"]:
        return context
    try:
        plan = orphan_plan_build(run_job_id=job.pk, orphan_ids=orphan_ids, adopt=adopt)
    except OrphansRefused as exc:
        context["problem"] = exc.reason
        return context
    choices = [(f"do_{oid}", f"adopt:{adopt[oid]}" if oid in adopt else "retire") for oid in orphan_ids]
    context.update(plan=plan, choices=choices)
    return context


def _orphans_view(view):
    """POST only, logged in, with the permission, on a full sync's job (``job`` for ``pk``)."""

    @login_required
    @require_POST
    def wrapped(request, pk: int):
        job = get_object_or_404(Job, pk=pk, action=JobAction.SYNC_ALL)
        if not request.user.has_perm(ORPHANS_PERMISSION):
            return _forbidden(request, JobAction.DELETE)
        return view(request, job)

    return wrapped


@_orphans_view
def orphans_confirm(request, job: Job):
    """The sync result page's orphan actions: what will happen, before anything is done."""
    return render(request, "vpp/orphans_confirm.html", _orphans_context(request, job))


@_orphans_view
def orphans_apply(request, job: Job):
    """Make the orphans job the admin confirmed (the plan is built again), then show it."""
    context = _orphans_context(request, job)
    if "plan" in context and request.POST.get("understood") != "yes":
        context["problem"] = "Tick the box to confirm what will be done at Apple."
    if context["problem"] or context["blocker"]:
        return render(request, "vpp/orphans_confirm.html", context, status=422)
    try:
        started = orphans_act(plan=context["plan"], run_job_id=job.pk, actor=request.user, ip=_client_ip(request))
    except OrphansRefused as exc:
        context["problem"] = exc.reason
        return render(request, "vpp/orphans_confirm.html", context, status=422)
    return redirect("jobs:detail", pk=started.pk)
