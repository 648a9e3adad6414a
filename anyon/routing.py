"""Websocket URL patterns of every app, collected in one place for anyon.asgi."""

from django.urls import path  # noqa: F401  (apps append their patterns below)

websocket_urlpatterns: list = []
