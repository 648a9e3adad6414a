"""State changes of tasks and attempts (the ``do_*`` service layer). Views and the worker stay thin."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from execution.log_writer import wake_viewers
from execution.models import ATTEMPT_TRANSITIONS, Attempt, AttemptStatus, RunKind, Task
from execution.repo_urls import validate_branch, validate_repo_url

logger = logging.getLogger(__name__)


def do_create_task(*, owner, title: str, repo_url: str, base_branch: str, prompt: str) -> Task:
    """Create a task after validating what the user typed (raises ValidationError)."""
    return Task.objects.create(
        owner=owner,
        title=title.strip()[:200],
        repo_url=validate_repo_url(repo_url),
        base_branch=validate_branch(base_branch or "main"),
        prompt=prompt,
    )


def branch_name(attempt_id: int) -> str:
    return f"anyon/attempt-{attempt_id}"


def default_plan(task: Task, attempt_id: int) -> list[dict]:
    """The steps of an attempt: clone with the injected token, create the branch, run Claude Code."""
    return [
        {
            "kind": RunKind.CLONE,
            "title": "Clone repository",
            "argv": ["git", "clone", "--branch", task.base_branch, "--", task.repo_url, "/workspace"],
        },
        {
            "kind": RunKind.CUSTOM,
            "title": "Create branch",
            "argv": ["git", "checkout", "-b", branch_name(attempt_id)],
        },
        {
            "kind": RunKind.AGENT,
            "title": "Claude Code",
            "argv": [
                "claude",
                "-p",
                task.prompt,
                "--output-format",
                "stream-json",
                "--verbose",
                "--dangerously-skip-permissions",  # the container is the sandbox
            ],
        },
    ]


def do_start_attempt(*, task: Task, plan: list[dict] | None = None, enqueue: bool = True) -> Attempt:
    """Create an attempt and queue it for a worker. ``plan`` overrides the default steps (tests, benchmarks)."""
    with transaction.atomic():
        attempt = Attempt.objects.create(task=task)
        attempt.branch = branch_name(attempt.pk)
        attempt.plan = plan if plan is not None else default_plan(task, attempt.pk)
        attempt.save(update_fields=["branch", "plan"])
    if enqueue:
        from django_q.tasks import async_task

        transaction.on_commit(
            lambda: async_task(
                "execution.runner.run_attempt", attempt.pk, task_name=f"attempt-{attempt.pk}", group="attempts"
            )
        )
    logger.info("attempt %s of task %s queued", attempt.pk, task.pk)
    return attempt


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
    moved = Attempt.objects.filter(pk=attempt.pk, status__in=allowed_from).update(**updates)
    if moved:
        for key, value in updates.items():
            setattr(attempt, key, value)
        wake_viewers(attempt.pk, status=to)
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
    Attempt.objects.filter(pk=attempt.pk, status__in=[AttemptStatus.PROVISIONING, AttemptStatus.RUNNING]).update(
        cancel_requested=True
    )
    wake_viewers(attempt.pk)


def run_timeout() -> int:
    return settings.RUN_TIMEOUT
