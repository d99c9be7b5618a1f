from django.apps import AppConfig


class VppConfig(AppConfig):
    name = "vpp"
    verbose_name = "Apple VPP"

    def ready(self) -> None:
        from vpp import checks  # noqa: F401  (registers the system checks)
