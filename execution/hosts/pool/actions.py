"""The pool's writes: recording, taking and claiming warm containers, and the Docker work each goes with
(docs/ARCHITECTURE.md, "Warm pool")."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from execution.attempts import secret_dir
from execution.attempts.containers import container_spec, home_volume
from execution.attempts.runs import do_set_warm_container
from execution.hosts.pool.fingerprint import POOL_VOLUME_PREFIX, fingerprint, pool_labels, sealed_base_environment
from execution.hosts.pool.refill_queue import request_refill
from execution.models import Attempt, PoolContainer
from shared.docker.engine import DockerEngine

logger = logging.getLogger(__name__)


def do_record_warm_container(
    *, container_id: str, name: str, workspace_volume: str, dir_name: str, fingerprint: str, created_at: datetime
) -> PoolContainer:
    """The row of a warm container that runs: from now on it may be claimed."""
    with transaction.atomic():
        return PoolContainer.objects.create(
            queue=settings.ANYON_WORKER_QUEUE,
            container_id=container_id,
            name=name,
            workspace_volume=workspace_volume,
            secret_dir=dir_name,
            fingerprint=fingerprint,
            created_at=created_at,
        )


def do_take_warm_container(*, row: PoolContainer) -> bool:
    """Delete the row unless an attempt claimed it first (a conditional delete): True when this call took it."""
    with transaction.atomic():
        return bool(PoolContainer.objects.filter(pk=row.pk).delete()[0])


def create_warm_container(engine: DockerEngine, fp: str) -> PoolContainer:
    """One warm container with its own volumes and empty secret dir; its row is written once it runs."""
    engine.ensure_image(settings.ANYON_CLOUD_IMAGE)
    token = secrets.token_hex(8)
    dir_name = f"pool-{token}"
    volume = f"{POOL_VOLUME_PREFIX}{token}"
    labels = pool_labels()
    path = secret_dir.write_secret_dir(dir_name, {})
    name = f"anyon-{settings.ANYON_INSTANCE}-pool-{token}"
    try:
        engine.ensure_volume(volume, dict(labels))
        engine.ensure_volume(home_volume(volume), dict(labels))
        spec = container_spec(
            name=name, labels=labels, volume=volume, secret_dir=path, sealed_environment=sealed_base_environment()
        )
        container_id = engine.create_container(spec)
    except Exception:
        discard(engine, container_id=name, volume=volume, dir_name=dir_name)
        raise
    return do_record_warm_container(
        container_id=container_id,
        name=name,
        workspace_volume=volume,
        dir_name=dir_name,
        fingerprint=fp,
        created_at=timezone.now(),
    )


def discard(engine: DockerEngine, *, container_id: str, volume: str, dir_name: str) -> None:
    """An unclaimed warm container and everything made for it."""
    engine.stop_and_remove(container_id, timeout=1)
    if volume:
        engine.remove_volume(volume)
        engine.remove_volume(home_volume(volume))
    if dir_name:
        secret_dir.remove_secret_dir(dir_name)


def retire(engine: DockerEngine, rows: list[PoolContainer], reason: str) -> int:
    """Take each row (unless claimed meanwhile) and discard its container; how many were retired."""
    removed = 0
    for row in rows:
        if not do_take_warm_container(row=row):
            continue
        discard(engine, container_id=row.container_id, volume=row.workspace_volume, dir_name=row.secret_dir)
        logger.info("warm container %s retired: %s", row.name, reason)
        removed += 1
    return removed


def do_claim_warm_container(*, attempt: Attempt, engine: DockerEngine) -> PoolContainer | None:
    """Give the attempt a warm container of this queue, made with today's image and settings, if one is free: the
    row goes and the attempt records the container, its volume and its secret dir, in one transaction. None when
    the pool is off or empty (the caller provisions as without a pool). A claimed container that no longer runs is
    discarded and the next is tried."""
    if settings.ANYON_POOL_SIZE <= 0 or attempt.workspace_volume:
        return None
    fp = fingerprint(engine)
    cutoff = timezone.now() - timedelta(seconds=settings.ANYON_POOL_MAX_AGE)
    for _ in range(settings.ANYON_POOL_SIZE + 3):
        with transaction.atomic():
            row = (
                PoolContainer.objects.select_for_update(skip_locked=True)
                .filter(queue=settings.ANYON_WORKER_QUEUE, fingerprint=fp, created_at__gte=cutoff)
                .first()
            )
            if row is None:  # empty: refilled once no attempt waits for a worker
                request_refill()
                return None
            if not do_take_warm_container(row=row):
                continue  # another worker took it between the read and the delete (SQLite has no row locks)
            do_set_warm_container(
                attempt=attempt,
                container_id=row.container_id,
                workspace_volume=row.workspace_volume,
                dir_name=row.secret_dir,
            )
        request_refill()
        if engine.is_running(row.container_id):
            return row
        logger.warning("warm container %s was not running: discarded", row.name)
        discard(engine, container_id=row.container_id, volume=row.workspace_volume, dir_name=row.secret_dir)
        do_set_warm_container(attempt=attempt, container_id="", workspace_volume="", dir_name="")
    return None
