from django.apps import AppConfig


class SharedConfig(AppConfig):
    name = "shared"
    verbose_name = "Operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from shared.live.sessions import connect_signals

        connect_signals()  # live sockets close on log-out and deactivation
