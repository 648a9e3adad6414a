from django.apps import AppConfig


class SharedConfig(AppConfig):
    name = "shared"
    verbose_name = "Operations"
    default_auto_field = "django.db.models.BigAutoField"
