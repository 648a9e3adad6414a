"""Every scheduled job of Anyon in one registry, reconciled at each worker's start (docs/ARCHITECTURE.md,
"Scheduled jobs")."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

#: Anyon's own schedules are named with this prefix; any other schedule is an operator's and never touched.
PREFIX = "anyon: "

#: django-q2's schedule types (``Schedule.MINUTES`` and so on), spelt out so this module needs no django-q2 import.
MINUTES, HOURLY, DAILY = "I", "H", "D"

#: Dotted paths of the scheduled functions (the pool's refill is also queued by each claim).
CLEANUP = "execution.sweeps.cleanup.run_scheduled_cleanup"
POOL_REFILL = "execution.hosts.pool.refill.refill_pool"
LOG_RETENTION = "execution.sweeps.log_retention.run_scheduled_log_retention"
TOKEN_EXPIRY = "secrets_app.expiry.check_token_expiry"


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    func: str
    schedule_type: str
    minutes: int | None = None
    cluster: str | None = None  # None: any worker cluster (database work only); a queue: that Docker host's
    repeats: int = field(default=-1)

    def fields(self) -> dict:
        return {
            "func": self.func,
            "schedule_type": self.schedule_type,
            "minutes": self.minutes,
            "cluster": self.cluster,
            "repeats": self.repeats,
        }


def cleanup_schedule_name(queue: str) -> str:
    return f"{PREFIX}cleanup sweeps [{queue}]"


def pool_schedule_name(queue: str) -> str:
    return f"{PREFIX}warm pool refill [{queue}]"


def registry(queue: str) -> list[ScheduleSpec]:
    """The schedules a worker of ``queue`` keeps: those of its own Docker host (cluster ``queue``) and those any
    worker may run (cluster None). Intervals come from the settings where they are configurable."""
    specs = [
        ScheduleSpec(cleanup_schedule_name(queue), CLEANUP, MINUTES, settings.ANYON_CLEANUP_MINUTES, queue),
        ScheduleSpec(f"{PREFIX}log retention sweep", LOG_RETENTION, HOURLY),
        ScheduleSpec(f"{PREFIX}token expiry check", TOKEN_EXPIRY, DAILY),
    ]
    if settings.ANYON_POOL_SIZE > 0:  # off: no refill schedule (the one left from before is removed)
        specs.append(ScheduleSpec(pool_schedule_name(queue), POOL_REFILL, MINUTES, 1, queue))
    return specs


@dataclass
class ScheduleDiff:
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.changed or self.extra)

    def line(self) -> str:
        parts = [f"{what}: {', '.join(names)}" for what, names in vars(self).items() if names]
        return "; ".join(parts) or "as registered"


def _owned(queue: str):
    """Anyon's schedules in the scope of ``queue``: by name prefix, on this queue's cluster or on any. Another
    queue's schedules are its own workers' to reconcile."""
    from django.db.models import Q
    from django_q.models import Schedule

    return Schedule.objects.filter(name__startswith=PREFIX).filter(Q(cluster=queue) | Q(cluster__isnull=True))


def _differs(row, spec: ScheduleSpec) -> bool:
    return any(getattr(row, key) != value for key, value in spec.fields().items())


def schedule_diff(queue: str) -> ScheduleDiff:
    """How the schedules in the database differ from the registry (read only: ``doctor`` shows it)."""
    specs = {spec.name: spec for spec in registry(queue)}
    rows = {row.name: row for row in _owned(queue)}
    return ScheduleDiff(
        missing=sorted(set(specs) - set(rows)),
        changed=sorted(name for name in specs.keys() & rows.keys() if _differs(rows[name], specs[name])),
        extra=sorted(set(rows) - set(specs)),
    )


def do_reconcile_schedules(*, queue: str) -> ScheduleDiff:
    """Make the database's schedules the registry's: create the missing, update the changed (a changed interval
    runs next at once, then at the new interval) and delete Anyon's that the registry no longer lists. Schedules
    not named with :data:`PREFIX` are an operator's: left as they are. Returns what it changed."""
    from django_q.models import Schedule

    with transaction.atomic():
        diff = schedule_diff(queue)
        specs = {spec.name: spec for spec in registry(queue)}
        for name in diff.missing:
            Schedule.objects.create(name=name, next_run=timezone.now(), **specs[name].fields())
        for name in diff.changed:
            _owned(queue).filter(name=name).update(next_run=timezone.now(), **specs[name].fields())
        if diff.extra:
            _owned(queue).filter(name__in=diff.extra).delete()
    return diff
