"""{% sync_result job as result %}: what a full sync found (for the job page of a sync_all job)."""

from django import template

from vpp.models import JobAction, SyncRun
from vpp.selectors import orphan_adopt_candidates, sync_orphans

register = template.Library()


@register.simple_tag
def sync_result(job):
    if job.action != JobAction.SYNC_ALL:
        return None
    run = SyncRun.objects.filter(job=job).first()
    if run is None:
        return None
    orphans, orphan_count = sync_orphans(job.pk, limit=200)
    candidates = orphan_adopt_candidates(orphans)
    for orphan in orphans:
        orphan.candidate = candidates.get(orphan.pk)  # the device user it likely belongs to (same email)
    return {"run": run, "counts": run.counts, "orphans": orphans, "orphan_count": orphan_count}
