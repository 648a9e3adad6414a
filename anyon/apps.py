from django.apps import AppConfig
from django.conf import settings


class AnyonConfig(AppConfig):
    name = "anyon"
    verbose_name = "Anyon Cloud"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from anyon.data_dir import restrict_sqlite_files

        connection_created.connect(restrict_sqlite_files, dispatch_uid="anyon.restrict_sqlite_files")
        if settings.SENTRY_DSN:
            import sentry_sdk

            from shared.notifiers import before_send

            # PII is off by default; before_send scrubs secrets from every event.
            sentry_sdk.init(dsn=settings.SENTRY_DSN, before_send=before_send)
