"""The CSV import pages (docs/import.md): upload, preview, apply, progress, template, rejected rows.

Thin: users/csv_import.py reads, checks, previews and applies. Every page needs both "add device
user" and "change device user" (an import creates and changes users).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kmconsole.csv_export import SafeCsvWriter
from users.csv_import import (
    COLUMNS,
    EXAMPLE_ROWS,
    MAX_BYTES,
    SAMPLES,
    ImportFileError,
    import_preview,
    import_start,
)
from users.models import ImportStatus, UserImport

IMPORT_PERMISSIONS = ("users.add_user", "users.change_user")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
SHOWN_REJECTED = 200  # rejected rows listed on the page (all of them in the CSV download)


def _guard(view):
    return login_required(permission_required(IMPORT_PERMISSIONS, raise_exception=True)(view))


@_guard
@require_http_methods(["GET", "POST"])
def import_upload(request):
    """GET: the upload form and the columns. POST: read and preview the file, then show the preview."""
    error = ""
    if request.method == "POST":
        upload = request.FILES.get("file")
        if upload is None:
            error = "Choose a CSV file to upload."
        elif upload.size > MAX_BYTES:  # refused before a byte of it is read
            error = ImportFileError.too_big(upload.size)
        else:
            try:
                user_import = import_preview(data=upload.read(), filename=upload.name, actor=request.user)
            except ImportFileError as exc:
                error = str(exc)
            else:
                return redirect("users:import-detail", pk=user_import.pk)
    context = {"columns": COLUMNS, "error": error, "max_mb": MAX_BYTES // 1024 // 1024}
    return render(request, "users/import.html", context, status=400 if error else 200)


@_guard
@require_GET
def import_detail(request, pk: int):
    """The preview of an import (nothing written yet), or its progress and result once applying."""
    user_import = get_object_or_404(UserImport.objects, pk=pk)
    context = {
        "imp": user_import,
        "preview": user_import.preview,
        "rejected": user_import.rejected[:SHOWN_REJECTED],
        "more_rejected": max(0, len(user_import.rejected) - SHOWN_REJECTED),
        "can_apply": user_import.status in (ImportStatus.PREVIEWED, ImportStatus.FAILED) and user_import.accepted_rows,
        "job_url": _job_url(user_import.job_id),
        "delimiter_name": DELIMITER_NAMES.get(user_import.delimiter, repr(user_import.delimiter)),
        "sample_limit": SAMPLES,
    }
    if request.htmx:
        return render(request, "users/import_detail.html#import-status", context)
    return render(request, "users/import_detail.html", context)


def _job_url(job_id: int | None) -> str:
    """The page of the job applying the import, when the app running it has job pages ("jobs:detail")."""
    if not job_id:
        return ""
    try:
        return reverse("jobs:detail", args=[job_id])
    except NoReverseMatch:
        return ""


@_guard
@require_POST
def import_apply_view(request, pk: int):
    """Start applying (or resume) the import; the page then follows its progress."""
    user_import = get_object_or_404(UserImport.objects, pk=pk)
    if import_start(user_import=user_import, actor=request.user):
        messages.success(request, f"Import #{user_import.pk} is being applied.")
    else:
        messages.warning(request, f"Import #{user_import.pk} is already {user_import.get_status_display().lower()}.")
    return redirect("users:import-detail", pk=pk)


@_guard
@require_GET
def import_template(request):
    """The template CSV: the columns' headers and example rows (UTF-8 with a BOM, for Excel)."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="device-users-template.csv"'
    response.write("\ufeff")
    writer = SafeCsvWriter(response)
    writer.writerow([column.header for column in COLUMNS])
    for row in EXAMPLE_ROWS:
        writer.writerow(row)
    return response


@_guard
@require_GET
def import_rejected(request, pk: int):
    """Every rejected row of an import: row number and reason."""
    user_import = get_object_or_404(UserImport.objects.only("pk", "rejected"), pk=pk)
    writer = SafeCsvWriter()
    lines = (writer.writerow(row) for row in [["row", "reason"], *user_import.rejected])
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="import-{pk}-rejected.csv"'
    return response
