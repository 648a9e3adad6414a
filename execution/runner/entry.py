"""The queue's entry points. Each is idempotent: work that is no longer queued is left alone."""

from __future__ import annotations

import logging

from django.utils import timezone

from execution.attempts.actions import do_transition
from execution.attempts.runs import do_claim_job
from execution.hosts.workers import worker_identity
from execution.models import Attempt, AttemptJob, AttemptStatus

logger = logging.getLogger(__name__)

__all__ = ["run_attempt", "run_job", "worker_identity"]


def run_attempt(attempt_id: int) -> str:
    """The django-q2 task of a new attempt: its plan, then commit and diff."""
    from execution.runner.session import AttemptSession

    attempt = Attempt.objects.select_related("task", "task__owner").get(pk=attempt_id)
    if not do_transition(
        attempt=attempt,
        to=AttemptStatus.PROVISIONING,
        only_from=(AttemptStatus.QUEUED,),
        worker=worker_identity(),
        heartbeat_at=timezone.now(),
    ):
        logger.info("attempt %s is %s, not queued: not running it", attempt_id, attempt.status)
        return attempt.status
    with AttemptSession(attempt, worker=worker_identity()) as session:
        return session.run_attempt()


def run_job(job_id: int) -> str:
    """The django-q2 task of a follow-up or pull request on a finished attempt's workspace."""
    from execution.runner.session import AttemptSession

    job = AttemptJob.objects.select_related("attempt", "attempt__task", "attempt__task__owner", "requested_by").get(
        pk=job_id
    )
    if not do_claim_job(job=job, worker=worker_identity()):
        return job.status
    with AttemptSession(job.attempt, job=job, worker=worker_identity()) as session:
        return session.run_job()
