from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "kmconsole.api"
    label = "api"
    verbose_name = "REST API"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from kmconsole.api import webhooks

        webhooks.connect_event_sources()
