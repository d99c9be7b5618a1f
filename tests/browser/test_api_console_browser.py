"""Setting › API in headless Chromium: make a token, see it once, use it, revoke it; the API docs
page renders under the console's CSP. Screenshots go to var/screenshots/."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_makes_uses_and_revokes_a_token(logged_in_page, console_url):
    page = logged_in_page
    shots = Path(django_settings.BASE_DIR) / "var" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    page.click("summary:has-text('Setting')")
    page.click("a:has-text('API tokens')")
    page.fill("#token-name", "HR sync")
    page.check("input[value='users.view_user']")
    page.click("button:has-text('Create token')")
    secret = page.inner_text("#token-secret")
    assert secret.startswith("kmc_")
    page.screenshot(path=str(shots / "api-tokens.png"), full_page=True)
    client = Client()
    assert client.get("/api/v1/users", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    page.goto(f"{console_url}/setting/api/tokens/")
    assert secret not in page.content()
    assert "from 127.0.0.1" in page.inner_text("#tokens")  # last use and address
    page.click("#tokens button:has-text('Revoke')")
    page.wait_for_selector("#tokens td:has-text('revoked')")
    assert client.get("/api/v1/users", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 401
    assert page.console_errors == []


def test_the_api_docs_page_renders_without_csp_errors(page, console_url):
    page.goto(f"{console_url}/api/v1/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    shots = Path(django_settings.BASE_DIR) / "var" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "api-docs.png"))
    assert [e for e in page.console_errors if "Content Security Policy" in e] == []
