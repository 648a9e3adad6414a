# Long because creating, claiming, refilling and sweeping warm containers is one lifecycle (to be split).
"""The warm pool (docs/ARCHITECTURE.md, "Warm pool"): per worker queue (Docker host), ``ANYON_POOL_SIZE`` containers
created and started ahead of time, so an attempt's first step waits for one ``docker exec`` instead of a container
start.

A warm container is made exactly like an attempt's (``execution.attempts.containers.container_spec``: image, user,
limits, hardening, network or none), with its own fresh workspace and home volumes and its own empty secret dir
``cloud-secrets/pool-<hex>`` already bind-mounted, because Docker cannot add a mount to a running container. It holds
nothing of any user. An attempt claims one in one transaction (the row is deleted, the attempt records the
container, volume and directory names), then the credentials are bound: mounted mode writes the secret files into
that directory, sealed mode opens the attempt's egress sockets in it. The container serves that attempt only and is
removed at its end like any attempt's container; nothing is ever handed back to the pool.

The pool refills in the background on the worker: a claim queues :func:`refill_pool` on the worker's own queue (one
at a time: a flag file on the host until it starts), a django-q2 schedule runs it every minute (and it runs when the
cluster starts). It yields to attempts starting (waiting for a worker, or provisioning). It also replaces
containers made from another image or other settings (the fingerprint) or older than ``ANYON_POOL_MAX_AGE``, drops
rows whose container is gone and removes pool volumes nobody owns. A file lock keeps two refills of one host from
overfilling it; the refill that holds it looks again after letting go, so a claim made meanwhile is refilled too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from execution.attempts import secret_dir, selectors
from execution.attempts.containers import container_spec, home_volume, seccomp_profile
from execution.attempts.runs import do_set_warm_container
from execution.hosts import egress
from execution.models import Attempt, PoolContainer
from shared.docker import labels as label
from shared.docker.engine import DockerEngine
from shared.tempdir import ensure_temp_dir

logger = logging.getLogger(__name__)

#: Workspace volumes of warm containers (an attempt that claims one keeps the name).
POOL_VOLUME_PREFIX = "anyon-workspace-pool-"

POOL_LABEL = label.POOL
#: A warm container younger than this may not have its row yet: the sweeps leave it alone.
CREATING_GRACE_SECONDS = 120


def pool_labels() -> dict[str, str]:
    return {
        label.MANAGED: "1",
        label.INSTANCE: settings.ANYON_INSTANCE,
        label.QUEUE: settings.ANYON_WORKER_QUEUE,
        POOL_LABEL: "1",
        label.CREATED: str(int(time.time())),
    }


def fingerprint(engine: DockerEngine) -> str:
    """What a warm container was made from: the image's id (a tag moved to a new build changes it) and every
    setting that shapes the container. A container with another fingerprint is never claimed, and is replaced."""
    parts = [
        engine.image_id(settings.ANYON_CLOUD_IMAGE),
        settings.ANYON_CREDENTIAL_MODE,
        settings.ANYON_CLOUD_NETWORK,
        settings.ANYON_CONTAINER_MEMORY,
        settings.ANYON_CONTAINER_CPUS,
        settings.ANYON_CONTAINER_PIDS,
        seccomp_profile() or "engine default",
        settings.ANYON_CONTAINER_UID,
        settings.ANYON_CONTAINER_GID,
        sorted(settings.ANYON_CONTAINER_ENV.items()),
        settings.ANYON_ANTHROPIC_API_URL,
        settings.ANYON_GITHUB_URL,
        str(secret_dir.secrets_root()),
    ]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:40]


def sealed_base_environment() -> dict[str, str] | None:
    """A sealed warm container knows the bridge's ports but not which Claude credential kind its attempt uses:
    those variables travel with each exec (``AttemptSession.exec_environment``)."""
    return egress.container_environment(claude_kind=None) if egress.sealed() else None


# --- making and discarding ---------------------------------------------------------------------------------------
def create_warm_container(engine: DockerEngine, fp: str) -> PoolContainer:
    """One warm container with its own volumes and empty secret dir; its row is written once it runs."""
    engine.ensure_image(settings.ANYON_CLOUD_IMAGE)
    token = secrets.token_hex(8)
    dir_name = f"pool-{token}"
    volume = f"{POOL_VOLUME_PREFIX}{token}"
    labels = pool_labels()
    volume_labels = dict(labels)
    path = secret_dir.write_secret_dir(dir_name, {})
    name = f"anyon-{settings.ANYON_INSTANCE}-pool-{token}"
    try:
        engine.ensure_volume(volume, volume_labels)
        engine.ensure_volume(home_volume(volume), volume_labels)
        spec = container_spec(
            name=name, labels=labels, volume=volume, secret_dir=path, sealed_environment=sealed_base_environment()
        )
        container_id = engine.create_container(spec)
    except Exception:
        _discard(engine, container_id=name, volume=volume, dir_name=dir_name)
        raise
    return PoolContainer.objects.create(
        queue=settings.ANYON_WORKER_QUEUE,
        container_id=container_id,
        name=name,
        workspace_volume=volume,
        secret_dir=dir_name,
        fingerprint=fp,
        created_at=timezone.now(),
    )


def _discard(engine: DockerEngine, *, container_id: str, volume: str, dir_name: str) -> None:
    """An unclaimed warm container and everything made for it."""
    engine.stop_and_remove(container_id, timeout=1)
    if volume:
        engine.remove_volume(volume)
        engine.remove_volume(home_volume(volume))
    if dir_name:
        secret_dir.remove_secret_dir(dir_name)


def _take_rows(rows: list[PoolContainer]) -> list[PoolContainer]:
    """Delete ``rows`` unless an attempt claimed one first; return those this call took."""
    taken = []
    for row in rows:
        with transaction.atomic():
            if PoolContainer.objects.filter(pk=row.pk).delete()[0]:
                taken.append(row)
    return taken


def retire(engine: DockerEngine, rows: list[PoolContainer], reason: str) -> int:
    removed = 0
    for row in _take_rows(rows):
        _discard(engine, container_id=row.container_id, volume=row.workspace_volume, dir_name=row.secret_dir)
        logger.info("warm container %s retired: %s", row.name, reason)
        removed += 1
    return removed


# --- claiming ------------------------------------------------------------------------------------------------------
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
            if not PoolContainer.objects.filter(pk=row.pk).delete()[0]:
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
        _discard(engine, container_id=row.container_id, volume=row.workspace_volume, dir_name=row.secret_dir)
        do_set_warm_container(attempt=attempt, container_id="", workspace_volume="", dir_name="")
    return None


def _host_file(suffix: str) -> Path:
    """A file of this queue's pool on its host (the workers of a queue share its host and temp dir)."""
    ensure_temp_dir(settings.ANYON_TEMP_DIR)
    queue = re.sub(r"[^A-Za-z0-9_.-]", "_", settings.ANYON_WORKER_QUEUE)
    return settings.ANYON_TEMP_DIR / f"pool-{queue}.{suffix}"


def request_refill() -> None:
    """Queue a refill on this worker's own queue once the claim is committed, unless one is queued already and has
    not started: ten claims at once queued ten refills, three database writes each (queued, taken, result) while
    the attempts wait for the same database. A flag file on the host says one is queued; the refill removes it when
    it starts (and the minute's scheduled refill does too, should a queued one be lost)."""
    from django_q.tasks import async_task

    def queue_one() -> None:
        flag = _host_file("refill-queued")
        try:
            os.close(os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return
        try:
            async_task(
                "execution.hosts.pool.refill_pool",
                task_name="pool-refill",
                group="maintenance",
                cluster=settings.ANYON_WORKER_QUEUE,
                save=False,  # a success is not kept (a failure is)
            )
        except Exception:
            flag.unlink(missing_ok=True)
            raise

    transaction.on_commit(queue_one)


# --- refilling -----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _refill_lock():
    """One refill per Docker host at a time (the workers of a queue share its host). Yields False when another
    refill holds it."""
    with open(_host_file("lock"), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _mine():
    return PoolContainer.objects.filter(queue=settings.ANYON_WORKER_QUEUE)


def _missing(fp: str) -> int:
    return max(0, settings.ANYON_POOL_SIZE - _mine().filter(fingerprint=fp).count())


def refill_pool(engine: DockerEngine | None = None) -> str:
    """The background task: replace what is stale, then fill up to ``ANYON_POOL_SIZE``. Returns what it did.

    It yields to attempts: while one waits for a worker or provisions, it makes no more containers and lets its
    worker go. A warm container only saves an attempt its container's start, and making one costs the engine the
    same, so filling the pool while attempts queue (with ten started at once, a refill queued by the first claim
    came before the later attempts) only delays them. The claim of the attempt that waited queues the next refill."""
    _host_file("refill-queued").unlink(missing_ok=True)  # a claim from now on queues the next refill
    engine = engine or DockerEngine()
    made = retired = 0
    yielded = ""
    while not yielded:
        with _refill_lock() as held:
            if not held:
                return "another refill is under way"
            fp = fingerprint(engine)
            retired += _retire_stale(engine, fp)
            while _missing(fp) and not yielded:
                if selectors.attempts_starting(queue=settings.ANYON_WORKER_QUEUE):
                    yielded = "; yielded to attempts starting"
                    break
                create_warm_container(engine, fp)
                made += 1
        if not _missing(fingerprint(engine)):  # a claim while the lock was held queued a refill that gave up
            break
    return f"warm pool of {settings.ANYON_WORKER_QUEUE}: made {made}, retired {retired}{yielded}"


def retire_stale(engine: DockerEngine) -> int:
    """Rows are taken by a conditional delete, so this is safe next to a refill or a claim (the cleanup sweep).
    Without warm containers it asks the engine nothing (a fresh install without the image is not an error)."""
    return _retire_stale(engine, fingerprint(engine)) if _mine().exists() else 0


def _retire_stale(engine: DockerEngine, fp: str) -> int:
    cutoff = timezone.now() - timedelta(seconds=settings.ANYON_POOL_MAX_AGE)
    running = {
        info["Id"]
        for info in engine.list_managed(settings.ANYON_INSTANCE, also=(f"{POOL_LABEL}=1",))
        if info.get("State") == "running"
    }
    rows = list(_mine())
    gone = [row for row in rows if row.container_id not in running]
    old = [row for row in rows if row not in gone and (row.fingerprint != fp or row.created_at < cutoff)]
    current = [row for row in rows if row not in gone and row not in old]
    surplus = current[max(0, settings.ANYON_POOL_SIZE) :]
    return (
        retire(engine, gone, "its container is not running")
        + retire(engine, old, "made from another image or settings, or too old")
        + retire(engine, surplus, "more than ANYON_POOL_SIZE")
    )


def orphan_pool_volumes(engine: DockerEngine) -> list[str]:
    """Pool volumes of this queue that neither a warm container nor an attempt owns (their container was lost
    before its row was written, or the row was deleted by hand)."""
    labels = [
        f"{label.MANAGED}=1",
        f"{label.INSTANCE}={settings.ANYON_INSTANCE}",
        f"{label.QUEUE}={settings.ANYON_WORKER_QUEUE}",
        f"{POOL_LABEL}=1",
    ]
    young = time.time() - CREATING_GRACE_SECONDS
    names = [name for name, created in engine.list_volumes(labels).items() if created < young]
    owned = set(PoolContainer.objects.values_list("workspace_volume", flat=True))
    owned |= set(
        Attempt.objects.filter(workspace_volume__startswith=POOL_VOLUME_PREFIX).values_list(
            "workspace_volume", flat=True
        )
    )
    in_use = set()
    for info in engine.list_managed(settings.ANYON_INSTANCE, also=(f"{POOL_LABEL}=1",)):
        for mount in info.get("Mounts") or []:
            in_use.add(mount.get("Name", ""))
    owned |= {home_volume(v) for v in owned}
    return [n for n in names if n not in owned and n not in in_use]
