from django.urls import path

from users import import_views, views

app_name = "users"
urlpatterns = [
    path("", views.user_list, name="list"),
    path("import/", import_views.import_upload, name="import"),
    path("import/template.csv", import_views.import_template, name="import-template"),
    path("import/<int:pk>/", import_views.import_detail, name="import-detail"),
    path("import/<int:pk>/apply/", import_views.import_apply_view, name="import-apply"),
    path("import/<int:pk>/rejected.csv", import_views.import_rejected, name="import-rejected"),
    path("<int:pk>/", views.user_detail, name="detail"),
]
