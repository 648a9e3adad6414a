"""The staff dashboard at the top of the admin index: what needs attention right now."""

from __future__ import annotations

from datetime import timedelta

from django import template
from django.db.models import Sum
from django.utils import timezone

from anyon.health import check_claude_cli, check_docker, check_worker
from execution.attempts.selectors import host_rows
from execution.models import ACTIVE_STATUSES, Attempt, AttemptStatus
from shared.alerts import AlertKind
from shared.models import Alert

register = template.Library()


@register.inclusion_tag("anyon/ops_dashboard.html")
def ops_dashboard() -> dict:
    day_ago = timezone.now() - timedelta(hours=24)
    return {
        "active": Attempt.objects.filter(status__in=ACTIVE_STATUSES).count(),
        "failed_24h": Attempt.objects.filter(
            status__in=[AttemptStatus.FAILED, AttemptStatus.TIMED_OUT], finished_at__gte=day_ago
        ).count(),
        "open_alerts": Alert.objects.filter(acknowledged_at__isnull=True).count(),
        "orphans_24h": Alert.objects.filter(kind=AlertKind.ORPHAN_REMOVED, last_seen__gte=day_ago).aggregate(
            n=Sum("count")
        )["n"]
        or 0,
        "docker": check_docker(timeout=2),
        "worker": check_worker(),
        "claude_code": check_claude_cli(timeout=2),
        "hosts": host_rows(),
    }
