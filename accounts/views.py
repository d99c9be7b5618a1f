"""Setting › Administrators: the console's admin accounts, their roles and last logins (docs/roles.md)."""

from __future__ import annotations

from axes.helpers import get_client_ip_address
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.contrib.auth.models import User
from django.shortcuts import redirect, render

from accounts import services
from accounts.forms import AdminAddForm, AdminChangeForm
from accounts.roles import MANAGE_PERM, Role, role_of


def _rows(request) -> list[dict]:
    admins = User.objects.prefetch_related("groups").order_by("-is_active", "username")
    return [
        {
            "user": admin,
            "role": role_of(admin),
            "is_self": admin.pk == request.user.pk,
            "editable": admin.pk != request.user.pk and not admin.is_superuser,
        }
        for admin in admins
    ]


def _render(request, add_form: AdminAddForm, status: int = 200):
    context = {"rows": _rows(request), "add_form": add_form, "roles": Role.choices}
    return render(request, "accounts/administrators.html", context, status=status)


@login_required
@permission_required(MANAGE_PERM, raise_exception=True)
def administrators(request):
    """GET: the list and the add form. POST ``action=add`` adds an admin; ``role`` / ``deactivate`` /
    ``reactivate`` with ``user=<pk>`` change one (refusals come back as a message, nothing changed)."""
    if request.method != "POST":
        return _render(request, AdminAddForm())
    ip = get_client_ip_address(request)
    if request.POST.get("action") == "add":
        form = AdminAddForm(request.POST)
        if not form.is_valid():
            return _render(request, form, status=422)
        data = form.cleaned_data
        user = services.admin_create(
            username=data["username"],
            email=data["email"],
            password=data["password1"],
            role=data["role"],
            actor=request.user,
            ip=ip,
        )
        messages.success(request, f"{user.get_username()} added as {data['role']}.")
        return redirect("accounts:administrators")
    form = AdminChangeForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return redirect("accounts:administrators")
    _change(request, form.cleaned_data, ip)
    return redirect("accounts:administrators")


def _change(request, data: dict, ip: str | None) -> None:
    user, action = data["user"], data["action"]
    name = user.get_username()
    try:
        if action == "role":
            changed = services.admin_role_set(user=user, role=data["role"], actor=request.user, ip=ip)
            done = f"{name} is now {data['role']}."
        else:
            active = action == "reactivate"
            changed = services.admin_active_set(user=user, active=active, actor=request.user, ip=ip)
            done = f"{name} {'reactivated' if active else 'deactivated: they can no longer log in'}."
    except services.AdminChangeRefused as exc:
        messages.error(request, exc.reason)
        return
    if changed:
        messages.success(request, done)
    else:
        messages.info(request, f"Nothing to change for {name}.")
