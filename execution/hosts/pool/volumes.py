"""Pool volumes nobody owns (docs/ARCHITECTURE.md, "Warm pool", Sweeps)."""

from __future__ import annotations

import time

from django.conf import settings

from execution.attempts.containers import home_volume
from execution.hosts.pool import fingerprint
from execution.models import Attempt, PoolContainer
from shared.docker import labels as label
from shared.docker.engine import DockerEngine


def orphan_pool_volumes(engine: DockerEngine) -> list[str]:
    """Pool volumes of this queue that neither a warm container nor an attempt owns (their container was lost
    before its row was written, or the row was deleted by hand)."""
    labels = [
        f"{label.MANAGED}=1",
        f"{label.INSTANCE}={settings.ANYON_INSTANCE}",
        f"{label.QUEUE}={settings.ANYON_WORKER_QUEUE}",
        f"{fingerprint.POOL_LABEL}=1",
    ]
    young = time.time() - fingerprint.CREATING_GRACE_SECONDS
    names = [name for name, created in engine.list_volumes(labels).items() if created < young]
    owned = set(PoolContainer.objects.values_list("workspace_volume", flat=True))
    owned |= set(
        Attempt.objects.filter(workspace_volume__startswith=fingerprint.POOL_VOLUME_PREFIX).values_list(
            "workspace_volume", flat=True
        )
    )
    in_use = set()
    for info in engine.list_managed(settings.ANYON_INSTANCE, also=(f"{fingerprint.POOL_LABEL}=1",)):
        for mount in info.get("Mounts") or []:
            in_use.add(mount.get("Name", ""))
    owned |= {home_volume(v) for v in owned}
    return [n for n in names if n not in owned and n not in in_use]
