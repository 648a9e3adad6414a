"""Websocket URL patterns of every app, collected in one place for anyon.asgi."""

from django.urls import path

from execution.consumers import AttemptLogConsumer

websocket_urlpatterns = [
    path("ws/attempts/<int:attempt_id>/logs/", AttemptLogConsumer.as_asgi()),
]
