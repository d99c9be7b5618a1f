"""Users page → Import CSV → upload → preview (counts, rejected rows with their reasons, nothing
written) → Apply → the job (a real Celery worker) applies it → result; in headless Chromium.
Writes PNGs of the preview and the result to var/screenshots/."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.support.worker import Worker, purge_queue
from tests.users.test_csv_import import GOOD, csv_bytes, row
from users.models import Device, User, UserImport

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]
SHOTS = Path(django_settings.VAR_DIR) / "screenshots"


@pytest.fixture
def worker(tmp_path):
    purge_queue()
    (tmp_path / "outbox").mkdir()
    process = Worker(outbox=tmp_path / "outbox").start()
    yield process
    process.kill()


def test_import_preview_then_apply(logged_in_page, console_url, tmp_path, worker):
    from playwright.sync_api import expect

    page = logged_in_page
    rows = [
        *GOOD,
        row("bad-mail", "Zoë Müller", "not-an-email"),
        row("formula", '=HYPERLINK("http://evil.example")', "f@example.org"),
        row("linux", "Linux User", "l@example.org", serial="L1", platform="Linux"),
        GOOD[0],
    ]
    path = tmp_path / "people.csv"
    path.write_bytes(csv_bytes(rows, encoding="cp1252"))

    page.click("text=Import CSV")
    page.wait_for_url("**/users/import/")
    page.set_input_files("#id_file", str(path))
    page.click("button:has-text('Upload and preview')")
    page.wait_for_url("**/users/import/*/")

    expect(page.locator("[data-import-read]")).to_contain_text("7 rows read as Windows-1252 (Latin-1), comma separated")
    expect(page.locator("[data-import-status]")).to_contain_text("Nothing has been written yet.")
    expect(page.locator("tr[data-count=users] td").first).to_have_text("2")
    expect(page.locator("tr[data-count=devices] td").first).to_have_text("2")
    rejected = page.locator("#rejected-rows tbody tr")
    expect(rejected).to_have_count(4)
    expect(rejected.nth(0)).to_contain_text("email “not-an-email” is not an email address")
    expect(rejected.nth(1)).to_contain_text("name starts with “=”")
    expect(rejected.nth(2)).to_contain_text("unknown platform “Linux”")
    expect(rejected.nth(3)).to_contain_text("repeats row 2")
    expect(page.locator("#changes tbody tr")).to_have_count(4)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "import-preview.png"), full_page=True)
    assert not User.objects.exists() and not Device.objects.exists()

    page.click("[data-apply]")
    expect(page.locator("[data-import-status]")).to_have_attribute("data-import-status", "applied", timeout=60_000)
    expect(page.locator("[data-import-status]")).to_contain_text("3 of 3 rows applied")
    page.screenshot(path=str(SHOTS / "import-applied.png"), full_page=True)
    assert sorted(User.objects.values_list("login_id", flat=True)) == ["jdoe", "rroe"]
    assert Device.objects.count() == 2
    assert UserImport.objects.get().result["users"]["created"] == 2
    assert page.console_errors == []
