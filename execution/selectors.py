"""Reads of the execution app. Ownership is part of every lookup: another user's object is simply not found."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Count, Q, QuerySet

from execution.models import ACTIVE_STATUSES, Attempt, AttemptStatus, JobStatus, LogRecord, Task


def tasks_for(*, user) -> QuerySet[Task]:
    return Task.objects.filter(owner=user).annotate(attempt_count=Count("attempts"))


def task_for(*, user, task_id: int) -> Task:
    return Task.objects.get(pk=task_id, owner=user)


def attempt_for(*, user, attempt_id: int) -> Attempt:
    """The attempt if ``user`` owns it (staff may see every attempt); else ``Attempt.DoesNotExist``."""
    attempts = Attempt.objects.select_related("task", "task__owner")
    if not user.is_staff:
        attempts = attempts.filter(task__owner=user)
    return attempts.get(pk=attempt_id)


def egress_block_count(*, attempt: Attempt) -> int:
    """How many connections the egress proxy refused for this attempt (sealed runs)."""
    return attempt.egress_blocks.count()


def own_attempt_for(*, user, attempt_id: int) -> Attempt:
    """The attempt if ``user`` owns it, staff or not: what acts with the owner's credentials (a follow-up, a pull
    request) or removes the owner's work may only be asked for by the owner."""
    return Attempt.objects.select_related("task", "task__owner").get(pk=attempt_id, task__owner=user)


def attempt_is_working(attempt: Attempt) -> bool:
    """Queued or running, itself or one of its jobs: its workspace and container are in use."""
    return attempt.is_active or attempt.jobs.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).exists()


def attempts_ahead(attempt: Attempt) -> int:
    """For an attempt waiting for a slot (``ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER``): how many of its owner's attempts
    go before it, the ones it waits for included. 0 for any other attempt."""
    if not attempt.waiting_for_slot or attempt.status != AttemptStatus.QUEUED:
        return 0
    return (
        Attempt.objects.filter(task__owner_id=attempt.task.owner_id, status__in=ACTIVE_STATUSES)
        .filter(Q(waiting_for_slot=False) | Q(pk__lt=attempt.pk))
        .count()
    )


def waiting_note(attempt: Attempt) -> str:
    """What the attempt page says about a waiting attempt ("" for any other)."""
    ahead = attempts_ahead(attempt)
    if not ahead:
        return ""
    return (
        f"Queued behind your other attempts ({ahead} ahead of it; at most "
        f"{settings.ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER} of yours run at once). It starts by itself."
    )


def log_records_after(*, attempt_id: int, after_seq: int, limit: int = 500, max_chars: int | None = None) -> list:
    """The attempt's records after ``after_seq`` in order: at most ``limit`` of them, and no more than needed to
    reach ``max_chars`` of text (records are read one small batch at a time, so a backlog of large records is not
    loaded whole to fill one message)."""
    rows = (
        LogRecord.objects.filter(attempt_id=attempt_id, seq__gt=after_seq)
        .order_by("seq")
        .values_list("seq", "run_id", "stream", "text")[:limit]
    )
    records, size = [], 0
    for row in rows.iterator(chunk_size=16):
        records.append(row)
        size += len(row[3])
        if max_chars is not None and size >= max_chars:
            break
    return records


def last_log_seq(*, attempt_id: int) -> int:
    """The ``seq`` of the attempt's newest record (0 before the first)."""
    last = LogRecord.objects.filter(attempt_id=attempt_id).order_by("-seq").values_list("seq", flat=True).first()
    return last or 0


def attempt_snapshot(attempt: Attempt) -> dict:
    """What a live viewer needs to show the attempt's state (sent over the websocket)."""
    runs = [
        {
            "id": run.pk,
            "kind": run.kind,
            "title": run.title,
            "status": run.status,
            "exit_code": run.exit_code,
            "duration": run.duration.total_seconds() if run.duration else None,
        }
        for run in attempt.runs.all()
    ]
    jobs = [{"id": j.pk, "kind": j.kind, "status": j.status, "error": j.error} for j in attempt.jobs.all()]
    return {
        "id": attempt.pk,
        "status": attempt.status,
        "error": attempt.error,
        "active": attempt.is_active or any(j["status"] in ("queued", "running") for j in jobs),
        "jobs": jobs,
        "head_commit": attempt.head_commit,
        "pr_url": attempt.pr_url,
        "waiting": waiting_note(attempt),
        "log_chars": attempt.log_chars,
        "log_cut_at_seq": attempt.log_cut_at_seq,
        "duration": attempt.duration.total_seconds() if attempt.duration else None,
        "runs": runs,
    }
