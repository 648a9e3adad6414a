"""Raising alerts. The same ``dedupe_key`` within ``ANYON_ALERT_WINDOW`` counts up instead of notifying again.

Raising an alert never fails the caller: a run that hits a problem must still finish its cleanup.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from shared.models import Alert, AlertSeverity

logger = logging.getLogger(__name__)


class AlertKind:
    SECRET_LOOKUP_FAILED = "secret_lookup_failed"
    SECRET_INJECTION_FAILED = "secret_injection_failed"
    SECRET_CLEANUP_FAILED = "secret_cleanup_failed"
    CLAUDE_LOGIN_FAILED = "claude_login_failed"
    EXEC_NONZERO_EXIT = "exec_nonzero_exit"
    CLAUDE_CLI_ERROR = "claude_cli_error"
    DOCKER_UNREACHABLE = "docker_unreachable"
    ORPHAN_REMOVED = "orphan_removed"
    TOKEN_EXPIRING = "token_expiring"
    TOKEN_EXPIRED = "token_expired"
    STALE_ATTEMPT = "stale_attempt"
    EGRESS_PROXY_DOWN = "egress_proxy_down"
    PUSH_REFUSED_SECRET = "push_refused_secret"
    DOCKER_HOST_LOST = "docker_host_lost"
    WORKER_LOST = "worker_lost"

    @classmethod
    def all(cls) -> list[str]:
        return [v for k, v in vars(cls).items() if k.isupper()]


def do_raise_alert(
    *,
    kind: str,
    message: str,
    severity: str = AlertSeverity.ERROR,
    attempt=None,
    user=None,
    dedupe_key: str = "",
) -> Alert | None:
    """Record an alert (or count up a recent one with the same key); deliver a new one once the transaction
    commits. ``attempt`` is any object with a ``pk`` (or None). Returns None if even recording failed."""
    from shared.notifiers import scrub

    message = scrub(message)  # callers pass masked text; token patterns are masked here once more, before storage
    attempt_id = getattr(attempt, "pk", None)
    dedupe_key = (dedupe_key or f"{kind}:{attempt_id or ''}:{getattr(user, 'pk', '')}")[:200]
    now = timezone.now()
    window = timedelta(seconds=settings.ANYON_ALERT_WINDOW)
    try:
        with transaction.atomic():
            _one_writer_per_key(dedupe_key)
            recent = Alert.objects.filter(dedupe_key=dedupe_key, last_seen__gte=now - window).order_by("-id").first()
            if recent is not None:
                Alert.objects.filter(pk=recent.pk).update(count=F("count") + 1, last_seen=now, message=message)
                recent.refresh_from_db()
                return recent
            alert = Alert.objects.create(
                kind=kind, severity=severity, message=message, attempt_id=attempt_id, user=user, dedupe_key=dedupe_key
            )
            logger.warning("alert %s (%s): %s", kind, severity, message)
            transaction.on_commit(lambda: _deliver(alert))
    except Exception:
        logger.exception("could not record alert %s", kind)
        return None
    return alert


def _deliver(alert: Alert) -> None:
    """Send a new alert to the notifiers (after its transaction committed) and record how each went."""
    from shared.notifiers import notify

    delivery = notify(alert)
    if not delivery:
        return
    try:
        do_mark_alert_notified(alert=alert, delivery=delivery)
    except Exception:
        logger.exception("could not record the delivery of alert %s", alert.pk)


def do_mark_alert_notified(*, alert: Alert, delivery: dict) -> None:
    """Record on ``alert`` how each notifier destination took it (``{"slack": {"status": …, "at": …}, …}``)."""
    with transaction.atomic():
        Alert.objects.filter(pk=alert.pk).update(delivery=delivery)
    alert.delivery = delivery


def _one_writer_per_key(dedupe_key: str) -> None:
    """Two processes raising the same alert at once must count up one alert, not create two. SQLite's IMMEDIATE
    transactions already take the write lock before the read; PostgreSQL gets a transaction-scoped advisory lock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"anyon-alert:{dedupe_key}"])


def do_acknowledge_alerts(*, alerts, by) -> int:
    """Mark the open ones of ``alerts`` (a queryset) acknowledged by ``by``; returns how many."""
    with transaction.atomic():
        return alerts.filter(acknowledged_at__isnull=True).update(acknowledged_by=by, acknowledged_at=timezone.now())
