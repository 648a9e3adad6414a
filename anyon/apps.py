import sys

from django.apps import AppConfig
from django.conf import settings

#: Commands that run attempts (and so write secrets below ANYON_TEMP_DIR): they refuse to start on an unsafe one.
TEMP_DIR_COMMANDS = ("qcluster",)


class AnyonConfig(AppConfig):
    name = "anyon"
    verbose_name = "Anyon Cloud"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from anyon.data_dir import restrict_sqlite_files

        connection_created.connect(restrict_sqlite_files, dispatch_uid="anyon.restrict_sqlite_files")
        if sys.argv[1:2] and sys.argv[1] in TEMP_DIR_COMMANDS:
            refuse_unsafe_temp_dir(sys.argv[1])
        if settings.SENTRY_DSN:
            import sentry_sdk

            from shared.notifiers import before_send

            # PII is off by default; before_send scrubs secrets from every event.
            sentry_sdk.init(dsn=settings.SENTRY_DSN, before_send=before_send)


def refuse_unsafe_temp_dir(command: str) -> None:
    """Exit with one line (no traceback) when ANYON_TEMP_DIR cannot be this service's private directory. The worker
    would otherwise start and fail deep inside each of its processes (``manage.py serve`` checks it itself)."""
    from shared.tempdir import TempDirError, ensure_temp_dir

    try:
        ensure_temp_dir(settings.ANYON_TEMP_DIR)
    except (TempDirError, PermissionError) as exc:
        sys.stderr.write(f"{command}: ANYON_TEMP_DIR: {exc}\n")
        raise SystemExit(1) from None
