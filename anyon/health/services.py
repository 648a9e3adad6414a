"""What the app runs on besides Docker: Python, the database and its migrations, the worker, wake-ups, the egress
proxy."""

from __future__ import annotations

import sys
from pathlib import Path

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from anyon.health.checks import CACHE_TABLE_FIX, FAIL, OK, WARN, Check, cache_error
from shared.credential_mode import CredentialMode
from shared.outages import describe

#: Python versions the app supports: ``requires-python`` of pyproject.toml (a test keeps the two in step).
PYTHON_SUPPORTED = ((3, 11), (3, 13))


def check_python() -> Check:
    low, high = PYTHON_SUPPORTED
    here = ".".join(str(part) for part in sys.version_info[:3])
    supported = f"{low[0]}.{low[1]} to {high[0]}.{high[1]}"
    if not sys.platform.startswith("linux"):
        return Check("python", FAIL, f"Python {here} on {sys.platform}: Anyon Cloud runs on Linux", "run it on Linux")
    if not low <= sys.version_info[:2] <= high:
        return Check(
            "python",
            FAIL,
            f"Python {here}; Anyon Cloud supports {supported}",
            f"install Python {supported} and recreate the virtualenv (rm -rf .venv && make run)",
        )
    return Check("python", OK, f"Python {here} on Linux (supported: {supported})")


def check_database() -> Check:
    connection = connections[DEFAULT_DB_ALIAS]
    where = connection.vendor
    if connection.settings_dict.get("HOST"):
        where += f" at {connection.settings_dict['HOST']}:{connection.settings_dict.get('PORT') or 5432}"
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return Check("database", OK, f"{where} reachable")
    except Exception as exc:
        fix = "start the database server and check DATABASE_URL; docs/RUNBOOK.md, 'PostgreSQL outage'"
        return Check("database", FAIL, f"{where} not reachable: {describe(exc)}", fix)


def check_migrations() -> Check:
    try:
        connection = connections[DEFAULT_DB_ALIAS]
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        return Check("migrations", FAIL, f"cannot read migration state: {exc}", "python manage.py migrate")
    if plan:
        return Check("migrations", FAIL, f"{len(plan)} migration(s) not applied", "python manage.py migrate")
    return Check("migrations", OK, "database schema is up to date")


def check_worker() -> Check:
    from django_q.status import Stat

    try:
        stats = Stat.get_all()
    except Exception as exc:
        reason = cache_error(exc)
        fix = CACHE_TABLE_FIX if "anyon_cache" in reason else "check the cache / REDIS_URL"
        return Check("worker", FAIL, f"cannot read worker status: {reason}", fix)
    running = [s for s in stats if s.status not in ("Stopped", "Stopping")]
    if not running:
        return Check(
            "worker",
            FAIL,
            "no worker heartbeat: queued runs will not start",
            "start the worker: python manage.py qcluster (make run starts it)",
        )
    workers = sum(len(s.workers) for s in running)
    return Check("worker", OK, f"{len(running)} cluster(s), {workers} worker process(es), heartbeat live")


def check_wakeups() -> Check:
    """Whether the web server and the worker can wake each other (else new work waits for a poll)."""
    from shared.wakeups import sockets as wakeups

    name = "wake-ups"
    if settings.REDIS_URL:
        return Check(name, OK, "carried by Redis", required=False)
    slow = f"a queued task or a new log batch waits for the polls ({settings.ANYON_LOG_POLL_SECONDS} s)"
    if not settings.ANYON_WAKEUP_DIR:
        return Check(name, WARN, f"turned off: {slow}", "unset ANYON_WAKEUP_DIR (or set it to a local folder)", False)
    from shared.wakeups.channel_layer import TOPIC
    from shared.wakeups.queue_broker import queue_topic

    folder, widest_pid = Path(settings.ANYON_WAKEUP_DIR), 4194304  # Linux's pid_max
    topics = (TOPIC, queue_topic(settings.ANYON_WORKER_QUEUE))
    longest = max(len(str(wakeups.socket_path(folder, t, widest_pid, "0" * 8))) for t in topics)
    if longest > wakeups.MAX_SOCKET_PATH:
        return Check(
            name, WARN, f"ANYON_WAKEUP_DIR is too long for socket paths: {slow}", "choose a shorter path", False
        )
    folder = wakeups.wakeup_dir()
    if folder is None:
        return Check(name, WARN, f"cannot use {settings.ANYON_WAKEUP_DIR}: {slow}", "make it writable (0700)", False)
    listening = len(list(folder.glob("*.sock")))
    return Check(name, OK, f"{folder}: {listening} process(es) listening", required=False)


def check_egress_proxy() -> Check:
    """Sealed runs need this host's egress proxy; in mounted mode it is not used."""
    name = "egress proxy"
    if settings.ANYON_CREDENTIAL_MODE != CredentialMode.SEALED:
        return Check(name, WARN, "mounted mode: runs hold credentials and have open egress", required=False)
    from shared.egress import EgressClient, EgressError

    try:
        status = EgressClient(settings.ANYON_EGRESS_CONTROL, timeout=2).status()
    except EgressError as exc:
        return Check(
            name,
            FAIL,
            f"not answering on {settings.ANYON_EGRESS_CONTROL}: {exc}",
            "start it: manage.py serve does; a worker-only host runs manage.py egress_proxy",
        )
    return Check(name, OK, f"pid {status.get('pid')}, {len(status.get('attempts', []))} attempt(s) open")
