"""Reusable Playwright fixtures for browser tests (marker ``browser``).

    browser          a headless Debian Chromium (/usr/bin/chromium), one per test (a
                     Playwright sync session must not outlive the test: another test's
                     own sync_playwright() would refuse to start inside its event loop)
    page             a fresh browser context + tab per test (1280x900), 15 s default timeout;
                     the test FAILS at teardown on any console error, page error or CSP violation
                     (except those it lists in ``page.allowed_console_errors``, substrings)
    logged_in_page   ``page`` logged in through the real login form as a superuser
                     (BROWSER_ADMIN / BROWSER_PASSWORD), left on the Users page
    console_url      live_server.url

Tests using them need the database with transactions (the live server is another thread):
``pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]``.
Without Chromium the tests are skipped with a reason (``make tools`` installs it).
Never ``playwright install``: it downloads a browser build, which fails offline.
"""

from __future__ import annotations

import pytest

from tests.support.browser import BROWSER_ADMIN, BROWSER_PASSWORD, CHROMIUM_ARGS, chromium_path


@pytest.fixture
def browser():
    path = chromium_path()
    if not path:
        pytest.skip("Chromium is not installed at /usr/bin/chromium (run `make tools`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def console_url(live_server) -> str:
    return live_server.url


@pytest.fixture
def page(browser, console_url):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    errors: list[str] = []
    # Answers with a 4xx status on purpose (a form re-rendered with 422, the 404 page, a modal's
    # 403/409/422 with its reason): the browser logs "Failed to load resource" for them, but the
    # page shows what is wrong. A 5xx, or a 4xx for a script, style or image, still fails the test.
    error_pages: set[str] = set()
    tab.on(
        "response",
        lambda response: (
            error_pages.add(response.url)
            if response.request.resource_type in ("document", "xhr", "fetch") and 400 <= response.status < 500
            else None
        ),
    )

    def on_console(message) -> None:
        if message.type != "error":
            return
        if message.text.startswith("Failed to load resource") and message.location.get("url") in error_pages:
            return
        errors.append(message.text)

    # A CSP violation or a JS error is a bug: collect them so tests can assert none happened.
    tab.on("console", on_console)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    # A CSP violation also fires "securitypolicyviolation" in the page (caught by console.js's
    # absence of handlers, so listen here too): collected with the console errors.
    context.add_init_script(
        "document.addEventListener('securitypolicyviolation', function (e) {"
        " console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI); });"
    )
    tab.console_errors = errors
    # A test that provokes an error on purpose (a 404 page) names it here: substrings of messages.
    tab.allowed_console_errors = []
    yield tab
    context.close()
    # Playwright's sync API runs the test inside its own greenlet, whose context variables hold
    # their own database connection: close it here, or Postgres refuses to drop the test
    # database at the end ("is being accessed by other users").
    from django.db import connections

    connections.close_all()
    # Every browser test fails on a console error or a CSP violation, whatever it asserted.
    unexpected = [e for e in errors if not any(allowed in e for allowed in tab.allowed_console_errors)]
    assert not unexpected, f"console errors or CSP violations: {unexpected}"


@pytest.fixture
def logged_in_page(page, console_url, django_user_model):
    django_user_model.objects.create_superuser(BROWSER_ADMIN, "admin@example.com", BROWSER_PASSWORD)
    page.goto(f"{console_url}/login/")
    page.fill("input[name=username]", BROWSER_ADMIN)
    page.fill("input[name=password]", BROWSER_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/users/**")
    return page
