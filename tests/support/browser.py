"""Headless Chromium for the browser tests (the fixtures are in tests/browser/conftest.py).

The Debian package's Chromium (``make tools`` installs it); never ``playwright install``, which
downloads a browser build and fails offline.
"""

from __future__ import annotations

import os
import shutil

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# The superuser ``logged_in_page`` creates and logs in with.
BROWSER_ADMIN = "browser-admin"
BROWSER_PASSWORD = "browser-test-password-1"


def chromium_path() -> str | None:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    return shutil.which("chromium")
