from django.apps import AppConfig
from django.conf import settings


class AnyonConfig(AppConfig):
    name = "anyon"
    verbose_name = "Anyon Cloud"

    def ready(self) -> None:
        if settings.SENTRY_DSN:
            import sentry_sdk

            from shared.notifiers import before_send

            # PII is off by default; before_send scrubs secrets from every event.
            sentry_sdk.init(dsn=settings.SENTRY_DSN, before_send=before_send)
