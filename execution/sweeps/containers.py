"""The sweep of containers whose attempt is finished, unknown or expired, and of warm containers nobody owns."""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

from django.conf import settings

from execution.attempts import secret_dir
from execution.hosts.pool import fingerprint
from execution.models import Attempt, PoolContainer
from execution.sweeps.report import Progress, SweepReport, alert_orphans_removed, busy_attempt_ids, noop
from shared.docker import labels as label
from shared.docker.engine import DockerEngine

logger = logging.getLogger(__name__)


def _younger_than(labels: dict[str, str], seconds: float, now: float) -> bool:
    created = labels.get(label.CREATED, "")
    return created.isdigit() and now - int(created) < seconds


def _remove_container(engine: DockerEngine, info: dict, *, with_pool_leftovers: bool) -> None:
    engine.stop_and_remove(info["Id"], timeout=1)
    if with_pool_leftovers:  # a warm container nobody owns: nobody's workspace, its volumes and secret dir go too
        for mount in info.get("Mounts") or []:
            if mount.get("Type") == "volume" and mount.get("Name", "").startswith(fingerprint.POOL_VOLUME_PREFIX):
                engine.remove_volume(mount["Name"])
            dir_name = Path(mount.get("Source", "")).name
            if mount.get("Type") == "bind" and secret_dir.POOL_DIR.fullmatch(dir_name):
                secret_dir.remove_secret_dir(dir_name)


def sweep_containers(
    *, engine: DockerEngine | None = None, progress: Progress = noop, dry_run: bool = False
) -> SweepReport:
    """Remove this installation's containers whose attempt is finished, unknown, or past ``anyon.expires``, and
    warm containers of the pool that neither the pool nor an attempt owns (with their volumes and secret dir)."""
    report = SweepReport("containers", dry_run=dry_run)
    engine = engine or DockerEngine()
    warm = set(PoolContainer.objects.values_list("container_id", flat=True))  # read first, as for secret dirs
    busy = busy_attempt_ids()
    known = set(Attempt.objects.values_list("pk", flat=True))
    now = time.time()
    for info in engine.list_managed(settings.ANYON_INSTANCE):
        labels = info.get("Labels") or {}
        if labels.get(label.QUEUE, settings.ANYON_WORKER_QUEUE) != settings.ANYON_WORKER_QUEUE:
            continue  # another host's container (on an engine shared by several queues): not ours to judge
        report.examined += 1
        raw_id = labels.get(label.ATTEMPT, "")
        attempt_id = int(raw_id) if raw_id.isdigit() else None
        try:
            expired = float(labels.get(label.EXPIRES, "inf")) < now
        except ValueError:
            expired = True
        unowned_warm = False
        if labels.get(fingerprint.POOL_LABEL) == "1":
            # A warm container carries no attempt label (it had none when it was made): the pool's own while it
            # has its row (the refill replaces it when stale), the claiming attempt's once claimed, else an orphan.
            if info["Id"] in warm or _younger_than(labels, fingerprint.CREATING_GRACE_SECONDS, now):
                continue
            attempt_id = Attempt.objects.filter(container_id=info["Id"]).values_list("pk", flat=True).first()
            unowned_warm = attempt_id is None
        if attempt_id in busy and not expired:
            continue
        reason = "expired" if expired else ("unknown attempt" if attempt_id not in known else "attempt finished")
        reason = "a warm container nobody owns" if unowned_warm else reason
        name = (info.get("Names") or ["?"])[0].lstrip("/")
        if dry_run:
            report.removed.append(name)
            progress(f"would remove container {name} ({reason})")
            continue
        remove = functools.partial(_remove_container, engine, info, with_pool_leftovers=unowned_warm)
        if not report.try_remove("container", name, remove, progress):
            continue
        logger.warning("removed orphan container %s (%s)", name, reason)
        progress(f"removed container {name} ({reason})")
    alert_orphans_removed(report, "container", dedupe_key="orphan_removed:containers")
    return report
