"""Reads of snapshots. Scoped by owner: another user's snapshot is simply not found (staff's too: the admin shows
every user's)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone

from execution.models import Attempt, Environment, Snapshot


def snapshots_for(*, user) -> QuerySet[Snapshot]:
    """The user's snapshots, by repository, newest first."""
    return Snapshot.objects.filter(owner=user).order_by("repo_url", "-created_at", "-id")


def environment_snapshots(*, environment: Environment) -> QuerySet[Snapshot]:
    return Snapshot.objects.filter(environment=environment, owner_id=environment.owner_id).order_by("-created_at")


def own_snapshot_for(*, user, snapshot_id: int) -> Snapshot:
    return Snapshot.objects.get(owner=user, pk=snapshot_id)


def snapshot_of_attempt(*, attempt: Attempt, queue: str) -> Snapshot | None:
    """The snapshot on ``queue``'s host the attempt started from, else the one its setup made; None when neither
    (is left)."""
    owned = Snapshot.objects.filter(owner_id=attempt.task.owner_id, queue=queue)
    if attempt.from_snapshot_of is not None:
        return owned.filter(created_at=attempt.from_snapshot_of).order_by("-id").first()
    if attempt.snapshot_saved:
        return owned.filter(attempt_id=attempt.pk).order_by("-created_at", "-id").first()
    return None


def snapshot_note(attempt: Attempt) -> str:
    """What the attempt page says of its setup: started from a snapshot, or how long setup took and what was kept."""
    if attempt.from_snapshot_of is not None:
        made = timezone.localtime(attempt.from_snapshot_of)
        return f"Started from the snapshot of {made:%Y-%m-%d %H:%M}: the setup script did not run."
    if attempt.setup_seconds is None:
        return ""
    kept = "snapshot saved" if attempt.snapshot_saved else "no snapshot saved"
    return f"Setup ran (took {attempt.setup_seconds:.0f} s); {kept}."
