from django.apps import AppConfig


class KmconsoleConfig(AppConfig):
    name = "kmconsole"
    verbose_name = "kmconsole"

    def ready(self) -> None:
        from kmconsole.celery import ensure_queue_dirs

        ensure_queue_dirs()
