from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "users"
    verbose_name = "Device users"

    def ready(self) -> None:
        from users import signals  # noqa: F401 - connects the Device summary receivers
