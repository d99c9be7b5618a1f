from django.apps import AppConfig


class VppConfig(AppConfig):
    name = "vpp"
    verbose_name = "Apple VPP"

    def ready(self) -> None:
        from users.selectors import register_row_annotation
        from vpp import checks  # noqa: F401  (registers the system checks)
        from vpp.selectors import users_vpp_row_annotation

        register_row_annotation(users_vpp_row_annotation)  # the VPP status column of the Users page
