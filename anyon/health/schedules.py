"""Whether the scheduled jobs in the database are the registry's (``execution.sweeps.schedules``)."""

from __future__ import annotations

from django.conf import settings

from anyon.health.checks import OK, WARN, Check


def check_schedules() -> Check:
    from execution.sweeps.schedules import schedule_diff

    name = "schedules"
    try:
        diff = schedule_diff(settings.ANYON_WORKER_QUEUE)
    except Exception as exc:
        return Check(name, WARN, f"cannot read the schedules: {exc}", "python manage.py migrate", required=False)
    if diff:
        return Check(
            name,
            WARN,
            f"differ from the registry ({diff.line()})",
            "restart a worker of this queue: it reconciles the schedules when it starts",
            required=False,
        )
    return Check(name, OK, "as registered (execution/sweeps/schedules.py)", required=False)
