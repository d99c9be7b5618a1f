from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from kmconsole import views
from kmconsole.api.api import api
from vpp import overview_views as vpp_overview
from vpp import views as vpp_views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="users:list", permanent=False)),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("users/", include("users.urls")),
    path("setting/", include("vpp.urls")),
    path("setting/", include("accounts.urls")),
    path("vpp/", vpp_overview.overview_page, name="vpp-overview"),
    path("vpp/users/", include("vpp.person_urls")),
    path("vpp/", include("vpp.job_urls")),
    # Apple's notifications (bearer token, no session): outside the admin pages' URL space.
    path("vpp/notifications/", vpp_views.notification_receiver, name="vpp-notifications"),
    path("api/v1/", api.urls),
    path("setting/api/", include("kmconsole.api.urls")),
    path("admin/", admin.site.urls),
]

handler404 = "kmconsole.views.page_not_found"
handler500 = "kmconsole.views.server_error"
