from django.apps import AppConfig


class SecretsAppConfig(AppConfig):
    name = "secrets_app"
    verbose_name = "Secrets and connections"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from secrets_app.key_canary import post_migrate_canary

        # The store's key canary is written under the key of whoever migrates (secrets_app/key_canary.py).
        post_migrate.connect(post_migrate_canary, sender=self, dispatch_uid="anyon-key-canary")
