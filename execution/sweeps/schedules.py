"""The cleanup schedule of each worker queue (Docker host): its sweeps must run next to its own engine."""

from __future__ import annotations

from django.conf import settings


def cleanup_schedule_name(queue: str) -> str:
    return f"anyon: cleanup sweeps [{queue}]"


def ensure_cleanup_schedule(queue: str) -> None:
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=cleanup_schedule_name(queue),
        defaults={
            "func": "execution.sweeps.cleanup.run_scheduled_cleanup",
            "schedule_type": Schedule.MINUTES,
            "minutes": settings.ANYON_CLEANUP_MINUTES,
            "repeats": -1,
            "cluster": queue,
        },
    )
