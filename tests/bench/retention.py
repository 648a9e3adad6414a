"""``make bench`` item 7, log retention, on the database of ``DATABASE_URL`` (``tests/bench/run.py`` runs it once on
SQLite and once on a throwaway PostgreSQL): how much the database grows per 1,000 log lines and per attempt, and
that it stops growing once the retention sweep removes old logs as fast as new ones come.

Rounds: write ``ATTEMPTS`` attempts of ``LINES`` lines each through the real log writer (``LogWriter``, its
background inserting thread, as a worker does), end them "40 days ago", run the real sweep
(``sweep_old_logs``), and write the same again. Meanwhile a probe thread inserts one record every 10 ms into a
running attempt and times each insert: the longest shows how long the sweep's delete transactions held up a writer.

Sizes: SQLite, the main file's pages (``page_count``, of which ``freelist_count`` are free for reuse) after a WAL
checkpoint; PostgreSQL, ``pg_total_relation_size`` of the log table (heap, TOAST and indexes) after the sweep, which
ends with a plain ``VACUUM`` of it there (``ANYON_BENCH_RETENTION_VACUUM=0`` leaves that out, to show why it runs).
Neither gives space back to the file system; both reuse it.

Prints one JSON line per measurement and a last line ``RESULT {...}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import statistics
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.live_stack import configure  # noqa: E402

ENV = {"ANYON_ATTEMPT_LOG_MAX_CHARS": "0", "ANYON_WAKEUP_DIR": ""}  # no cap; no web server to wake
if os.environ.get("DATABASE_URL"):
    ENV["DATABASE_URL"] = os.environ["DATABASE_URL"]
configure("bench-retention", **ENV)

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import close_old_connections, connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from execution.attempts.actions import do_create_task, do_start_attempt  # noqa: E402
from execution.logs.writer import LogWriter  # noqa: E402
from execution.models import Attempt, AttemptStatus, LogRecord, Run, RunKind, RunStatus  # noqa: E402
from execution.sweeps import log_retention  # noqa: E402
from execution.sweeps.log_retention import sweep_old_logs  # noqa: E402
from tests.fixtures.queueing import held_from_workers  # noqa: E402

ATTEMPTS = int(os.environ.get("ANYON_BENCH_RETENTION_ATTEMPTS", "20"))
LINES = int(os.environ.get("ANYON_BENCH_RETENTION_LINES", "10000"))
ROUNDS = int(os.environ.get("ANYON_BENCH_RETENTION_ROUNDS", "5"))
LINES_PER_WRITE = 100  # what one read of a step's output holds, about 9 KB
WORDS = ["build", "test", "lint", "compile", "link", "fetch", "resolve", "install", "pass", "fail", "skip", "warn",
         "cache", "hit", "miss", "ok", "src", "lib", "pkg"]  # fmt: skip


def log_lines(rng: random.Random, count: int) -> list[str]:
    """Build-log-like lines (a counter, words, a path, a hex id): about 90 bytes, compressible about as much as real
    output, not as much as one line repeated (PostgreSQL compresses large values)."""
    return [
        f"[{i:06d}] {' '.join(rng.choices(WORDS, k=5))} src/{rng.choice(WORDS)}/{rng.randrange(10**4)}.py "
        f"{rng.getrandbits(64):016x}\n"
        for i in range(count)
    ]


def emit(metric: str, **values) -> dict:
    line = {"metric": metric, "database": connection.vendor, **values}
    print(json.dumps(line), flush=True)
    return line


def db_size() -> dict:
    """The log table with its indexes (and TOAST), and the whole database; SQLite: also its free pages."""
    table = LogRecord._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            page = cursor.execute("PRAGMA page_size").fetchone()[0]
            pages = cursor.execute("PRAGMA page_count").fetchone()[0]
            free = cursor.execute("PRAGMA freelist_count").fetchone()[0]
            cursor.execute(
                "SELECT SUM(pgsize) FROM dbstat WHERE name IN (SELECT name FROM sqlite_schema WHERE tbl_name = %s)",
                [table],
            )
            return {"log_table_bytes": cursor.fetchone()[0], "file_bytes": pages * page, "free_bytes": free * page}
        cursor.execute("SELECT pg_total_relation_size(%s), pg_database_size(current_database())", [table])
        log_table, database = cursor.fetchone()
        return {"log_table_bytes": log_table, "file_bytes": database}


#: ``0``: the sweep's own VACUUM is left out (PostgreSQL then depends on autovacuum's timing), to show why it runs.
VACUUM = os.environ.get("ANYON_BENCH_RETENTION_VACUUM", "1") != "0"


def write_round(task, rng: random.Random) -> float:
    started = time.perf_counter()
    for _ in range(ATTEMPTS):
        with held_from_workers():
            attempt = do_start_attempt(task=task, plan=[])
        run = Run.objects.create(attempt=attempt, kind=RunKind.CUSTOM, title="build", status=RunStatus.SUCCEEDED)
        writer = LogWriter(attempt.pk)
        lines = log_lines(rng, LINES)
        for i in range(0, LINES, LINES_PER_WRITE):
            writer.write(run.pk, "stdout", "".join(lines[i : i + LINES_PER_WRITE]))
        writer.close()
        Attempt.objects.filter(pk=attempt.pk).update(
            status=AttemptStatus.SUCCEEDED, finished_at=timezone.now() - timedelta(days=40)
        )
    return time.perf_counter() - started


class Probe(threading.Thread):
    """Inserts one record every 10 ms into a running attempt, as a worker's log writer would, and times each."""

    def __init__(self, attempt_id: int) -> None:
        super().__init__(daemon=True)
        self.attempt_id, self.latencies, self.stop = attempt_id, [], threading.Event()
        self.seq = 0

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.seq += 1
                started = time.perf_counter()
                with transaction.atomic():
                    LogRecord.objects.create(attempt_id=self.attempt_id, seq=self.seq, stream="stdout", text="probe\n")
                self.latencies.append(time.perf_counter() - started)
                time.sleep(0.01)
        finally:
            close_old_connections()
            connection.close()


def main() -> None:
    call_command("migrate", verbosity=0)
    user = User.objects.create_user("retention", password="retention password 123")
    task = do_create_task(
        owner=user, title="bench", repo_url="https://github.com/acme/bench", base_branch="main", prompt="x"
    )
    with held_from_workers():
        probe_attempt = do_start_attempt(task=task, plan=[])
    Attempt.objects.filter(pk=probe_attempt.pk).update(status=AttemptStatus.RUNNING)
    rng = random.Random(19)
    lines_per_round = ATTEMPTS * LINES
    before = db_size()
    emit("retention_start", **before)
    after_writes, after_sweeps, sweeps = [], [], []
    for number in range(1, ROUNDS + 1):
        seconds = write_round(task, rng)
        size = db_size()
        after_writes.append(size)
        emit("retention_written", round=number, attempts=ATTEMPTS, lines=lines_per_round, write_s=round(seconds, 2),
             **size)  # fmt: skip
        if number == ROUNDS:
            break
        probe = Probe(probe_attempt.pk)
        probe.start()
        started = time.perf_counter()
        without_vacuum = mock.patch.object(log_retention, "let_postgresql_reuse_the_space", lambda: "")
        with contextlib.nullcontext() if VACUUM else without_vacuum:
            report = sweep_old_logs(days=30)  # on PostgreSQL its own VACUUM is part of the time
        sweep_s = time.perf_counter() - started
        probe.stop.set()
        probe.join()
        LogRecord.objects.filter(attempt=probe_attempt).delete()
        if report.failed or len(report.removed) != ATTEMPTS:
            raise RuntimeError(f"the sweep removed {len(report.removed)} logs of {ATTEMPTS}: {report.line()}")
        size = db_size()
        after_sweeps.append(size)
        sweeps.append({"sweep_s": sweep_s, "probe_max_ms": max(probe.latencies) * 1000,
                       "probe_p50_ms": statistics.median(probe.latencies) * 1000})  # fmt: skip
        emit("retention_swept", round=number, removed=len(report.removed), sweep_s=round(sweep_s, 2),
             writer_insert_max_ms=round(sweeps[-1]["probe_max_ms"], 1), **size)  # fmt: skip
    growth = after_writes[0]["file_bytes"] - before["file_bytes"]
    summaries = [
        len(json.dumps(v)) for v in Attempt.objects.exclude(log_summary={}).values_list("log_summary", flat=True)
    ]
    later_attempts = (ROUNDS - 1) * ATTEMPTS
    log_tables = [s["log_table_bytes"] for s in after_writes]
    result = {
        "database": connection.vendor,
        "vacuum_after_sweep": VACUUM and connection.vendor == "postgresql",
        "attempts_per_round": ATTEMPTS,
        "lines_per_attempt": LINES,
        "log_text_bytes_per_round": sum(len(line) for line in log_lines(random.Random(19), LINES)) * ATTEMPTS,
        "growth_round_1_bytes": growth,
        "bytes_per_1000_lines": round(growth / (lines_per_round / 1000)),
        "bytes_per_attempt": round(growth / ATTEMPTS),
        "log_table_after_each_write": log_tables,
        "log_table_after_each_sweep": [s["log_table_bytes"] for s in after_sweeps],
        "file_after_each_write": [s["file_bytes"] for s in after_writes],
        "free_after_each_sweep": [s.get("free_bytes") for s in after_sweeps],
        "log_table_growth_after_round_1_pct": round((log_tables[-1] / log_tables[0] - 1) * 100, 2),
        "log_table_growth_last_round_pct": round(  # steady state
            (log_tables[-1] / log_tables[-2] - 1) * 100, 2) if ROUNDS > 1 else 0,
        "kept_bytes_per_swept_attempt": round((after_writes[-1]["file_bytes"] - after_writes[0]["file_bytes"])
                                              / later_attempts) if later_attempts else None,
        "summary_json_bytes_per_attempt": round(statistics.mean(summaries)) if summaries else 0,
        "sweep_s": [round(s["sweep_s"], 2) for s in sweeps],
        "writer_insert_max_ms_during_sweep": [round(s["probe_max_ms"], 1) for s in sweeps],
        "writer_insert_p50_ms_during_sweep": [round(s["probe_p50_ms"], 1) for s in sweeps],
    }  # fmt: skip
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
