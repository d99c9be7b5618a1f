"""Point the console at a local sandbox with a generated demo token (``make run``, the docker demo).

Never overwrites a real content token: the setting is only (re)written when it has no token or
already points at a loopback/sandbox URL, unless ``force`` is given.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from vpp.sandbox.tokens import DEFAULT_LOCATION, decode_token, mint_token

log = logging.getLogger(__name__)

DEMO_ORG = "Demo Organisation"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "sandbox")


def is_sandbox_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in LOCAL_HOSTS or host.startswith("127.")


def demo_connect(
    *,
    api_base_url: str,
    org: str = DEMO_ORG,
    location: str = DEFAULT_LOCATION,
    force: bool = False,
) -> bool:
    """Store a fresh demo token (encrypted) and the sandbox URL; False when a real setup was left alone."""
    from vpp import secrets
    from vpp.models import TokenHealth, VppServerSetting

    setting = VppServerSetting.load()
    if setting.content_token_encrypted and not is_sandbox_url(setting.api_base_url) and not force:
        log.warning("VPP setting has a real content token; not pointing it at the sandbox")
        return False
    if setting.content_token_encrypted and setting.api_base_url == api_base_url and not force:
        return True  # already connected to this sandbox: keep the token (and its location's data)
    token = mint_token(org=org, location=location)
    parsed = decode_token(token)
    setting.content_token_encrypted = secrets.encrypt(token)
    setting.token_org_name = parsed.org_name
    setting.token_expires_at = setting.token_file_expires_at = parsed.expires_at
    setting.token_uploaded_at = timezone.now()
    setting.token_health = TokenHealth.VALID
    setting.token_health_detail = "Demo token for the local VPP sandbox."
    setting.api_base_url = api_base_url
    setting.save()
    return True


def demo_claim(*, api_base_url: str) -> None:
    """Once the sandbox answers: claim the demo location with our mdmInfo and record the token's health.

    Does nothing when the console is not pointed at this sandbox (a real token was left alone).
    """
    from vpp.apple.errors import VppError
    from vpp.models import VppServerSetting
    from vpp.services.setting import token_claim

    setting = VppServerSetting.load()
    if not setting.has_token or setting.api_base_url != api_base_url:
        return
    try:
        token_claim()
    except VppError as exc:
        log.warning("could not check the demo token with the sandbox: %s", exc.message)


@dataclass(frozen=True)
class DemoSandbox:
    """The sandbox child of ``make run`` and what the console processes need to use it."""

    argv: list[str]
    api_base_url: str
    apns_url: str
    env: dict[str, str] = field(default_factory=dict)  # for web/worker/beat: APNS_*, faster event polling


def port_or_free(port: int, host: str = "127.0.0.1") -> int:
    """PORT if nothing listens there (a fixed port keeps the stored sandbox URL stable), else a free one."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            probe.bind((host, 0))
        return probe.getsockname()[1]


def demo_sandbox_plan(*, environ=None) -> DemoSandbox | None:
    """The sandbox child for ``run_console`` (None with VPP_SANDBOX=0). Call demo_connect() with its URL."""
    if not settings.VPP_SANDBOX:
        return None
    from vpp.sandbox.apns import demo_apns_env

    environ = os.environ if environ is None else environ
    var_dir = Path(settings.VAR_DIR)
    port = port_or_free(settings.VPP_SANDBOX_PORT)
    apns_port = port_or_free(settings.VPP_SANDBOX_APNS_PORT)
    if apns_port == port:  # both asked for "any free port" and got the same answer: ask again
        apns_port = port_or_free(0)
    argv = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "vpp_sandbox"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--state", str(var_dir / "sandbox.json")]
    argv += ["--apns-port", str(apns_port), "--apns-key-dir", str(var_dir)]
    apns_url = f"http://127.0.0.1:{apns_port}"
    env = dict(demo_apns_env(apns_url, environ=environ, var_dir=var_dir))
    if not environ.get("VPP_EVENT_POLL_INTERVAL"):
        env["VPP_EVENT_POLL_INTERVAL"] = "1"  # Apple wants >= 30 s; the sandbox finishes events in ~2 s
    return DemoSandbox(argv=argv, api_base_url=f"http://127.0.0.1:{port}/mdm/v2", apns_url=apns_url, env=env)
