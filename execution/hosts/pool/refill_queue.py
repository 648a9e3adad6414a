"""Queueing one refill of this host's pool at a time: a flag file on the host (docs/ARCHITECTURE.md, "Warm pool")."""

from __future__ import annotations

import os
import re
from pathlib import Path

from django.conf import settings
from django.db import transaction

from shared.tempdir import ensure_temp_dir

#: The refill task's dotted path (also the registry's, execution/sweeps/schedules.py).
REFILL_TASK = "execution.hosts.pool.refill.refill_pool"


def host_file(suffix: str) -> Path:
    """A file of this queue's pool on its host (the workers of a queue share its host and temp dir)."""
    ensure_temp_dir(settings.ANYON_TEMP_DIR)
    queue = re.sub(r"[^A-Za-z0-9_.-]", "_", settings.ANYON_WORKER_QUEUE)
    return settings.ANYON_TEMP_DIR / f"pool-{queue}.{suffix}"


def queued_flag() -> Path:
    return host_file("refill-queued")


def request_refill() -> None:
    """Queue a refill on this worker's own queue once the claim is committed, unless one is queued already and has
    not started: ten claims at once queued ten refills, three database writes each (queued, taken, result) while
    the attempts wait for the same database. A flag file on the host says one is queued; the refill removes it when
    it starts (and the minute's scheduled refill does too, should a queued one be lost)."""
    from django_q.tasks import async_task

    def queue_one() -> None:
        flag = queued_flag()
        try:
            os.close(os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return
        try:
            async_task(
                REFILL_TASK,
                task_name="pool-refill",
                group="maintenance",
                cluster=settings.ANYON_WORKER_QUEUE,
                save=False,  # a success is not kept (a failure is)
            )
        except Exception:
            flag.unlink(missing_ok=True)
            raise

    transaction.on_commit(queue_one)
