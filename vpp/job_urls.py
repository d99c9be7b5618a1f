from django.urls import path

from vpp import bulk_views

app_name = "jobs"
urlpatterns = [
    path("bulk/<slug:action>/confirm/", bulk_views.bulk_confirm, name="bulk-confirm"),
    path("bulk/<slug:action>/apply/", bulk_views.bulk_apply, name="bulk-apply"),
    path("jobs/", bulk_views.job_list, name="list"),
    path("jobs/<int:pk>/", bulk_views.job_detail, name="detail"),
    path("jobs/<int:pk>/panel/", bulk_views.job_panel, name="panel"),
    path("jobs/<int:pk>/export.csv", bulk_views.job_export, name="export"),
    path("jobs/<int:pk>/retry-failed/", bulk_views.job_retry, name="retry"),
    path("jobs/<int:pk>/orphans/confirm/", bulk_views.orphans_confirm, name="orphans-confirm"),
    path("jobs/<int:pk>/orphans/apply/", bulk_views.orphans_apply, name="orphans-apply"),
]
