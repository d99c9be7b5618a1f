"""The REST API under /api/v1/ (docs/api.md), its tokens, webhooks and agent enrolment secrets.

An entry point like the console's views: it calls users/ and vpp/ services and selectors,
and nothing there imports it (pyproject.toml, contract "api-entry-point").
"""
