"""Setting › Apple Business in headless Chromium: upload the API account's key, see the organisation,
run the dry run, then the sync, and find the people on the Users page."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from tests.support.job_loop import run_job
from vpp.models import Job
from vpp.services import business

pytestmark = [pytest.mark.browser, pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]


def test_it_saves_the_account_runs_a_dry_run_then_syncs_the_people(
    logged_in_page, console_url, business_sandbox, settings, tmp_path, monkeypatch
):
    settings.APPLE_BUSINESS_API_URL, settings.APPLE_BUSINESS_TOKEN_URL = (
        business_sandbox.root_url,
        business_sandbox.token_url,
    )
    settings.APPLE_BUSINESS_REQUESTS_PER_MINUTE = 100_000

    def worker(job_id):  # the Celery worker, in a thread
        try:
            run_job(Job.objects.get(pk=job_id), None)
        finally:
            connection.close()

    monkeypatch.setattr(
        business, "job_enqueue", lambda *, job_id: threading.Thread(target=worker, args=(job_id,)).start()
    )
    page = logged_in_page
    page.goto(f"{console_url}/setting/apple-business/")
    assert "No API account yet" in page.content()

    key = tmp_path / "kmconsole.pem"
    key.write_text(business_sandbox.account.private_key)
    page.set_input_files("input[name=private_key_file]", str(key))
    page.fill("input[name=client_id]", business_sandbox.account.client_id)
    page.fill("input[name=key_id]", business_sandbox.account.key_id)
    page.click("#account-save")
    page.wait_for_selector("#business-org")
    assert page.inner_text("#business-org") == "Example Corp"
    assert page.inner_text("#business-people") == "60"
    assert page.inner_text("#business-health-badge") == "Valid"
    assert "BEGIN PRIVATE KEY" not in page.content()
    assert page.is_disabled("#business-sync")  # a dry run first

    page.click("#business-dry-run")
    page.wait_for_selector("text=Dry run started")
    page.wait_for_function(
        "() => !!document.querySelector('#dry-run-counts') || (location.reload(), false)", timeout=30000
    )
    assert "would create 59" in page.inner_text("#dry-run-counts")

    page.click("#business-sync")
    page.wait_for_selector("text=Sync started")
    page.wait_for_function(
        "() => !!document.querySelector('#sync-counts') || (location.reload(), false)", timeout=30000
    )
    assert "created 59" in page.inner_text("#sync-counts")

    page.goto(f"{console_url}/users/?q=ben.adams.1")
    page.wait_for_selector("text=Ben Adams")
    assert page.console_errors == []
