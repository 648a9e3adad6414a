"""The refill task of this host's pool and its lock (docs/ARCHITECTURE.md, "Warm pool", Refill)."""

from __future__ import annotations

import contextlib
import fcntl
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from execution.attempts import selectors
from execution.hosts.pool.actions import create_warm_container, retire
from execution.hosts.pool.fingerprint import POOL_LABEL, fingerprint
from execution.hosts.pool.refill_queue import host_file, queued_flag
from execution.models import PoolContainer
from shared.docker.engine import DockerEngine


@contextlib.contextmanager
def _refill_lock():
    """One refill per Docker host at a time (the workers of a queue share its host). Yields False when another
    refill holds it."""
    with open(host_file("lock"), "a") as handle:
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
    queued_flag().unlink(missing_ok=True)  # a claim from now on queues the next refill
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
