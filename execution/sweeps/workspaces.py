"""The sweep of idle and oversized workspaces."""

from __future__ import annotations

import functools
import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from execution.attempts.containers import home_volume
from execution.attempts.runs import do_set_workspace_volume
from execution.logs.writer import LogWriter
from execution.models import Attempt, LogStream
from execution.sweeps.report import Progress, SweepReport, busy_attempt_ids, local_queue, noop
from shared.docker.engine import DockerEngine

logger = logging.getLogger(__name__)


def _remove_workspace(engine: DockerEngine, volume: str) -> None:
    engine.remove_volume(volume)
    engine.remove_volume(home_volume(volume))


def sweep_idle_workspaces(*, engine: DockerEngine | None = None, progress: Progress = noop) -> SweepReport:
    """Remove the workspace (and home) volumes of attempts idle for longer than ``ANYON_ATTEMPT_IDLE_TTL``, and
    with ``ANYON_WORKSPACE_MAX_BYTES`` set, those of finished attempts whose workspace and home together are larger.

    The attempt, its logs and its recorded diff stay; follow-ups and pull requests then need a new attempt. An
    attempt still working (or with a job queued or running) is never touched: a workspace growing during a run is
    bounded by the run's own limits, and is removed by the next sweep after the run if it is too large.
    """
    report = SweepReport("idle workspaces")
    engine = engine or DockerEngine()
    cutoff = timezone.now() - timedelta(seconds=settings.ANYON_ATTEMPT_IDLE_TTL)
    busy = busy_attempt_ids()
    with_workspace = Attempt.objects.exclude(workspace_volume="").filter(local_queue())
    idle = with_workspace.filter(
        Q(last_activity_at__lt=cutoff) | Q(last_activity_at__isnull=True, created_at__lt=cutoff)
    )
    reasons = {attempt.pk: ("idle", attempt) for attempt in idle}
    max_bytes = settings.ANYON_WORKSPACE_MAX_BYTES
    if max_bytes > 0:
        sizes = engine.volume_sizes()
        for attempt in with_workspace.exclude(pk__in=list(reasons)):
            used = sizes.get(attempt.workspace_volume, 0) + sizes.get(home_volume(attempt.workspace_volume), 0)
            if used > max_bytes:
                reasons[attempt.pk] = (f"{used:,} bytes, more than ANYON_WORKSPACE_MAX_BYTES ({max_bytes:,})", attempt)
    for attempt_id, (reason, attempt) in sorted(reasons.items()):
        report.examined += 1
        if attempt_id in busy:
            continue
        volume = attempt.workspace_volume
        if not report.try_remove("workspace", volume, functools.partial(_remove_workspace, engine, volume), progress):
            continue
        do_set_workspace_volume(attempt=attempt, volume="")
        if reason == "idle":
            progress(f"removed idle workspace {volume} of attempt {attempt_id}")
            continue
        writer = LogWriter(attempt_id)
        writer.write(None, LogStream.SYSTEM, f"The workspace was removed by the cleanup sweep: {reason}.\n")
        writer.close()
        logger.warning("removed workspace %s of attempt %s: %s", volume, attempt_id, reason)
        progress(f"removed large workspace {volume} of attempt {attempt_id} ({reason})")
    return report
