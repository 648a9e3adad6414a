"""What every cleanup sweep shares: its report, its alert for removed orphans, which attempts are busy or local."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Q

from execution.models import ACTIVE_STATUSES, Attempt, JobStatus
from shared.alerts import AlertKind, do_raise_alert
from shared.models import AlertSeverity

Progress = Callable[[str], None]


@dataclass
class SweepReport:
    name: str
    examined: int = 0
    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    dry_run: bool = False

    def try_remove(self, what: str, name: str, remove: Callable[[], object], progress: Progress) -> bool:
        """One removal of a sweep: counted as removed, or as failed with the engine's reason shown (the sweep goes
        on with the next)."""
        try:
            remove()
        except Exception as exc:
            self.failed.append(name)
            progress(f"FAILED to remove {what} {name}: {exc}")
            return False
        self.removed.append(name)
        return True

    def line(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        text = f"{self.name}: examined {self.examined}, {verb} {len(self.removed)}"
        return text + (f", FAILED {len(self.failed)}" if self.failed else "")


def alert_orphans_removed(report: SweepReport, what: str, *, dedupe_key: str) -> None:
    """One warning per sweep that removed orphans (deduplicated by key), naming them; a dry run removed
    nothing."""
    if report.removed and not report.dry_run:
        do_raise_alert(
            kind=AlertKind.ORPHAN_REMOVED,
            severity=AlertSeverity.WARNING,
            message=f"removed {len(report.removed)} orphan {what}(s): {', '.join(report.removed)[:1500]}",
            dedupe_key=dedupe_key,
        )


def noop(message: str) -> None:
    pass


def local_queue() -> Q:
    """Attempts whose container and workspace live on this worker's Docker host (its queue)."""
    local = Q(queue=settings.ANYON_WORKER_QUEUE)
    return local | Q(queue="") if settings.ANYON_WORKER_QUEUE == "anyon" else local


def busy_attempt_ids() -> set[int]:
    """Attempts whose worker may be using their secret dir or container right now."""
    active = set(Attempt.objects.filter(status__in=ACTIVE_STATUSES).values_list("pk", flat=True))
    jobs = set(
        Attempt.objects.filter(jobs__status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).values_list("pk", flat=True)
    )
    return active | jobs
