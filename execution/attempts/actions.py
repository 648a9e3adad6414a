"""State changes of tasks and attempts (the ``do_*`` service layer). Views and the worker stay thin."""

from __future__ import annotations

import functools
import logging

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from execution.attempts.selectors import attempt_is_working, placeable_queues
from execution.attempts.steps import branch_name, default_plan
from execution.git.repo_urls import validate_branch, validate_repo_url
from execution.live import wake_environment_pages
from execution.logs.writer import wake_attempt_viewers
from execution.models import (
    ATTEMPT_TRANSITIONS,
    FINAL_STATUSES,
    Attempt,
    AttemptJob,
    AttemptStatus,
    JobKind,
    JobStatus,
    Task,
)
from execution.prompts import validate_prompt

logger = logging.getLogger(__name__)


def do_create_task(*, owner, title: str, repo_url: str, base_branch: str, prompt: str) -> Task:
    """Create a task after validating what the user typed (raises ValidationError)."""
    return Task.objects.create(
        owner=owner,
        title=title.strip()[:200],
        repo_url=validate_repo_url(repo_url),
        base_branch=validate_branch(base_branch or "main"),
        prompt=validate_prompt(prompt),
    )


def pick_queue() -> str:
    """The least busy of the worker queues (Docker hosts) that take new attempts: not draining, engine answering,
    worker heartbeating (``execution.hosts.actions``)."""
    queues = placeable_queues(settings.ANYON_WORKER_QUEUES)
    busy = dict(
        Attempt.objects.filter(
            queue__in=queues,
            status__in=[AttemptStatus.QUEUED, AttemptStatus.PROVISIONING, AttemptStatus.RUNNING],
            waiting_for_slot=False,
        )
        .values("queue")
        .annotate(n=Count("pk"))
        .values_list("queue", "n")
    )
    return min(queues, key=lambda q: (busy.get(q, 0), queues.index(q)))


def local_queue(attempt: Attempt) -> bool:
    """Whether this process sits next to the Docker engine that holds the attempt's container and workspace."""
    return (attempt.queue or settings.ANYON_WORKER_QUEUE) == settings.ANYON_WORKER_QUEUE


def do_start_attempt(*, task: Task, plan: list[dict] | None = None) -> Attempt:
    """Create an attempt and queue it for a worker. ``plan`` overrides the default steps (tests, benchmarks).

    At most ``ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER`` attempts of one user hold a queue task or a worker at once; the
    others wait queued (``waiting_for_slot``), without a queue task, until one of those ends (see
    :func:`do_dispatch_waiting_attempts`)."""
    with transaction.atomic():
        attempt = Attempt.objects.create(task=task, queue=pick_queue(), waiting_for_slot=True)
        attempt.branch = branch_name(attempt.pk)
        steps = default_plan(repo_url=task.repo_url, base_branch=task.base_branch, attempt_id=attempt.pk)
        attempt.plan = plan if plan is not None else [step.to_plan() for step in steps]
        attempt.save(update_fields=["branch", "plan"])
        wake_environment_pages(task.owner_id)  # the repository's recent runs
        do_dispatch_waiting_attempts(owner_id=task.owner_id)
        attempt.refresh_from_db(fields=["waiting_for_slot", "queue"])
    logger.info("attempt %s of task %s queued%s", attempt.pk, task.pk, " (waiting)" if attempt.waiting_for_slot else "")
    return attempt


def do_dispatch_waiting_attempts(*, owner_id: int) -> list[int]:
    """Give the owner's waiting attempts, oldest first, the slots that are free: each gets its queue task (on
    commit). Called when an attempt is started and when one ends, so a waiting attempt never holds a worker and
    the owner's attempts start in the order they were made. Returns the ids it dispatched."""
    from django.contrib.auth import get_user_model
    from django_q.tasks import async_task

    with transaction.atomic():
        # One dispatcher per user at a time (PostgreSQL: the row lock; SQLite: IMMEDIATE transactions).
        get_user_model().objects.select_for_update().filter(pk=owner_id).exists()
        mine = Attempt.objects.filter(task__owner_id=owner_id)
        holding = mine.filter(
            status__in=[AttemptStatus.QUEUED, AttemptStatus.PROVISIONING, AttemptStatus.RUNNING], waiting_for_slot=False
        ).count()
        limit = settings.ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER  # 0: no limit
        free = limit - holding if limit > 0 else None
        if free is not None and free <= 0:
            return []
        waiting = list(
            mine.filter(status=AttemptStatus.QUEUED, waiting_for_slot=True).order_by("pk").values_list("pk", flat=True)
        )[:free]
        for attempt_id in waiting:
            queue = pick_queue()
            Attempt.objects.filter(pk=attempt_id).update(waiting_for_slot=False, queue=queue)
            transaction.on_commit(
                functools.partial(
                    async_task,
                    "execution.runner.run_attempt",
                    attempt_id,
                    task_name=f"attempt-{attempt_id}",
                    group="attempts",
                    cluster=queue,
                )
            )
            wake_attempt_viewers(attempt_id)
    return waiting


def do_transition(
    *, attempt: Attempt, to: str, error: str = "", only_from: tuple[str, ...] | None = None, **fields
) -> bool:
    """Move the attempt's status forward; refuse anything else. Returns whether it moved."""
    allowed_from = [s for s, targets in ATTEMPT_TRANSITIONS.items() if to in targets]
    if only_from is not None:
        allowed_from = [s for s in allowed_from if s in only_from]
    now = timezone.now()
    updates = {"status": to, **fields}
    if to == AttemptStatus.PROVISIONING:
        updates["started_at"] = now
    if to in (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED, AttemptStatus.CANCELLED, AttemptStatus.TIMED_OUT):
        updates["finished_at"] = now
    if error:
        updates["error"] = error[:4000]
    with transaction.atomic():
        moved = Attempt.objects.filter(pk=attempt.pk, status__in=allowed_from).update(**updates)
        if moved:
            for key, value in updates.items():
                setattr(attempt, key, value)
            wake_attempt_viewers(attempt.pk, status=to)
            owner_id = Task.objects.values_list("owner_id", flat=True).get(pk=attempt.task_id)
            wake_environment_pages(owner_id)  # the repository's recent runs
            if to in FINAL_STATUSES:  # its slot is free: the owner's next waiting attempt gets it
                do_dispatch_waiting_attempts(owner_id=owner_id)
    return bool(moved)


def do_cancel_attempt(*, attempt: Attempt, by: str) -> None:
    """Cancel: a queued attempt ends at once; a running one is killed by its worker within a second."""
    if do_transition(
        attempt=attempt,
        to=AttemptStatus.CANCELLED,
        error=f"Cancelled by {by} before it started.",
        only_from=(AttemptStatus.QUEUED,),
    ):
        return
    with transaction.atomic():
        Attempt.objects.filter(pk=attempt.pk, status__in=[AttemptStatus.PROVISIONING, AttemptStatus.RUNNING]).update(
            cancel_requested=True
        )
        wake_attempt_viewers(attempt.pk)


class AttemptBusy(Exception):
    """The attempt cannot take this action now; the message says why."""


def _ensure_idle(attempt: Attempt) -> None:
    if attempt_is_working(attempt):
        raise AttemptBusy("The attempt is still working; wait for it to finish or cancel it.")
    if not attempt.workspace_volume or not attempt.base_commit:
        raise AttemptBusy("This attempt has no workspace with a repository (its clone did not succeed).")


def _enqueue_job(job: AttemptJob) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task(
            "execution.runner.run_job",
            job.pk,
            task_name=f"attempt-job-{job.pk}",
            group="attempts",
            cluster=job.attempt.queue or settings.ANYON_WORKER_QUEUE,
        )
    )


def do_start_follow_up(*, attempt: Attempt, prompt: str, requested_by=None) -> AttemptJob:
    """Another agent run in the same workspace, resuming the Claude session; queued (on commit) for a worker of the
    attempt's queue."""
    try:
        prompt = validate_prompt(prompt)
    except ValidationError as exc:
        raise AttemptBusy(" ".join(exc.messages)) from exc
    _ensure_idle(attempt)
    with transaction.atomic():
        job = AttemptJob.objects.create(
            attempt=attempt, kind=JobKind.FOLLOW_UP, prompt=prompt, requested_by=requested_by or attempt.task.owner
        )
        _enqueue_job(job)
        wake_attempt_viewers(attempt.pk)
    return job


def do_request_pull_request(*, attempt: Attempt, requested_by=None) -> AttemptJob:
    """Push the attempt's branch and open a pull request against the task's base branch: a job queued (on commit)
    for a worker of the attempt's queue."""
    _ensure_idle(attempt)
    if attempt.pr_number:
        raise AttemptBusy(f"Pull request #{attempt.pr_number} already exists: {attempt.pr_url}")
    if not attempt.head_commit or attempt.head_commit == attempt.base_commit:
        raise AttemptBusy("There are no commits on the attempt's branch yet: nothing to propose.")
    with transaction.atomic():
        job = AttemptJob.objects.create(
            attempt=attempt, kind=JobKind.PULL_REQUEST, requested_by=requested_by or attempt.task.owner
        )
        _enqueue_job(job)
        wake_attempt_viewers(attempt.pk)
    return job


def do_cancel_job(*, job: AttemptJob) -> None:
    with transaction.atomic():
        if not AttemptJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
            status=JobStatus.CANCELLED, error="Cancelled before it started.", finished_at=timezone.now()
        ):
            AttemptJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(cancel_requested=True)
        wake_attempt_viewers(job.attempt_id)


def do_request_delete_attempt(*, attempt: Attempt, by: str, task_too: bool = False) -> bool:
    """Delete now when this process is next to the attempt's engine; otherwise queue the deletion on a worker of
    the attempt's host (``task_too``: that worker then deletes the task too once it has no attempt left). Returns
    True when it was deleted right away."""
    from django_q.tasks import async_task

    if attempt_is_working(attempt):
        raise AttemptBusy("The attempt is still working: cancel it first, then delete it.")
    if local_queue(attempt):
        do_delete_attempt(attempt=attempt, by=by)
        return True
    async_task(
        "execution.attempts.actions.delete_attempt_task",
        attempt.pk,
        by,
        task_too,
        cluster=attempt.queue,
        group="maintenance",
    )
    return False


def delete_attempt_task(attempt_id: int, by: str, task_too: bool = False) -> str:
    attempt = Attempt.objects.filter(pk=attempt_id).first()
    if attempt is None:
        return "already gone"
    task_id = attempt.task_id
    do_delete_attempt(attempt=attempt, by=by)
    if task_too and _delete_task_if_empty(task_id, by=by):
        return "deleted with its task"
    return "deleted"


def do_request_delete_task(*, task: Task, by: str) -> bool:
    """Delete a task the way its attempts are deleted: each attempt through :func:`do_request_delete_attempt`
    (containers, volumes and secret dir first), then the task. Refused (``AttemptBusy``) while one of its attempts
    is working. Returns True when the task is gone; False when attempts on other hosts were queued for deletion
    (their worker deletes the task after the last one)."""
    attempts = list(task.attempts.select_related("task"))
    working = [a.pk for a in attempts if attempt_is_working(a)]
    if working:
        raise AttemptBusy(
            f"Attempt(s) {', '.join(f'#{pk}' for pk in working)} of this task are still working: "
            "cancel them first, then delete the task."
        )
    here = [do_request_delete_attempt(attempt=attempt, by=by, task_too=True) for attempt in attempts]
    if not all(here):
        return False
    if not _delete_task_if_empty(task.pk, by=by):
        raise AttemptBusy("A new attempt of this task started meanwhile: the task stays.")
    return True


def _delete_task_if_empty(task_id: int, *, by: str) -> bool:
    """The task row, only while no attempt refers to it (one started meanwhile keeps it: deleting the task would
    drop that attempt's row without its container)."""
    with transaction.atomic():
        task = Task.objects.select_for_update().filter(pk=task_id).first()
        if task is None or Attempt.objects.filter(task_id=task_id).exists():
            return task is None
        task.delete()
    logger.info("task %s deleted by %s", task_id, by)
    return True


def do_clean_up_attempt(*, attempt: Attempt, engine=None) -> bool:
    """Remove what a finished attempt may have left on this host: its secret dir and its containers (found by
    their labels, so never another installation's, and the warm container it claimed, which carries no attempt
    label, by its recorded id). An attempt still working is left alone: returns False."""
    from execution.attempts import secret_dir
    from shared.docker.engine import DockerEngine

    if attempt_is_working(attempt):
        return False
    secret_dir.remove_secret_dir(secret_dir.key_of(attempt))
    engine = engine or DockerEngine()
    ids = {info["Id"] for info in engine.list_managed(settings.ANYON_INSTANCE, attempt_id=attempt.pk)}
    if attempt.secret_dir and attempt.container_id:
        ids.add(attempt.container_id)
    for container_id in ids:
        engine.stop_and_remove(container_id, timeout=1)
    return True


def do_delete_attempt(*, attempt: Attempt, by: str) -> None:
    """Remove the attempt's container, workspace volume and any secret dir, then the attempt itself.

    A running attempt is not deleted (its worker still uses the workspace): cancel it first. Raises
    ``EngineError`` when the engine cannot be reached, leaving the attempt in place so nothing is orphaned.
    """
    from execution.attempts.containers import home_volume
    from shared.docker.engine import DockerEngine

    if attempt_is_working(attempt):
        raise AttemptBusy("The attempt is still working: cancel it first, then delete it.")
    engine = DockerEngine()
    do_clean_up_attempt(attempt=attempt, engine=engine)
    if attempt.workspace_volume:
        engine.remove_volume(attempt.workspace_volume)
        engine.remove_volume(home_volume(attempt.workspace_volume))
    logger.info("attempt %s deleted by %s", attempt.pk, by)
    attempt.delete()
