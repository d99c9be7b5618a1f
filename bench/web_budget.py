"""How long a page that talks to Apple takes, and what it says, while Apple or Redis misbehaves:
a real gunicorn (the product's gunicorn.conf.py when present), the VPP sandbox, a throwaway
SQLite database (docs/operations.md#timeouts).

    .venv/bin/python bench/web_budget.py --fault 503      # Apple: 503 + Retry-After 60 on every call
    .venv/bin/python bench/web_budget.py --fault slow     # Apple answers after 40 s
    .venv/bin/python bench/web_budget.py --fault redis    # Redis (the rate limiter) unreachable

Prints, per try: the HTTP status of "Check with Apple now", the seconds it took, and the message shown.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from html import unescape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fault", choices=["503", "slow", "redis"], default="503")
    parser.add_argument("--tries", type=int, default=2)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="kmc-web-budget-"))
    env = {
        **os.environ,
        "DEBUG": "1",
        "HTTPS": "0",
        "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
        "KMCONSOLE_VAR_DIR": str(tmp),
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    if args.fault == "redis":
        env["REDIS_URL"] = "redis://10.255.255.1:6379/0"  # a host that never answers (blackholed)
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kmconsole.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    from vpp import secrets
    from vpp.models import VppServerSetting
    from vpp.sandbox.testing import start_process_sandbox

    get_user_model().objects.create_superuser("bench", "bench@example.com", "bench-password-1")
    sandbox = start_process_sandbox()
    setting = VppServerSetting.load()
    setting.content_token_encrypted = secrets.encrypt(sandbox.token)
    setting.api_base_url = sandbox.base_url
    setting.token_health = "valid"
    setting.save()
    if args.fault == "503":
        sandbox.control(fail_next=1000, fail_status=503, retry_after=60)
    elif args.fault == "slow":
        sandbox.control(latency=40)

    port = free_port()
    command = [str(ROOT / ".venv/bin/gunicorn"), "kmconsole.wsgi:application"]
    if (ROOT / "gunicorn.conf.py").exists():
        command += ["--config", "gunicorn.conf.py"]
    command += ["--bind", f"127.0.0.1:{port}", "--workers", "1"]
    log = open(tmp / "web.log", "wb")  # noqa: SIM115 - open while gunicorn runs
    web = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        import requests

        base = f"http://127.0.0.1:{port}"
        http = requests.Session()
        for _ in range(100):
            try:
                http.get(base + "/login/", timeout=5)
                break
            except requests.RequestException:
                time.sleep(0.2)
        page = http.get(base + "/login/").text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        http.post(
            base + "/login/", data={"username": "bench", "password": "bench-password-1", "csrfmiddlewaretoken": token}
        )
        url = base + "/setting/ios-macos/vpp-server/"
        for attempt in range(1, args.tries + 1):
            page = http.get(url).text
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
            began = time.monotonic()
            response = http.post(url, data={"section": "token_check", "csrfmiddlewaretoken": token}, timeout=120)
            took = time.monotonic() - began
            said = re.findall(r"(Token checked with Apple[^<]*|The token could not be checked[^<]*)", response.text)
            message = unescape(said[0]) if said else "(no message)"
            print(f"try {attempt}: HTTP {response.status_code} after {took:.1f} s — {message}")
        timeouts = [line for line in (tmp / "web.log").read_text().splitlines() if "WORKER TIMEOUT" in line]
        print(f"gunicorn WORKER TIMEOUTs: {len(timeouts)}")
    finally:
        web.terminate()
        web.wait(timeout=10)
        sandbox.stop()


if __name__ == "__main__":
    main()
