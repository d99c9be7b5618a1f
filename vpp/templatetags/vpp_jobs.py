"""{% job_badge job %}: a job's status badge, the same on the panel, the job page and the jobs list."""

from django import template
from django.utils.html import format_html

from vpp.jobs.progress import job_badge as badge_of

register = template.Library()


@register.simple_tag
def job_badge(job, spinner: bool = False):
    """``<span class="badge badge-<tone>">label</span>`` (vpp.jobs.progress.job_badge); with
    ``spinner`` a running job's badge carries the spinner."""
    label, tone = badge_of(job)
    if spinner and not job.finished:
        return format_html(
            '<span class="badge badge-{}"><span class="spinner" aria-hidden="true"></span> {}</span>', tone, label
        )
    return format_html('<span class="badge badge-{}">{}</span>', tone, label)
