"""``make bench``'s count of the web process's queries (the fan-out figure's queries per batch).

Installed only by ``tests/bench/settings.py``, and not in the worker cluster (``qcluster``). Every database
connection the process opens counts its queries: those that read log records, and all of them. On ``SIGUSR1`` the
process writes its counts to ``$ANYON_BENCH_QUERY_COUNTS/queries-<pid>.json``; the benchmark signals the web server
before and after an item and takes the difference.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from django.apps import AppConfig
from django.db.backends.signals import connection_created

COUNTS: Counter[str] = Counter()
_lock = threading.Lock()
#: The longest garbage-collection pauses of the process, in ms (a full collection stops the event loop).
GC_PAUSES: list[float] = []
_gc_started = 0.0


def _gc(phase: str, info: dict) -> None:
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
    elif info.get("generation") == 2:
        GC_PAUSES.append(round((time.perf_counter() - _gc_started) * 1000, 1))


def _count(execute, sql, params, many, context):
    with _lock:
        COUNTS["all"] += 1
        if "execution_logrecord" in sql:
            COUNTS["log_records"] += 1
    return execute(sql, params, many, context)


def _install(sender, connection, **kwargs) -> None:
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


def _dump(signum, frame) -> None:
    folder = Path(os.environ["ANYON_BENCH_QUERY_COUNTS"])
    with _lock:
        counts = dict(COUNTS, dumps=COUNTS["dumps"] + 1, gc_full_pauses_ms=list(GC_PAUSES))
        COUNTS["dumps"] += 1
    target = folder / f"queries-{os.getpid()}.json"
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(counts))
    temporary.replace(target)


class QueryCounter(AppConfig):
    name = "tests.bench"
    label = "bench_query_counter"

    def ready(self) -> None:
        if "qcluster" in sys.argv:  # the web server's queries are the figure; a worker's counting is only its cost
            return
        connection_created.connect(_install)
        gc.callbacks.append(_gc)
        if os.environ.get("ANYON_BENCH_QUERY_COUNTS") and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, _dump)


def read_counts(pid: int, timeout: float = 10.0) -> dict[str, int]:
    """Ask process ``pid`` for its counts and wait for them (the benchmark's side)."""
    target = Path(os.environ["ANYON_BENCH_QUERY_COUNTS"]) / f"queries-{pid}.json"
    before = json.loads(target.read_text())["dumps"] if target.exists() else 0
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if target.exists():
            counts = json.loads(target.read_text())
            if counts["dumps"] > before:
                return counts
        time.sleep(0.05)
    raise RuntimeError(f"process {pid} did not report its query counts")
