"""Let a bulk-action POST carry more ticked ids than DATA_UPLOAD_MAX_NUMBER_FIELDS.

Django refuses a form with more than 1,000 fields (TooManyFieldsSent → 400) when anything
first reads request.POST — the CSRF middleware does. For the bulk endpoints only, this
parses the urlencoded body with a higher cap, and above that cap keeps just the CSRF token
and flags the request so the view answers with a readable message instead of a 400.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from django.conf import settings
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict

BULK_PATH_PREFIX = "/vpp/bulk/"


def bulk_max_fields() -> int:
    return getattr(settings, "VPP_BULK_MAX_FIELDS", 5100)


class BulkSelectionMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if (
            request.method == "POST"
            and request.path.startswith(BULK_PATH_PREFIX)
            and request.content_type == "application/x-www-form-urlencoded"
        ):
            self._parse(request)
        return self.get_response(request)

    def _parse(self, request) -> None:
        body = request.body.decode(request.encoding or settings.DEFAULT_CHARSET, errors="replace")
        try:
            pairs = parse_qsl(body, keep_blank_values=True, max_num_fields=bulk_max_fields())
        except ValueError:  # more fields than even the raised cap
            pairs = [(k, v) for k, v in parse_qsl(body, keep_blank_values=True) if k == "csrfmiddlewaretoken"]
            request.bulk_too_many = True
        post = QueryDict(mutable=True)
        for key, value in pairs:
            post.appendlist(key, value)
        post._mutable = False
        request._post = post
        request._files = MultiValueDict()
