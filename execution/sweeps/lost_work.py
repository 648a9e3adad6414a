"""The sweeps that end work nobody runs any more: stale attempts, lost hosts, lost worker processes."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from execution.attempts import secret_dir
from execution.attempts.actions import do_transition
from execution.hosts.actions import do_end_work_of_lost_host
from execution.logs.writer import LogWriter
from execution.models import Attempt, AttemptStatus, DockerHost, LogStream
from execution.sweeps.report import Progress, SweepReport, local_queue, noop
from shared.alerts import AlertKind, do_raise_alert
from shared.docker.engine import DockerEngine

logger = logging.getLogger(__name__)


def sweep_stale_attempts(*, engine: DockerEngine | None = None, progress: Progress = noop) -> SweepReport:
    """End attempts whose worker stopped heartbeating: failed with a reason, secret dir and container removed."""
    report = SweepReport("stale attempts")
    cutoff = timezone.now() - timedelta(seconds=settings.ANYON_STALE_ATTEMPT_SECONDS)
    stale = Attempt.objects.filter(
        local_queue(), status__in=[AttemptStatus.PROVISIONING, AttemptStatus.RUNNING], heartbeat_at__lt=cutoff
    ).select_related("task")
    for attempt in stale:
        report.examined += 1
        reason = (
            f"The worker {attempt.worker or '?'} stopped sending heartbeats (last at "
            f"{attempt.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC); the attempt was ended by the cleanup sweep."
        )
        if not do_transition(attempt=attempt, to=AttemptStatus.FAILED, error=reason):
            continue
        secret_dir.remove_secret_dir(secret_dir.key_of(attempt))
        if attempt.container_id:
            try:
                (engine or DockerEngine()).stop_and_remove(attempt.container_id, timeout=1)
            except Exception:
                logger.warning("could not remove container of stale attempt %s", attempt.pk, exc_info=True)
        writer = LogWriter(attempt.pk)
        writer.write(None, LogStream.SYSTEM, reason + "\n")
        writer.close()
        report.removed.append(str(attempt.pk))
        progress(f"ended stale attempt {attempt.pk}")
        do_raise_alert(
            kind=AlertKind.STALE_ATTEMPT,
            message=f"attempt {attempt.pk}: {reason}",
            attempt=attempt,
            user=attempt.task.owner,
        )
    return report


def sweep_lost_hosts(*, progress: Progress = noop, **_) -> SweepReport:
    """End the attempts and jobs of other hosts whose worker stopped heartbeating (killed, its machine gone): that
    worker cannot end them itself. Their container and secret dir stay on that host until its worker comes back
    and sweeps them (an attempt that ended is not working, so its leftovers go)."""
    report = SweepReport("lost hosts")
    cutoff = timezone.now() - timedelta(seconds=settings.ANYON_HOST_LOST_SECONDS)
    lost = DockerHost.objects.filter(heartbeat_at__lt=cutoff).exclude(name=settings.ANYON_WORKER_QUEUE)
    for host in lost:
        ended = do_end_work_of_lost_host(host=host, cutoff=cutoff)
        for what in ended:
            progress(f"ended {what} of lost host {host.name}")
        report.examined += len(ended)
        report.removed += ended
    return report


def sweep_lost_workers(*, progress: Progress = noop, **_) -> SweepReport:
    """End the work of worker processes that are gone (execution/hosts/workers.py; every worker also does this with each
    heartbeat)."""
    from execution.hosts.workers import do_forget_old_workers, end_work_of_lost_workers

    report = SweepReport("lost workers")
    for line in end_work_of_lost_workers():
        progress(line)
        report.examined += 1
        report.removed.append(line)
    do_forget_old_workers()
    return report
