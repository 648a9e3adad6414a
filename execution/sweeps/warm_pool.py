"""The sweep of the warm pool: stale warm containers and pool volumes nobody owns."""

from __future__ import annotations

import functools

from django.conf import settings

from execution.hosts.pool import refill
from execution.hosts.pool.volumes import orphan_pool_volumes
from execution.models import PoolContainer
from execution.sweeps.report import Progress, SweepReport, noop
from shared.docker.engine import DockerEngine


def sweep_pool(*, engine: DockerEngine | None = None, progress: Progress = noop) -> SweepReport:
    """Warm containers of this queue whose container is gone, made from another image or settings, too old or
    more than ``ANYON_POOL_SIZE`` are retired (the refill makes new ones); pool volumes nobody owns are removed."""
    report = SweepReport("warm pool")
    engine = engine or DockerEngine()
    report.examined = PoolContainer.objects.filter(queue=settings.ANYON_WORKER_QUEUE).count()
    retired = refill.retire_stale(engine)
    report.removed += [f"warm container ({n + 1})" for n in range(retired)]
    for volume in orphan_pool_volumes(engine):
        report.examined += 1
        if not report.try_remove("pool volume", volume, functools.partial(engine.remove_volume, volume), progress):
            continue
        progress(f"removed pool volume {volume} (no warm container or attempt owns it)")
    if retired:
        progress(f"retired {retired} warm container(s)")
    return report
