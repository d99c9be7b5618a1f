"""``make run``: the Apple Business sandbox as a child process, the console pointed at it with a
generated demo API account, and the demo organisation's people synced once everything answers.

Never overwrites a real API account: the setting is only written when it has none or already
points at a loopback URL.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from vpp.business_sandbox.testing import ApiAccount, new_account
from vpp.sandbox.demo import is_sandbox_url, port_or_free

log = logging.getLogger(__name__)

DEMO_PEOPLE = 200
DEMO_REQUESTS_PER_MINUTE = "120"  # the sandbox's limit and the console's pace in the demo


@dataclass(frozen=True)
class BusinessDemo:
    argv: list[str]
    root_url: str
    account: ApiAccount
    env: dict[str, str] = field(default_factory=dict)


def _demo_account(var_dir: Path) -> ApiAccount:
    """The demo API account, kept in var/ across runs (private key: mode 600)."""
    path = var_dir / "abm-demo-account.json"
    if path.exists():
        return ApiAccount(**json.loads(path.read_text()))
    account = new_account()
    path.write_text(json.dumps(account.__dict__))
    path.chmod(0o600)
    return account


def business_demo_plan(*, environ=None) -> BusinessDemo | None:
    """The sandbox child for ``run_console`` (None with APPLE_BUSINESS_SANDBOX_PORT=0)."""
    if not settings.APPLE_BUSINESS_SANDBOX_PORT:
        return None
    environ = os.environ if environ is None else environ
    var_dir = Path(settings.VAR_DIR)
    account = _demo_account(var_dir)
    public = var_dir / "abm-demo-account.pub.json"
    public.write_text(json.dumps({"client_id": account.client_id, "key_id": account.key_id,
                                  "public_key": account.public_key}))  # fmt: skip
    port = port_or_free(settings.APPLE_BUSINESS_SANDBOX_PORT)
    rate = environ.get("APPLE_BUSINESS_REQUESTS_PER_MINUTE") or DEMO_REQUESTS_PER_MINUTE
    argv = [sys.executable, "-m", "vpp.business_sandbox", "--host", "127.0.0.1", "--port", str(port),
            "--people", str(DEMO_PEOPLE), "--account-file", str(public), "--requests-per-minute", rate,
            "--exit-with-parent"]  # fmt: skip
    return BusinessDemo(argv, f"http://127.0.0.1:{port}", account, {"APPLE_BUSINESS_REQUESTS_PER_MINUTE": rate})


def business_demo_connect(demo: BusinessDemo) -> bool:
    """Store the demo account (encrypted) and the sandbox URLs; False when a real account was left alone."""
    from django.utils import timezone

    from vpp import secrets
    from vpp.models import AppleBusinessSetting

    setting = AppleBusinessSetting.load()
    if setting.configured and not is_sandbox_url(setting.api_base_url):
        log.warning("Apple Business has a real API account; not pointing it at the sandbox")
        return False
    setting.client_id, setting.key_id = demo.account.client_id, demo.account.key_id
    setting.private_key_encrypted = secrets.encrypt(demo.account.private_key)
    setting.key_uploaded_at = setting.key_uploaded_at or timezone.now()
    setting.api_base_url, setting.token_url = demo.root_url, demo.root_url + "/auth/oauth2/token"
    setting.save()
    return True


def business_demo_sync(demo: BusinessDemo, *, wait: float = 300) -> None:
    """In a thread once the console answers: check the connection, then a dry run (the first time)
    and the sync, so the Users page shows the demo organisation's people."""

    def run() -> None:
        from vpp.models import AppleBusinessSetting, Job
        from vpp.services import Refused
        from vpp.services import business as service

        try:
            service.business_connection_check()
            if AppleBusinessSetting.load().first_sync_at is None:
                dry = service.directory_sync_start(dry_run=True, trigger="demo").job
                deadline = time.monotonic() + wait
                while not Job.objects.get(pk=dry.pk).finished and time.monotonic() < deadline:
                    time.sleep(1)
            service.directory_sync_start(trigger="demo")
        except (Refused, RuntimeError) as exc:
            log.warning("demo Apple Business sync not started: %s", exc)

    threading.Thread(target=run, name="abm-demo", daemon=True).start()
