"""Bulk VPP actions and their jobs: thin views over vpp.services / vpp.selectors.

Flow: POST confirm (modal with the plan) → POST apply (job + panel) → GET panel (polled).
Permissions are checked on confirm and apply; a viewer sees the pages but cannot act.
"""

from __future__ import annotations

import hashlib
import json

from axes.helpers import get_client_ip_address
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling, trigger_client_event

from kmconsole.csv_export import SafeCsvWriter
from users.forms import UserSelectionForm, valid_pk
from users.models import User
from users.selectors import DEFAULT_SORT, EXTRA_FILTERS, SORTS
from vpp import selectors
from vpp.forms import JobFilterForm
from vpp.invitations.helpdesk import HELPDESK, HELPDESK_LABEL
from vpp.jobs.engine import JobConflict, job_create, job_retry_failed
from vpp.jobs.items import job_wait_state
from vpp.jobs.plan import SKIP_REASONS, vpp_plan_build
from vpp.jobs.progress import job_progress
from vpp.models import InvitationChannel, ItemStatus, Job, JobAction, VppServerSetting
from vpp.services.orphans import OrphansRefused, orphan_plan_build, orphans_act

ACTION_SLUGS = {
    "invite": JobAction.INVITE,
    "delete": JobAction.DELETE,
    "sync": JobAction.SYNC,
    "convert": JobAction.CONVERT,
}
PERMISSIONS = {
    JobAction.INVITE: "vpp.invite_vppuser",
    JobAction.DELETE: "vpp.delete_vppuser",
    JobAction.SYNC: "vpp.sync_vppuser",
    JobAction.CONVERT: "vpp.invite_vppuser",  # linking replaces the invitation
}
# Ticked rows are at most a page (200); anything far above that is not the Users page.
MAX_TICKED_IDS = 5000
PREVIEW_NAMES = 8
# Skipped users listed by name in the confirmation before "Show all".
SKIPPED_SHOWN = 50
JOBS_PER_PAGE = 50


def _client_ip(request) -> str | None:
    # As the login throttle sees it: REMOTE_ADDR, or behind the proxy the address it appended (docs/roles.md).
    return get_client_ip_address(request) or None


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
    problem = form.problem()
    if problem:
        return None, problem
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
    keep = ("pk", "select_all", "q", "platform", "activated", "sort", "channel", *EXTRA_FILTERS)
    return [(key, value) for key in keep for value in request.POST.getlist(key)]


# The confirmation's plan travels to apply as a signed digest (the hidden field PLAN_FIELD): apply
# acts only when the selection still resolves to exactly the plan the admin saw.
PLAN_FIELD = "plan"
PLAN_SALT = "vpp.bulk.plan"
PLAN_MAX_AGE = 3600  # seconds: a confirmation left open longer is shown again, fresh


def _plan_facts(*, plan, selection, admin_pk: int) -> list:
    # Digests, not the ids: a token for 5,000 ticked users stays a short hidden field.
    chosen = hashlib.sha256(json.dumps(selection.to_json(), sort_keys=True).encode()).hexdigest()
    return [admin_pk, chosen, plan.digest()]


def plan_token(*, plan, selection, admin_pk: int) -> str:
    """The signed token of ``plan`` for the confirm modal: who confirmed, what was selected (its
    JSON's SHA-256) and the plan's digest (``Plan.digest``)."""
    return signing.dumps(_plan_facts(plan=plan, selection=selection, admin_pk=admin_pk), salt=PLAN_SALT)


def plan_token_matches(token: str, *, plan, selection, admin_pk: int) -> bool:
    """Whether ``token`` (from ``plan_token``, at most PLAN_MAX_AGE seconds old) names this very plan,
    selection and admin."""
    try:
        signed = signing.loads(token, salt=PLAN_SALT, max_age=PLAN_MAX_AGE)
    except signing.BadSignature:  # also SignatureExpired
        return False
    return signed == _plan_facts(plan=plan, selection=selection, admin_pk=admin_pk)


def _nothing_selected(form) -> str:
    if form.selects_all:
        return "No users match this filter. Nothing was selected."
    return "None of the selected users exist any more (deleted, or unknown ids). Reload the Users page."


def _confirm_context(request, action: str, setting: VppServerSetting) -> dict:
    form, problem = _selection(request)
    context = {
        "action": action,
        "action_label": JobAction(action).label,
        "problem": problem,
        "blocker": action_blocker(setting),
        "setting": setting,
    }
    if form is None or context["blocker"]:
        return context
    plan = _plan_for(request, action, form, setting)
    if not plan.rows:
        context["problem"] = _nothing_selected(form)
        return context
    posted = form.cleaned_data.get("pk") or []
    token = plan_token(plan=plan, selection=form.selection(), admin_pk=request.user.pk)
    context.update(
        plan=plan,
        eligible_count=len(plan.eligible),
        skip_counts=plan.skip_counts(),
        steps=plan.step_counts(),
        preview=[row.label for row in plan.eligible[:PREVIEW_NAMES]],
        unknown_ids=0 if form.selects_all else max(0, len(set(posted)) - len(plan.rows)),
        selection=[*_hidden_selection(request), (PLAN_FIELD, token)],
        select_all=form.selects_all,
        channel_label=_channel_label(plan.channel or setting.invitation_channel),
        **_skipped_list(plan, form, show_all=request.POST.get("skipped") == "all"),
        silent_count=plan.silent_count,
        invited_count=len(plan.eligible) - plan.silent_count,
    )
    if action == JobAction.INVITE:
        eligible = {row.user_id for row in plan.eligible}
        context["shared_mailboxes"] = selectors.shared_mailboxes(form.selected_users(), eligible)
    return context


@login_required
@require_POST
def bulk_confirm(request, action: str):
    action = ACTION_SLUGS.get(action) or _not_found()
    if not request.user.has_perm(PERMISSIONS[action]):
        return _forbidden(request, action)
    context = _confirm_context(request, action, VppServerSetting.load())
    # A refused selection is a 422 with its reason (static/js/vpp.js shows it in the modal).
    return render(request, "vpp/bulk/confirm.html", context, status=422 if context["problem"] else 200)


def _skipped_list(plan, form, *, show_all: bool) -> dict:
    """The skipped users by name with their reason, in the Users table's order (its sort, posted
    with the selection): the first SKIPPED_SHOWN, or all of them with ``show_all``."""
    skipped = {row.user_id: row for row in plan.skipped}
    rows = []
    if skipped:
        ordered = form.selected_users().order_by(*SORTS.get(form.sort_key, SORTS[DEFAULT_SORT]))
        for pk in ordered.values_list("pk", flat=True).iterator(chunk_size=2000):
            if pk in skipped:
                rows.append((skipped[pk].label, SKIP_REASONS[skipped[pk].skip_reason]))
                if len(rows) == SKIPPED_SHOWN and not show_all:
                    break
    return {"skipped_rows": rows, "skipped_all": show_all, "skipped_more": len(skipped) - len(rows)}


@login_required
@require_POST
def bulk_apply(request, action: str):
    """Start the job the confirmation showed, or say why not (nothing changes then).

    Refused: an unusable token or setting, a selection that is not understood, nobody left to act
    on, a delete without its tick, and a plan that differs from the confirmed one (signed digest,
    PLAN_FIELD): then the confirmation is shown again, fresh, with a notice.
    """
    action = ACTION_SLUGS.get(action) or _not_found()
    if not request.user.has_perm(PERMISSIONS[action]):
        return _forbidden(request, action)
    setting = VppServerSetting.load()
    blocker = action_blocker(setting)
    form, problem = _selection(request)
    if action == JobAction.DELETE and request.POST.get("understood") != "yes":
        problem = "Tick the box to confirm that licences will be revoked and the users retired."
    if blocker or problem:
        return _refused(request, action, problem or blocker)
    plan = _plan_for(request, action, form, setting)
    if not plan.rows:
        return _refused(request, action, _nothing_selected(form))
    selection = form.selection()
    token = request.POST.get(PLAN_FIELD, "")
    if not plan_token_matches(token, plan=plan, selection=selection, admin_pk=request.user.pk):
        context = _confirm_context(request, action, setting)
        context["notice"] = (
            "The selection changed since the confirmation was shown (users were added, removed or changed, "
            "or the confirmation is over an hour old). Nothing was started: review it again."
            if token
            else "Nothing was started: confirm the action first."
        )
        return render(request, "vpp/bulk/confirm.html", context, status=409)
    if not plan.eligible:
        return _refused(request, action, "None of the selected users can be acted on. Nothing was started.")
    try:
        job = job_create(plan=plan, actor=request.user, selection=selection, ip=_client_ip(request))
    except JobConflict as conflict:
        context = {"action": action, "action_label": JobAction(action).label, "problem": conflict.reason}
        return render(request, "vpp/bulk/confirm.html", context, status=409)
    job.refresh_from_db()  # the enqueue ran on commit: a broker that refused it shows at once
    return render(request, "vpp/bulk/started.html", _panel_context(job))


def _refused(request, action: str, problem: str) -> HttpResponse:
    context = {"action": action, "action_label": JobAction(action).label, "problem": problem}
    return render(request, "vpp/bulk/confirm.html", context, status=422)


def _not_found():
    raise Http404("Unknown action")


# --------------------------------------------------------------------------- job pages


def _panel_context(job: Job) -> dict:
    progress = job_progress(job)
    waiting = job.delivery_retry_until is not None and job.delivery_retry_until > timezone.now()
    return {
        "job": job,
        "progress": progress,
        "counts": progress.counts,
        "delivery_waiting": waiting,
        "waiting": job_wait_state(job),
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
    form = JobFilterForm(request.GET, starters=selectors.job_starters())
    jobs = Paginator(selectors.jobs_filtered(**form.filters()), JOBS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "vpp/jobs/list.html", {"jobs": jobs, "form": form, "query": query.urlencode()})


@login_required
@require_GET
def job_export(request, pk: int):
    """The job's items as CSV; every cell is spreadsheet-safe (kmconsole.csv_export)."""
    job = get_object_or_404(Job, pk=pk)
    writer = SafeCsvWriter()

    def rows():
        yield writer.writerow(["user", "status", "apple_error_number", "reason", "client_user_id", "attempts"])
        for item in selectors.job_items(job).iterator(chunk_size=2000):
            cuid = str(item.vpp_user.client_user_id) if item.vpp_user else ""
            yield writer.writerow(
                [item.user_label, item.status, item.error_number or "", item.reason, cuid, item.attempts]
            )

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
    try:
        retry = job_retry_failed(job=job, actor=request.user, ip=_client_ip(request))
    except JobConflict as conflict:
        return render(request, "vpp/bulk/forbidden.html", {"message": conflict.reason}, status=409)
    if retry is None:
        messages.warning(request, f"Nothing to retry: job #{job.pk} has no failed users that still exist.")
    target = reverse("jobs:detail", args=[retry.pk if retry else job.pk])
    return HttpResponseClientRedirect(target) if request.htmx else redirect(target)


# --------------------------------------------------------------------------- orphans (sync result page)

ORPHANS_PERMISSION = "vpp.delete_vppuser"  # retiring at Apple is a deletion; adopting changes who is a VPP user


def _orphan_choices(request) -> tuple[list[int], dict[int, int], str]:
    """(orphan ids, {orphan id: device user id} to adopt, a problem) from the posted form:
    ``do_<id>`` = "retire" | "adopt:<user id>", or ``adopt_login_<id>`` = a login id or email."""
    orphan_ids, adopt, unknown = [], {}, []
    for key, value in request.POST.items():
        if not key.startswith("do_") or not valid_pk(key[3:]):  # an id the database can hold
            continue
        orphan_id = int(key[3:])
        login = request.POST.get(f"adopt_login_{orphan_id}", "").strip()
        if login and not login.isprintable():  # a NUL or line break: no login id or email has one
            unknown.append(repr(login))
        elif login:
            user = User.objects.filter(login_id=login).first() or User.objects.filter(email__iexact=login).first()
            if user is None:
                unknown.append(login)
                continue
            orphan_ids.append(orphan_id)
            adopt[orphan_id] = user.pk
        elif value == "retire":
            orphan_ids.append(orphan_id)
        elif value.startswith("adopt:") and valid_pk(value[6:]):
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
