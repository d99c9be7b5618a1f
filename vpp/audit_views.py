"""Setting › Audit log: every audit event (who, what, how many, when, from where, which job),
filterable and exportable as CSV. Read-only for every signed-in admin: nothing here writes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from kmconsole.csv_export import SafeCsvWriter
from kmconsole.templatetags.console import stamp
from vpp import selectors
from vpp.audit import audit_action_label
from vpp.forms import AuditFilterForm
from vpp.models import AuditEvent

EVENTS_PER_PAGE = 50
CSV_HEADER = ["when", "who", "action", "what", "count", "outcome", "ip", "job"]


def _form(request) -> AuditFilterForm:
    actors, actions = selectors.audit_filter_values()
    return AuditFilterForm(request.GET, actors=actors, actions=[(code, audit_action_label(code)) for code in actions])


@login_required
@require_GET
def audit_log(request):
    form = _form(request)
    events = Paginator(selectors.audit_events(**form.filters()), EVENTS_PER_PAGE).get_page(request.GET.get("page"))
    for event in events:
        event.action_label = audit_action_label(event.action)
    query = request.GET.copy()
    query.pop("page", None)
    context = {"events": events, "form": form, "query": query.urlencode()}
    return render(request, "vpp/audit_log.html", context)


@login_required
@require_GET
def audit_export(request):
    """The filtered audit log as CSV (all pages), streamed."""
    events = selectors.audit_events(**_form(request).filters())
    rows = (_row(event) for event in events.iterator(chunk_size=2000))
    response = StreamingHttpResponse(csv_lines(CSV_HEADER, rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="kmconsole-audit-log.csv"'
    return response


def _row(event: AuditEvent) -> list:
    return [
        stamp(event.created_at),
        event.actor_name,
        audit_action_label(event.action),
        event.target_summary,
        event.count,
        event.outcome,
        event.ip or "",
        event.job_id or "",
    ]


def csv_lines(header: list[str], rows: Iterable[list]) -> Iterator[str]:
    """The audit CSV's lines: ``header`` then ``rows``, through the product's one spreadsheet-safe
    writer (kmconsole.csv_export: cells a spreadsheet would run as a formula are neutralised)."""
    writer = SafeCsvWriter()
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow(row)
