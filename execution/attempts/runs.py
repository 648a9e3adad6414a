"""What a worker records while it runs an attempt: runs, jobs, container, results (docs/ARCHITECTURE.md,
"Reads, actions, views")."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from execution.attempts.selectors import SNAPSHOT_FIELDS
from execution.attempts.steps import Step
from execution.live import wake_environment_pages
from execution.logs.writer import wake_attempt_viewers
from execution.models import Attempt, AttemptJob, JobStatus, Run, ToolOutput

MAX_ERROR_CHARS = 4000


def _update_attempt(attempt: Attempt, **fields) -> None:
    """Viewers are woken only when a field they are shown changed (``selectors.SNAPSHOT_FIELDS``)."""
    with transaction.atomic():
        Attempt.objects.filter(pk=attempt.pk).update(**fields)
        for key, value in fields.items():
            setattr(attempt, key, value)
        if SNAPSHOT_FIELDS.intersection(fields):
            wake_attempt_viewers(attempt.pk)


def do_set_container(*, attempt: Attempt, container_id: str) -> None:
    _update_attempt(attempt, container_id=container_id)


def do_set_warm_container(*, attempt: Attempt, container_id: str, workspace_volume: str, dir_name: str) -> None:
    """A warm container of the pool is the attempt's (or, all empty, no longer: it was not running)."""
    _update_attempt(attempt, container_id=container_id, workspace_volume=workspace_volume, secret_dir=dir_name)


def do_set_workspace_volume(*, attempt: Attempt, volume: str) -> None:
    """The attempt's workspace volume (``""`` once it has been removed)."""
    _update_attempt(attempt, workspace_volume=volume)


def do_record_results(
    *,
    attempt: Attempt,
    base_commit: str,
    head_commit: str,
    diff: list[dict],
    diff_truncated: bool,
    push_summary: dict | None = None,
) -> None:
    """``push_summary``: the branch and commits a push would send (execution/git/commit_list.py)."""
    _update_attempt(
        attempt,
        base_commit=base_commit,
        head_commit=head_commit,
        diff=diff,
        diff_truncated=diff_truncated,
        push_summary=push_summary or {},
    )


def do_record_base_commit(*, attempt: Attempt, base_commit: str) -> None:
    """The base as the clone left it, before any untrusted step ran: the diff and the pre-push guard start there."""
    _update_attempt(attempt, base_commit=base_commit)


def do_record_setup(*, attempt: Attempt, seconds: float) -> None:
    """How long the attempt's setup step ran (the attempt page says so)."""
    _update_attempt(attempt, setup_seconds=seconds)


def do_forget_workspace(*, attempt: Attempt) -> None:
    """A start from a snapshot that no longer fits: its container and volumes are gone, a fresh start follows."""
    _update_attempt(attempt, container_id="", workspace_volume="", base_commit="", from_snapshot_of=None)


def do_record_pull_request(*, attempt: Attempt, number: int, url: str, state: str) -> None:
    _update_attempt(attempt, pr_number=number, pr_url=url, pr_state=state)


def do_touch_attempt(*, attempt: Attempt) -> None:
    """The workspace was used now (the idle-workspace sweep counts from here)."""
    with transaction.atomic():
        Attempt.objects.filter(pk=attempt.pk).update(last_activity_at=timezone.now())


def do_heartbeat(*, attempt: Attempt) -> None:
    """The worker is alive and still running the attempt (the stale-attempt sweep reads this; no viewer does)."""
    with transaction.atomic():
        Attempt.objects.filter(pk=attempt.pk).update(heartbeat_at=timezone.now())


def do_claim_job(*, job: AttemptJob, worker: str = "") -> bool:
    """Queued → running by the worker process ``worker``; False when someone else took it or it was cancelled
    first."""
    with transaction.atomic():
        claimed = AttemptJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
            status=JobStatus.RUNNING, worker=worker
        )
        if claimed:
            job.status, job.worker = JobStatus.RUNNING, worker
            wake_attempt_viewers(job.attempt_id)
    return bool(claimed)


def do_finish_job(*, job: AttemptJob, status: str, error: str = "") -> None:
    with transaction.atomic():
        AttemptJob.objects.filter(pk=job.pk).update(
            status=status, error=error[:MAX_ERROR_CHARS], finished_at=timezone.now()
        )
        job.status = status
        wake_attempt_viewers(job.attempt_id, status=status)


def _wake_environment_pages(attempt_id: int) -> None:
    """A run started or ended: the owner's environment pages show the repository's runs with their setup state."""
    owner_id = Attempt.objects.filter(pk=attempt_id).values_list("task__owner_id", flat=True).first()
    if owner_id is not None:
        wake_environment_pages(owner_id)


def do_start_run(*, attempt: Attempt, job: AttemptJob | None, step: Step, argv: list[str]) -> Run:
    with transaction.atomic():
        run = Run.objects.create(attempt=attempt, job=job, kind=step.kind, title=step.title, argv=argv)
        wake_attempt_viewers(attempt.pk)
        _wake_environment_pages(attempt.pk)
    return run


def do_finish_run(*, run: Run, status: str, exit_code: int | None, error: str, session_id: str) -> None:
    with transaction.atomic():
        Run.objects.filter(pk=run.pk).update(
            status=status,
            exit_code=exit_code,
            error=error[:MAX_ERROR_CHARS],
            session_id=session_id,
            finished_at=timezone.now(),
        )
        run.status, run.exit_code, run.session_id = status, exit_code, session_id
        wake_attempt_viewers(run.attempt_id)
        _wake_environment_pages(run.attempt_id)


def do_record_run_commits(*, run: Run, commit_before: str, commit_after: str, own_commit: str = "") -> None:
    """``own_commit``: the commit Anyon's commit step made of the agent's changes ("" when there was nothing)."""
    with transaction.atomic():
        Run.objects.filter(pk=run.pk).update(
            commit_before=commit_before, commit_after=commit_after, own_commit=own_commit
        )
        wake_attempt_viewers(run.attempt_id)


def do_record_tool_output(*, run: Run, number: int, text: str, chars: int) -> None:
    """The whole (masked, capped) output of a tool call whose log line shows its start. No wake-up: the log line
    that names it follows."""
    with transaction.atomic():
        ToolOutput.objects.update_or_create(
            run=run, number=number, defaults={"attempt_id": run.attempt_id, "text": text, "chars": chars}
        )
