"""Console-wide views: health probes and error pages."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.db import connection
from django.http import HttpResponseServerError, JsonResponse
from django.shortcuts import render
from django.template import loader
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from kmconsole.health import broker_status


@never_cache
@require_GET
def healthz(request):
    """Liveness: the process answers. Touches nothing else."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request):
    """Readiness: the database and the Celery broker are reachable.

    503 with a readable reason per check, e.g.
    {"status": "unavailable", "checks": {"database": {"ok": true}, "broker": {"ok": false,
    "detail": "Redis is unreachable (ConnectionError)"}}}
    """
    broker = broker_status()
    checks = {
        "database": _database_check(),
        "broker": {"ok": broker.ok, **({"detail": broker.detail} if broker.detail else {})},
    }
    ready = all(check["ok"] for check in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def _database_check() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        # The class name only: messages may carry host names or credentials.
        return {"ok": False, "detail": f"database is unreachable ({exc.__class__.__name__})"}


class LoginView(auth_views.LoginView):
    """The login page. Failed logins are throttled by django-axes (kmconsole/login_throttle.py),
    which answers a locked-out try with this page, status 429 and the next allowed time."""

    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), **login_context(self.request)}


def login_context(request) -> dict:
    """What the login page shows besides the form: the idle timeout and whether the session expired."""
    return {
        "session_idle": _duration(settings.SESSION_COOKIE_AGE),
        # Set by HtmxLoginRedirectMiddleware: the admin was working when the session ran out.
        "expired": request.GET.get("expired") == "1",
    }


def _duration(seconds: int) -> str:
    """'8 hours', '90 minutes': how the idle timeout reads on the login page."""
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = max(1, seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def page_not_found(request, exception=None):
    return render(request, "404.html", status=404)


def server_error(request):
    # No request context: whatever broke the page may also break context processors.
    return HttpResponseServerError(loader.get_template("500.html").render())
