"""VPP Server Setting page (one view, one form per card) and Apple's notification receiver."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from vpp import forms as f
from vpp import secrets as vault
from vpp.content_token import NoContentToken
from vpp.invitations import message as invitation_message
from vpp.jobs.engine import job_start_message
from vpp.jobs.phases import phase_label
from vpp.models import AlertSetting, JobStatus, SyncSchedule, TokenHealth, VppServerSetting
from vpp.selectors import sync_orphans, token_problem, vpp_actions_disabled_reason
from vpp.services import alerts as alerts_service
from vpp.services import invitation_settings, notifications
from vpp.services import setting as setting_service
from vpp.services.schedule import ScheduleInput, schedule_update
from vpp.services.sync import SyncBlocked, running_sync_job, sync_start

logger = logging.getLogger(__name__)
CHANGE_PERM = "vpp.change_vppserversetting"
PENDING_TOKEN_KEY = "vpp_pending_unit_token"  # a token of another unit awaiting confirmation (encrypted)
HEALTH_BADGE = {TokenHealth.VALID: "badge-ok", TokenHealth.EXPIRING: "badge-warn", TokenHealth.MISSING: "badge-muted"}


def _schedule_initial(schedule: SyncSchedule) -> dict:
    return {
        "enabled": schedule.enabled,
        "mode": schedule.mode,
        "interval_hours": schedule.interval_hours,
        "time_of_day": schedule.time_of_day,
        "timezone": schedule.timezone,
    }


def _alerts_initial() -> dict:
    alerts = AlertSetting.load()
    return {"enabled": alerts.enabled, "recipients": alerts.recipients}


def _context(request, setting, schedule, **bound) -> dict:
    can_change = request.user.has_perm(CHANGE_PERM)
    forms = {
        "token_form": bound.get("token_form") or f.TokenUploadForm(),
        "takeover_form": bound.get("takeover_form") or f.TakeoverForm(),
        "unit_change_form": bound.get("unit_change_form") or f.UnitChangeForm(),
        "assignment_form": bound.get("assignment_form") or f.AssignmentForm(instance=setting),
        "invitation_form": bound.get("invitation_form") or f.InvitationForm(instance=setting),
        "lifecycle_form": bound.get("lifecycle_form") or f.LifecycleForm(instance=setting),
        "schedule_form": bound.get("schedule_form") or f.ScheduleForm(initial=_schedule_initial(schedule)),
        "alerts_form": bound.get("alerts_form") or f.AlertsForm(initial=_alerts_initial(), prefix="alerts"),
        "notifications_form": bound.get("notifications_form")
        or f.NotificationsForm(initial={"public_url": setting.notification_url.removesuffix("/vpp/notifications/")}),
    }
    if not can_change:
        for form in forms.values():
            for field in form.fields.values():
                field.disabled = True
    return {
        **forms,
        "setting": setting,
        "can_change": can_change,
        **_sync_context(schedule),
        "token_problem": token_problem(setting),
        "actions_disabled_reason": vpp_actions_disabled_reason(setting),
        "open_section": bound.get("open_section", ""),
        "unit_change": bound.get("unit_change"),
        "health_badge": HEALTH_BADGE.get(setting.token_health, "badge-danger"),
    }


def _sync_context(schedule: SyncSchedule) -> dict:
    orphans, orphan_count = sync_orphans(schedule.last_job_id)
    running = running_sync_job()
    return {
        "schedule": schedule,
        "running_job": running,
        "running_phase": phase_label(running.phase) if running and running.status == JobStatus.RUNNING else "",
        "orphans": orphans,
        "orphan_count": orphan_count,
    }


@login_required
def server_setting(request):
    setting, schedule = VppServerSetting.load(), SyncSchedule.load()
    if request.method != "POST":
        return render(request, "vpp/server_setting.html", _context(request, setting, schedule))
    if not request.user.has_perm(CHANGE_PERM):
        raise PermissionDenied("You may view but not change the VPP server setting.")
    section = "send_test" if request.POST.get("send_test") else request.POST.get("section", "")
    handler = SECTION_HANDLERS.get(section)
    if handler is None:
        return HttpResponseBadRequest("unknown section")
    bound = handler(request, setting, schedule)
    if bound is None:
        return redirect("vpp:server-setting")
    return render(request, "vpp/server_setting.html", _context(request, setting, schedule, **bound), status=422)


def _token_upload(request, setting, schedule):
    form = f.TokenUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return {"token_form": form, "open_section": "token"}
    data = form.cleaned_data["token_data"]
    try:
        setting = setting_service.token_upload(data=data, actor=request.user)
    except setting_service.TokenRejected as exc:
        form.add_error(None, exc.reason)
        return {"token_form": form, "open_section": "token"}
    except setting_service.UnitChangeUnconfirmed as exc:
        # Kept encrypted in the session until the admin confirms; never rendered back.
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
        request.session[PENDING_TOKEN_KEY] = {"token": vault.encrypt(text), "reason": exc.reason}
        return {"open_section": "token", "unit_change": exc.reason}
    return _token_saved(request, setting)


def _token_saved(request, setting):
    if setting.token_health == "other_mdm":
        messages.warning(
            request,
            f"Token stored, but the location is managed by {setting.other_mdm_name!r}. "
            "Review the takeover below before kmconsole uses it.",
        )
    else:
        messages.success(request, f"Content token for {setting.location_name or setting.token_org_name} saved.")
    return None


def _token_unit_change(request, setting, schedule):
    """The admin confirmed the token of another organizational unit uploaded just before."""
    form = f.UnitChangeForm(request.POST)
    pending = request.session.get(PENDING_TOKEN_KEY)
    if pending is None:
        messages.error(request, "Nothing to confirm any more: upload the token of the new organizational unit again.")
        return None
    if not form.is_valid():
        return {"unit_change_form": form, "open_section": "token", "unit_change": pending["reason"]}
    del request.session[PENDING_TOKEN_KEY]
    try:
        setting = setting_service.token_upload(
            data=vault.decrypt(pending["token"]), actor=request.user, confirm_unit_change=True
        )
    except setting_service.TokenRejected as exc:
        messages.error(request, exc.reason)
        return None
    unit = setting.location_name or setting.token_org_name
    messages.info(request, f"kmconsole now uses the organizational unit {unit}.")
    return _token_saved(request, setting)


def _token_remove(request, setting, schedule):
    setting_service.token_remove(actor=request.user)
    messages.success(request, "Content token removed. VPP actions are off until a new token is uploaded.")
    return None


def _token_check(request, setting, schedule):
    check = setting_service.token_check_health(interactive=True)
    label = TokenHealth(check.health).label
    if check.not_checked:
        messages.warning(
            request,
            f"The token could not be checked with Apple: {check.not_checked} "
            "The state shown is still the last known one.",
        )
    else:
        messages.info(request, f"Token checked with Apple: {label}.")
    return None


def _takeover(request, setting, schedule):
    form = f.TakeoverForm(request.POST)
    if not form.is_valid():
        return {"takeover_form": form, "open_section": "takeover"}
    try:
        setting_service.token_takeover(actor=request.user)
    except (setting_service.TakeoverRefused, NoContentToken) as exc:
        form.add_error(None, str(exc))  # a sentence for the admin
        return {"takeover_form": form, "open_section": "takeover"}
    messages.success(request, "kmconsole now manages this location.")
    return None


def _assignment(request, setting, schedule):
    form = f.AssignmentForm(request.POST, instance=setting)
    if not form.is_valid():
        return {"assignment_form": form}
    setting_service.assignment_update(method=form.cleaned_data["assignment_method"], actor=request.user)
    messages.success(request, "Assignment method saved.")
    return None


def _invitations(request, setting, schedule):
    form = f.InvitationForm(request.POST, instance=setting)
    if not form.is_valid():
        return {"invitation_form": form, "open_section": "invitations"}
    data = form.cleaned_data
    invitation_settings.invitation_settings_update(
        channel=data["invitation_channel"],
        sender=data["invitation_sender"],
        subject=data["invitation_subject"],
        body_text=data["invitation_body_text"],
        body_html=data["invitation_body_html"],
        actor=request.user,
    )
    messages.success(request, "Invitation settings saved.")
    return None


def _schedule(request, setting, schedule):
    form = f.ScheduleForm(request.POST, initial=_schedule_initial(schedule))
    if not form.is_valid():
        return {"schedule_form": form, "open_section": "schedule"}
    schedule_update(data=ScheduleInput(**form.cleaned_data), actor=request.user)
    messages.success(request, "Automatic sync saved; it applies within a minute.")
    return None


def _lifecycle(request, setting, schedule):
    form = f.LifecycleForm(request.POST, instance=VppServerSetting.load())
    if not form.is_valid():
        return {"lifecycle_form": form, "open_section": "lifecycle"}
    invitation_settings.lifecycle_update(data=form.cleaned_data, actor=request.user)
    messages.success(request, "Managed Apple Account linking and reminders saved; they apply within a minute.")
    return None


def _sync_now(request, setting, schedule):
    try:
        started = sync_start(actor=request.user, trigger="manual")
    except SyncBlocked as exc:
        messages.error(request, f"Sync not started: {exc.reason}")
        return None
    if started.started:
        ok, text = job_start_message(started.job)
        (messages.success if ok else messages.error)(request, text)
    else:
        messages.info(request, f"A sync is already running (job #{started.job.pk}); showing it.")
    return None


def _notifications(request, setting, schedule):
    form = f.NotificationsForm(request.POST)
    if not form.is_valid():
        return {"notifications_form": form, "open_section": "notifications"}
    try:
        setting_service.notifications_configure(public_url=form.cleaned_data["public_url"], actor=request.user)
    except (setting_service.NotificationSetupError, NoContentToken) as exc:
        form.add_error(None, getattr(exc, "reason", "Upload a content token first."))
        return {"notifications_form": form, "open_section": "notifications"}
    messages.success(request, "Apple will send notifications to this console.")
    return None


def _alerts(request, setting, schedule):
    form = f.AlertsForm(request.POST, prefix="alerts")
    if not form.is_valid():
        return {"alerts_form": form, "open_section": "alerts"}
    try:
        alerts_service.alerts_update(
            enabled=form.cleaned_data["enabled"], recipients=form.cleaned_data["recipients"], actor=request.user
        )
    except alerts_service.RecipientsInvalid as exc:
        form.add_error("recipients", str(exc))
        return {"alerts_form": form, "open_section": "alerts"}
    messages.success(request, "Alert settings saved.")
    return None


def _send_test(request, setting, schedule):
    try:
        sent = invitation_settings.invitation_test_send(actor=request.user)
    except invitation_settings.InvitationTestNotSent as exc:
        messages.error(request, exc.reason)
        return None
    messages.success(request, f"Test invitation sent to {sent.to[0]}.")
    return None


SECTION_HANDLERS = {
    "lifecycle": _lifecycle,
    "token": _token_upload,
    "token_remove": _token_remove,
    "token_check": _token_check,
    "takeover": _takeover,
    "token_unit_change": _token_unit_change,
    "assignment": _assignment,
    "invitations": _invitations,
    "schedule": _schedule,
    "sync_now": _sync_now,
    "notifications": _notifications,
    "send_test": _send_test,
    "alerts": _alerts,
}


@login_required
@require_POST
def invitation_preview(request):
    """htmx: the invitation rendered with sample values, from the (unsaved) form fields."""
    setting = VppServerSetting.load()
    # An unsaved copy: previewing must not change the stored templates.
    form = f.InvitationForm(request.POST, instance=VppServerSetting(pk=setting.pk))
    preview, error = None, None
    if form.is_valid():
        data = form.cleaned_data
        preview = invitation_message.invitation_render(
            subject=data["invitation_subject"],
            body_text=data["invitation_body_text"],
            body_html=data["invitation_body_html"],
            values=invitation_message.sample_values(setting),
        )
    else:
        error = "; ".join(str(e) for errors in form.errors.values() for e in errors)
    return render(request, "vpp/server_setting.html#invitation-preview", {"preview": preview, "preview_error": error})


@login_required
def sync_status(request):
    """htmx: the sync card's status block (polled while a sync runs)."""
    return render(request, "vpp/server_setting.html#sync-status", _sync_context(SyncSchedule.load()))


@csrf_exempt
@require_POST
def notification_receiver(request):
    """Apple's notifications (bearer-token authenticated, not a browser endpoint)."""
    if not notifications.notification_authorized(request.headers.get("Authorization")):
        return HttpResponse(status=401, headers={"WWW-Authenticate": 'Bearer realm="kmconsole"'})
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return JsonResponse({"error": "Content-Length is not a number"}, status=400)
    if length > notifications.MAX_BODY_BYTES:
        logger.warning("Apple notification refused: body of %s bytes is over the cap", length)
        return HttpResponse(status=413)
    body = request.read(notifications.MAX_BODY_BYTES + 1)
    if len(body) > notifications.MAX_BODY_BYTES:
        return HttpResponse(status=413)
    try:
        received = notifications.notification_receive(body=body)
    except notifications.MalformedNotification as exc:
        logger.warning("malformed Apple notification (%s bytes): %s", len(body), exc)
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"received": received.notification_type, "duplicate": received.duplicate})
