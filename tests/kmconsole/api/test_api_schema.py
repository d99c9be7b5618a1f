"""The API fuzzed against its own OpenAPI schema (schemathesis, in-process over WSGI).

Every operation gets generated requests, valid and invalid, with a token holding every scope:
no answer may be a 5xx, and every answer must match the schema (status code, content type,
body). Kept small (max_examples) to stay well under a minute on a loaded machine.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.users import make_user
from vpp.models import VppUserStatus

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# The schema is read through the app itself (no database needed for it).
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())


@pytest.fixture
def something_to_find(db, token_setting):
    """ids 1.. exist, so generated small ids reach the real code paths, not only 404s. The WSGI
    handler must not close the test's database connection (Django's test client does the same)."""
    make_user("Ada")
    make_user("Bob", vpp_status=VppUserStatus.INVITED)
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
def test_the_api_matches_its_schema_and_never_fails(case, api_token, something_to_find):
    headers = {"Authorization": f"Bearer {api_token[1]}"}
    if case.path.startswith("/api/v1/agent/"):
        headers = {}
    case.call_and_validate(headers=headers, checks=CHECKS)
