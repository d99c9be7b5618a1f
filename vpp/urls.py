from django.urls import path

from vpp import views

app_name = "vpp"
urlpatterns = [
    path("ios-macos/vpp-server/", views.server_setting, name="server-setting"),
]
