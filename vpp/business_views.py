"""Setting › Apple Business: one view, one form per card (the account, check, scope, sync)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect, render

from vpp.business_account import BusinessNotConfigured
from vpp.business_forms import BusinessAccountForm, BusinessScopeForm
from vpp.jobs.phases import phase_label
from vpp.models import AppleBusinessSetting, Job, JobStatus, TokenHealth
from vpp.services import Refused
from vpp.services import business as service

# Settings pages share one permission (the Administrator role: accounts/roles.py, docs/roles.md).
CHANGE_PERM = "vpp.change_vppserversetting"
HEALTH_BADGE = {TokenHealth.VALID: "badge-ok", TokenHealth.MISSING: "badge-muted"}


def _context(request, setting: AppleBusinessSetting, **bound) -> dict:
    can_change = request.user.has_perm(CHANGE_PERM)
    account_form = bound.get("account_form") or BusinessAccountForm(
        initial={"client_id": setting.client_id, "key_id": setting.key_id}
    )
    scope_form = bound.get("scope_form") or BusinessScopeForm(
        groups=setting.groups, initial={"groups": setting.scope_group_ids, "on_schedule": setting.on_schedule}
    )
    if not can_change:
        for form in (account_form, scope_form):
            for field in form.fields.values():
                field.disabled = True
    running = Job.objects.filter(pk=setting.running_job_id).first() if setting.running_job_id else None
    return {
        "setting": setting,
        "can_change": can_change,
        "account_form": account_form,
        "scope_form": scope_form,
        "health_badge": HEALTH_BADGE.get(setting.health, "badge-danger"),
        "running_job": running,
        "running_phase": phase_label(running.phase) if running and running.status == JobStatus.RUNNING else "",
        "last_job": Job.objects.filter(pk=setting.last_job_id).first() if setting.last_job_id else None,
        "dry_run_job": Job.objects.filter(pk=setting.last_dry_run_job_id).first()
        if setting.last_dry_run_job_id
        else None,
        "needs_dry_run": setting.first_sync_at is None and setting.last_dry_run_job_id is None,
        "open_section": bound.get("open_section", ""),
    }


@login_required
def business_setting(request):
    setting = AppleBusinessSetting.load()
    if request.method != "POST":
        return render(request, "vpp/business_setting.html", _context(request, setting))
    if not request.user.has_perm(CHANGE_PERM):
        raise PermissionDenied("You may view but not change the Apple Business setting.")
    handler = SECTION_HANDLERS.get(request.POST.get("section", ""))
    if handler is None:
        return HttpResponseBadRequest("unknown section")
    bound = handler(request, setting)
    if bound is None:
        return redirect("vpp:business-setting")
    return render(request, "vpp/business_setting.html", _context(request, setting, **bound), status=422)


def _account(request, setting):
    form = BusinessAccountForm(request.POST, request.FILES)
    if not form.is_valid():
        return {"account_form": form, "open_section": "account"}
    data = form.cleaned_data
    try:
        setting = service.business_account_save(
            client_id=data["client_id"], key_id=data["key_id"], private_key=data["private_key"], actor=request.user
        )
    except service.AccountRejected as exc:
        form.add_error(None, exc.reason)
        return {"account_form": form, "open_section": "account"}
    messages.success(request, f"API account saved and checked: {setting.org_name or 'connected'}.")
    return None


def _check(request, setting):
    try:
        setting = service.business_connection_check(actor=request.user)
    except (BusinessNotConfigured, Refused) as exc:
        messages.error(request, getattr(exc, "reason", None) or str(exc))
        return None
    if setting.health == TokenHealth.VALID:
        messages.info(request, f"Connected to {setting.org_name or 'Apple Business'}.")
    else:
        messages.error(request, f"Apple Business refused the account: {setting.health_detail}")
    return None


def _remove(request, setting):
    service.business_account_remove(actor=request.user)
    messages.success(request, "API account removed. People already synced stay.")
    return None


def _scope(request, setting):
    form = BusinessScopeForm(request.POST, groups=setting.groups)
    if not form.is_valid():
        return {"scope_form": form, "open_section": "scope"}
    try:
        service.business_scope_save(
            group_ids=form.cleaned_data["groups"], on_schedule=form.cleaned_data["on_schedule"], actor=request.user
        )
    except Refused as exc:
        form.add_error(None, exc.reason)
        return {"scope_form": form, "open_section": "scope"}
    messages.success(request, "Scope saved.")
    return None


def _start(request, setting, *, dry_run: bool):
    try:
        started = service.directory_sync_start(actor=request.user, dry_run=dry_run)
    except Refused as exc:
        messages.error(request, exc.reason)
        return None
    what = "Dry run" if dry_run else "Sync"
    if started.started:
        messages.success(request, f"{what} started (job #{started.job.pk}).")
    else:
        messages.info(request, f"A sync is already running (job #{started.job.pk}).")
    return None


SECTION_HANDLERS = {
    "account": _account,
    "check": _check,
    "remove": _remove,
    "scope": _scope,
    "dry_run": lambda request, setting: _start(request, setting, dry_run=True),
    "sync": lambda request, setting: _start(request, setting, dry_run=False),
}
