"""Websocket URL patterns of every app, collected in one place for anyon.asgi."""

from django.urls import path

from execution.web.consumers import AttemptLogConsumer
from execution.web.environment_consumer import EnvironmentPageConsumer
from secrets_app.consumers import ClaudeLoginConsumer, SettingsConsumer

websocket_urlpatterns = [
    path("ws/attempts/<int:attempt_id>/logs/", AttemptLogConsumer.as_asgi()),
    path("ws/environments/<str:owner>/<str:name>/live/", EnvironmentPageConsumer.as_asgi()),
    path("ws/settings/", SettingsConsumer.as_asgi()),
    path("ws/settings/claude-login/", ClaudeLoginConsumer.as_asgi()),
]
