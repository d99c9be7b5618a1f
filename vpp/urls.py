from django.urls import path

from vpp import audit_views, business_views, outbox_views, views

app_name = "vpp"
urlpatterns = [
    path("ios-macos/vpp-server/", views.server_setting, name="server-setting"),
    path("ios-macos/vpp-server/invitation-preview/", views.invitation_preview, name="invitation-preview"),
    path("ios-macos/vpp-server/sync-status/", views.sync_status, name="sync-status"),
    path("apple-business/", business_views.business_setting, name="business-setting"),
    path("audit-log/", audit_views.audit_log, name="audit-log"),
    path("audit-log/export.csv", audit_views.audit_export, name="audit-export"),
    path("sent-messages/", outbox_views.sent_messages, name="sent-messages"),
]
