from django.apps import AppConfig


class AnyonConfig(AppConfig):
    name = "anyon"
    verbose_name = "Anyon Cloud"
