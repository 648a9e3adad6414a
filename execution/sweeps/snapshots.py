"""The snapshot sweep (docs/ARCHITECTURE.md, "Snapshots"), part of the cleanup schedule: snapshots unused for
``ANYON_SNAPSHOT_MAX_AGE_DAYS`` or made from another runtime image go; then, least recently used first (fewest hits
first among equals), those beyond ``ANYON_SNAPSHOT_MAX_BYTES_PER_USER`` for their owner and beyond
``ANYON_SNAPSHOT_MAX_BYTES`` for the host. Images with the snapshot label and no row go too (after a
grace period: a snapshot being taken has no row yet)."""

from __future__ import annotations

import functools
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from execution.models import Snapshot
from execution.snapshots.actions import CREATING_GRACE_SECONDS, do_drop_snapshot
from execution.sweeps.cleanup import SweepReport
from shared.docker import labels as label
from shared.docker.engine import DockerEngine, EngineError

logger = logging.getLogger(__name__)


def _noop(message: str) -> None:
    pass


def _over_cap(snapshots: list[Snapshot], cap: int) -> list[Snapshot]:
    """The least recently used of ``snapshots`` whose removal brings their total to ``cap`` or below."""
    if cap <= 0:
        return []
    total = sum(s.size_bytes for s in snapshots)
    out = []
    for snapshot in sorted(snapshots, key=lambda s: (s.last_used_at, s.hits, s.pk)):
        if total <= cap:
            break
        out.append(snapshot)
        total -= snapshot.size_bytes
    return out


def snapshots_to_drop(snapshots: list[Snapshot], *, now, runtime_image_id: str) -> dict[int, tuple[Snapshot, str]]:
    """Which snapshots go, and why (pure: the sweep and its tests)."""
    cutoff = now - timedelta(days=settings.ANYON_SNAPSHOT_MAX_AGE_DAYS)
    drop: dict[int, tuple[Snapshot, str]] = {}
    for snapshot in snapshots:
        if snapshot.last_used_at < cutoff:
            drop[snapshot.pk] = (snapshot, f"unused for {settings.ANYON_SNAPSHOT_MAX_AGE_DAYS} days")
        elif runtime_image_id and snapshot.runtime_image_id != runtime_image_id:
            drop[snapshot.pk] = (snapshot, "made from another runtime image")
    by_owner: dict[int, list[Snapshot]] = defaultdict(list)
    for snapshot in snapshots:
        if snapshot.pk not in drop:
            by_owner[snapshot.owner_id].append(snapshot)
    for owned in by_owner.values():
        for snapshot in _over_cap(owned, settings.ANYON_SNAPSHOT_MAX_BYTES_PER_USER):
            drop[snapshot.pk] = (snapshot, "its owner's snapshots exceed ANYON_SNAPSHOT_MAX_BYTES_PER_USER")
    left = [s for s in snapshots if s.pk not in drop]
    for snapshot in _over_cap(left, settings.ANYON_SNAPSHOT_MAX_BYTES):
        drop[snapshot.pk] = (snapshot, "the host's snapshots exceed ANYON_SNAPSHOT_MAX_BYTES")
    return drop


def sweep_snapshots(*, engine: DockerEngine | None = None, progress: Callable[[str], None] = _noop) -> SweepReport:
    report = SweepReport("snapshots")
    engine = engine or DockerEngine()
    try:
        runtime_image_id = engine.image_id(settings.ANYON_CLOUD_IMAGE)
    except EngineError:
        runtime_image_id = ""  # no image to compare with: none is judged by it
    snapshots = list(Snapshot.objects.filter(queue=settings.ANYON_WORKER_QUEUE))
    report.examined += len(snapshots)
    for snapshot, reason in snapshots_to_drop(
        snapshots, now=timezone.now(), runtime_image_id=runtime_image_id
    ).values():
        name = f"snapshot {snapshot.pk} ({snapshot.repo_url}, {snapshot.size_bytes:,} bytes)"
        if report.try_remove(
            "snapshot", name, functools.partial(do_drop_snapshot, snapshot=snapshot, engine=engine), progress
        ):
            logger.info("dropped %s: %s", name, reason)
            progress(f"dropped {name}: {reason}")
    _sweep_orphans(engine, report, progress)
    return report


def _sweep_orphans(engine: DockerEngine, report: SweepReport, progress: Callable[[str], None]) -> None:
    """Images labelled as a snapshot of this installation and host that no row names."""
    ours = [f"{label.MANAGED}=1", f"{label.INSTANCE}={settings.ANYON_INSTANCE}", label.SNAPSHOT]
    ours.append(f"{label.QUEUE}={settings.ANYON_WORKER_QUEUE}")
    known = {name for row in Snapshot.objects.values_list("image_id", "image") for name in row if name}
    now = time.time()
    for image in engine.list_images(ours):
        report.examined += 1
        tags = image.get("RepoTags") or []
        young = now - float(image.get("Created") or 0) < CREATING_GRACE_SECONDS
        if image["Id"] in known or known.intersection(tags) or young:
            continue
        name = tags[0] if tags else image["Id"][:19]
        if report.try_remove("snapshot image", name, functools.partial(engine.remove_image, image["Id"]), progress):
            progress(f"removed snapshot image {name} (no snapshot names it)")
