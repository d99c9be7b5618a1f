"""Point the console at a local sandbox with a generated demo token (``make run``, the docker demo).

Never overwrites a real content token: the setting is only (re)written when it has no token or
already points at a loopback/sandbox URL, unless ``force`` is given.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

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
    setting.token_expires_at = parsed.expires_at
    setting.token_uploaded_at = timezone.now()
    setting.token_health = TokenHealth.VALID
    setting.token_health_detail = "Demo token for the local VPP sandbox."
    setting.api_base_url = api_base_url
    setting.save()
    return True
