from django.urls import path

from kmconsole.api import views

app_name = "api-console"
urlpatterns = [
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:pk>/revoke/", views.token_revoke, name="token-revoke"),
    path("webhooks/", views.webhook_list, name="webhooks"),
    path("webhooks/<int:pk>/test/", views.webhook_test, name="webhook-test"),
    path("webhooks/<int:pk>/delete/", views.webhook_delete, name="webhook-delete"),
    path("enrolment/", views.enrolment, name="enrolment"),
    path("enrolment/<int:pk>/revoke/", views.enrolment_revoke, name="enrolment-revoke"),
]
