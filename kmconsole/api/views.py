"""Console pages under Setting › API: tokens, webhooks, agent enrolment secrets (docs/api.md).

Thin: the services in kmconsole/api/services.py and webhooks.py do the work. A new token's or
secret's value is rendered once, in the response to the POST that made it, and never again.
"""

from __future__ import annotations

from datetime import timedelta

from axes.helpers import get_client_ip_address
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.roles import MANAGE_PERM
from kmconsole.api import services, webhooks
from kmconsole.api.models import ApiToken, EnrolmentSecret, WebhookDelivery, WebhookEndpoint
from users.forms import valid_pk
from users.models import Device
from vpp.audit import audit_record

# Tokens, webhooks and enrolment secrets are credentials: the Administrators manage them
# (the role that manages administrators, accounts/roles.py).
CONSOLE_PERMISSION = MANAGE_PERM
EXPIRY_CHOICES = {"30": 30, "90": 90, "365": 365, "": None}


def _ip(request):
    return get_client_ip_address(request) or None


@login_required
@permission_required(CONSOLE_PERMISSION, raise_exception=True)
def tokens(request):
    """List tokens; POST makes one (name, scopes the admin holds, expiry) and shows its secret once."""
    context = {
        "tokens": ApiToken.objects.select_related("created_by"),
        "scopes": services.SCOPES,
        "grantable": services.grantable_scopes(request.user),
        "secret": None,
        "problem": "",
    }
    status = 200
    if request.method == "POST":
        name = request.POST.get("name", "").strip()[:100]
        scopes = request.POST.getlist("scopes")
        expiry = request.POST.get("expires_days", "90")
        if not name or not name.isprintable():
            context["problem"] = "Give the token a name (who or what uses it)."
        elif not scopes:
            context["problem"] = "Tick at least one permission."
        elif expiry not in EXPIRY_CHOICES:
            context["problem"] = "Choose an expiry."
        else:
            days = EXPIRY_CHOICES[expiry]
            try:
                token, secret = services.token_create(
                    admin=request.user,
                    name=name,
                    scopes=scopes,
                    expires_at=timezone.now() + timedelta(days=days) if days else None,
                )
            except services.ScopeRefused as exc:
                context["problem"] = f"You cannot grant what you do not hold: {', '.join(exc.scopes)}."
            else:
                audit_record(
                    actor=request.user,
                    action="api.token_create",
                    details={"token": name, "scopes": ",".join(token.scopes)},
                    ip=_ip(request),
                )
                context["secret"], context["new_token"] = secret, token
        status = 422 if context["problem"] else 201
    return render(request, "api/tokens.html", context, status=status)


@login_required
@require_POST
@permission_required(CONSOLE_PERMISSION, raise_exception=True)
def token_revoke(request, pk: int):
    token = get_object_or_404(ApiToken, pk=pk)
    services.token_revoke(token)
    audit_record(actor=request.user, action="api.token_revoke", details={"token": token.name}, ip=_ip(request))
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("api-console:tokens")


@login_required
@permission_required(CONSOLE_PERMISSION, raise_exception=True)
def webhook_list(request):
    """Endpoints and their last deliveries; POST registers one and shows its signing secret once."""
    endpoints = list(WebhookEndpoint.objects.all())
    for endpoint in endpoints:
        endpoint.recent = list(WebhookDelivery.objects.filter(endpoint=endpoint)[:20])
    context = {"endpoints": endpoints, "event_types": webhooks.EVENT_TYPES, "secret": None, "problem": ""}
    status = 200
    if request.method == "POST":
        events = request.POST.getlist("events")
        try:
            endpoint, secret = webhooks.endpoint_create(
                url=request.POST.get("url", "").strip()[:500],
                description=request.POST.get("description", "")[:200],
                events=events,
                admin=request.user,
            )
        except ValueError as exc:
            context["problem"], status = str(exc), 422
        else:
            audit_record(
                actor=request.user, action="api.webhook_create", details={"url": endpoint.url}, ip=_ip(request)
            )
            context.update(secret=secret, new_endpoint=endpoint, endpoints=[*endpoints, endpoint])
            endpoint.recent = []
            status = 201
    return render(request, "api/webhooks.html", context, status=status)


@login_required
@require_POST
@permission_required(CONSOLE_PERMISSION, raise_exception=True)
def webhook_test(request, pk: int):
    endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
    webhooks.event_emit("ping", {"message": "Test from kmconsole"}, endpoints=[endpoint])
    messages.success(request, f"A test event is on its way to {endpoint.url}; its delivery shows below.")
    return redirect("api-console:webhooks")


@login_required
@require_POST
@permission_required(CONSOLE_PERMISSION, raise_exception=True)
def webhook_delete(request, pk: int):
    endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
    audit_record(actor=request.user, action="api.webhook_delete", details={"url": endpoint.url}, ip=_ip(request))
    endpoint.delete()
    messages.success(request, f"Endpoint {endpoint.url} removed.")
    return redirect("api-console:webhooks")


@login_required
@permission_required(CONSOLE_PERMISSION, raise_exception=True)
def enrolment(request):
    """Agent enrolment secrets; POST issues one for a device (by id or serial number), shown once."""
    context = {
        "secrets": EnrolmentSecret.objects.select_related("device", "device__user")[:200],
        "secret": None,
        "problem": "",
    }
    status = 200
    if request.method == "POST":
        ref = request.POST.get("device", "").strip()
        device = None
        if valid_pk(ref):
            device = Device.objects.filter(pk=int(ref)).first()
        if device is None and ref and ref.isprintable():
            device = Device.objects.filter(serial_number=ref[:64]).first()
        if device is None:
            context["problem"], status = "No device has this id or serial number.", 422
        else:
            row, secret = services.enrolment_secret_issue(device=device, admin=request.user)
            audit_record(
                actor=request.user,
                action="api.enrolment_issue",
                details={"device": device.pk, "secret": row.prefix},
                ip=_ip(request),
            )
            context.update(secret=secret, new_secret=row)
            status = 201
    return render(request, "api/enrolment.html", context, status=status)


@login_required
@require_POST
@permission_required(CONSOLE_PERMISSION, raise_exception=True)
def enrolment_revoke(request, pk: int):
    row = get_object_or_404(EnrolmentSecret, pk=pk)
    services.enrolment_secret_revoke(row)
    audit_record(actor=request.user, action="api.enrolment_revoke", details={"device": row.device_id}, ip=_ip(request))
    messages.success(request, "Enrolment secret revoked.")
    return redirect("api-console:enrolment")
