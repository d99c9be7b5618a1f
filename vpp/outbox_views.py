"""Setting › Sent messages: the file outbox (no SMTP configured) shown in the console, so the
demo's invitations can be read without opening var/outbox/*.log. 404 with a real mail server."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET

from vpp.invitations.outbox import outbox_active, outbox_messages

SHOWN = 200


@login_required
@require_GET
def sent_messages(request):
    if not outbox_active():
        raise Http404("Email goes to a mail server; there is no outbox to show.")
    search = request.GET.get("q", "")[:200]
    messages = outbox_messages(limit=SHOWN, search=search)
    return render(request, "vpp/sent_messages.html", {"sent": messages, "search": search, "shown": SHOWN})
