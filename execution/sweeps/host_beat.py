"""The worker side of ``DockerHost`` and ``WorkerProcess``: a thread in every worker process records that process
every ``ANYON_HOST_HEARTBEAT_SECONDS`` and ends the work of worker processes that are gone (execution/hosts/workers.py);
the one that holds the host's lock also pings the engine and records the answer, sweeps what the engine left
behind when it comes back, and ends the attempts of hosts whose worker went silent (docs/ARCHITECTURE.md, "Docker
hosts", "Lost workers")."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from execution.hosts.actions import alert_engine_lost, do_host_heartbeat
from execution.hosts.workers import do_worker_heartbeat, end_work_of_lost_workers, worker_identity
from shared.docker.client import get_docker_client
from shared.outages import is_connection_error, outage, part_of
from shared.tempdir import ensure_temp_dir

logger = logging.getLogger(__name__)


def ping_engine() -> tuple[bool, str, str]:
    """(answers, error, version) of this host's engine (DOCKER_HOST)."""
    try:
        client = get_docker_client(timeout=5)
        try:
            return True, "", str(client.version().get("Version", ""))
        finally:
            client.close()
    except Exception as exc:
        where = settings.DOCKER_HOST or "the local socket"
        return False, f"{where}: {type(exc).__name__}: {exc}"[:500], ""


def beat_once() -> list[str]:
    """One heartbeat of this host; returns what it did beyond recording (for the log and the tests)."""
    from execution.sweeps.cleanup import run_scheduled_cleanup, sweep_lost_hosts

    name, done = settings.ANYON_WORKER_QUEUE, []
    ok, error, version = ping_engine()
    before = do_host_heartbeat(
        name=name, docker_host=settings.DOCKER_HOST, worker=worker_identity(), engine_ok=ok, engine_error=error,
        engine_version=version,
    )  # fmt: skip
    if not ok and before is not False:  # the row lock of the heartbeat: only one of it and a session alerts
        alert_engine_lost(name=name, detail=error)
        done.append(f"engine of {name} lost: {error}")
    if ok and before is False:  # back: what the engine kept of the attempts that ended meanwhile goes now
        done.append(f"engine of {name} back; cleanup: {run_scheduled_cleanup()}")
    report = sweep_lost_hosts()
    if report.removed:
        done.append(report.line())
    for line in done:
        logger.warning("host %s: %s", name, line)
    return done


def _hold_beat_lock():
    """One beating process per host: the worker processes of a cluster (and its recycled ones) share this lock."""
    path = ensure_temp_dir(settings.ANYON_TEMP_DIR) / f"host-beat-{settings.ANYON_WORKER_QUEUE}.lock"
    handle = open(path, "a")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def _loop() -> None:
    lock, started_at = None, timezone.now()
    while True:
        try:  # every worker process: its own heartbeat, then whether another one is gone with work in its hands
            do_worker_heartbeat(started_at=started_at)
            end_work_of_lost_workers()
        except Exception as exc:
            if is_connection_error(exc):  # the database is away: one line for the outage, not one a beat
                outage(part_of(exc)).failed("worker heartbeat", exc)
            else:
                logger.exception("worker heartbeat of %s failed", worker_identity())
        try:
            lock = lock or _hold_beat_lock()
            if lock is not None:
                beat_once()
        except Exception as exc:
            if is_connection_error(exc):  # the database is away: one line for the outage, not one a beat
                outage(part_of(exc)).failed("host heartbeat", exc)
            else:
                logger.exception("host heartbeat of %s failed", settings.ANYON_WORKER_QUEUE)
        else:
            if lock is not None:
                outage("database").answered()
        finally:
            close_old_connections()
            connection.close()
        time.sleep(settings.ANYON_HOST_HEARTBEAT_SECONDS)


_started: set[int] = set()


def start_host_beat() -> None:
    """Start this process's heartbeat thread (once per process; worker processes are forked)."""
    if os.getpid() in _started or settings.ANYON_HOST_HEARTBEAT_SECONDS <= 0:
        return
    _started.add(os.getpid())
    threading.Thread(target=_loop, name="anyon-host-beat", daemon=True).start()
