from django.apps import AppConfig


class KmconsoleConfig(AppConfig):
    name = "kmconsole"
    verbose_name = "kmconsole"
