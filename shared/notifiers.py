"""Alert delivery: Slack incoming webhook, e-mail, Sentry. Each configured destination is tried once per new
alert; how each went comes back to ``shared.alerts``, which records it (``Alert.delivery``). A failing destination
never breaks the caller.

Everything that leaves the process is scrubbed first: token patterns are masked (the alert messages are built
from already-masked output, but an extra pass costs nothing), and Sentry events go through ``before_send``.
"""

from __future__ import annotations

import logging

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from shared.masking import Masker

logger = logging.getLogger(__name__)
_scrubber = Masker()


def scrub(text: str) -> str:
    return _scrubber.mask(text)


def _slack(alert) -> str:
    url = settings.ANYON_SLACK_WEBHOOK_URL
    text = scrub(f"[{alert.severity}] {alert.kind}: {alert.message}")
    response = requests.post(url, json={"text": text[:3000]}, timeout=settings.ANYON_HTTP_TIMEOUT)
    if response.status_code >= 300:
        raise RuntimeError(f"Slack answered {response.status_code}")
    return "sent"


def _email(alert) -> str:
    subject = scrub(f"[Anyon {alert.severity}] {alert.kind}")
    body = scrub(
        f"{alert.message}\n\nkind: {alert.kind}\nseverity: {alert.severity}\n"
        f"attempt: {alert.attempt_id or '-'}\nuser: {alert.user_id or '-'}\n"
        f"first seen: {alert.first_seen:%Y-%m-%d %H:%M:%S} UTC\n"
    )
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, settings.ANYON_ALERT_EMAILS)
    return "sent"


def _sentry(alert) -> str:
    import sentry_sdk

    sentry_sdk.capture_message(
        scrub(f"{alert.kind}: {alert.message}"), level="error" if alert.severity in ("error", "critical") else "warning"
    )
    return "sent"


def destinations() -> dict:
    configured = {}
    if settings.ANYON_SLACK_WEBHOOK_URL:
        configured["slack"] = _slack
    if settings.ANYON_ALERT_EMAILS:
        configured["email"] = _email
    if settings.SENTRY_DSN:
        configured["sentry"] = _sentry
    return configured


def notify(alert) -> dict:
    """Deliver a new alert to every configured destination; returns how each went (empty: none configured).
    Never raises."""
    delivery = {}
    for name, send in destinations().items():
        try:
            delivery[name] = {"status": send(alert), "at": timezone.now().isoformat()}
        except Exception as exc:
            logger.warning("alert %s: %s delivery failed: %s", alert.pk, name, exc)
            delivery[name] = {"status": "failed", "error": scrub(str(exc))[:300], "at": timezone.now().isoformat()}
    return delivery


def before_send(event: dict, hint: dict) -> dict:
    """Sentry hook: mask secrets and token patterns in every string of the event, however deeply nested."""
    return _scrub_value(event)


def _scrub_value(value):
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    return value
