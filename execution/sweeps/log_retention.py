"""Log retention (``ANYON_LOG_RETENTION_DAYS``): the full log of an attempt that finished long ago is removed, and a
summary stays with the attempt, its steps and its diff.

The summary (``Attempt.log_summary``) holds what a reader of an old attempt still wants: how many lines each stream
printed, how many characters and bytes were stored, and the last ``TAIL_LINES`` lines of each step (a failed step
says why in its last lines). It is written before a single record goes, and covers the records up to
``through_seq``; only those are deleted, in batches of ``DELETE_BATCH`` rows, each in its own short transaction, so
a large log never holds the database's write lock for long (SQLite has one writer at a time). A sweep that stops
half way (a worker killed) is finished by the next one. A follow-up started later writes a new full log after
``through_seq`` (the log writer numbers on from there); once it is old enough, its summary is added to the first.

The hourly schedule *anyon: log retention sweep* (created by migration 0013) runs :func:`sweep_old_logs`; so does
``manage.py drop_old_logs`` by hand. The freed space is reused by new records (docs/PERFORMANCE.md, "Log
retention"); it is not given back to the file system.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from execution.attempts.actions import AttemptBusy
from execution.attempts.selectors import attempt_is_working
from execution.logs.writer import wake_attempt_viewers
from execution.models import FINAL_STATUSES, Attempt, JobStatus, LogRecord, ToolOutput
from execution.sweeps.report import Progress, SweepReport
from shared.dates import local_day

logger = logging.getLogger(__name__)

#: Lines kept of each step (and of the attempt's own lines outside steps).
TAIL_LINES = 20
#: A kept line longer than this is shortened (a minified file printed as one line).
TAIL_LINE_CHARS = 2000
#: Rows per delete transaction: at most 4 MB of 16 KB records, tens of milliseconds of write lock (PERFORMANCE.md).
DELETE_BATCH = 250
READ_CHUNK = 200


def _noop(message: str) -> None:
    pass


@dataclass
class LogDrop:
    """What one removal did: records deleted, in how many transactions, and the longest of them."""

    records: int = 0
    batches: int = 0
    longest_batch_s: float = 0.0


class _Tail:
    """The last lines of one step, joined across records (a record may end in the middle of a line)."""

    def __init__(self, run_id: int | None, title: str) -> None:
        self.run_id, self.title = run_id, title
        self.lines: deque[list[str]] = deque(maxlen=TAIL_LINES)
        self.count = 0

    def add(self, stream: str, text: str) -> None:
        parts = text.split("\n")
        pieces = [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
        last = self.lines[-1] if self.lines else None
        if last is not None and last[0] == stream and not last[1].endswith("\n") and pieces:
            last[1] = _shorten(last[1] + pieces.pop(0))
        for piece in pieces:
            self.lines.append([stream, _shorten(piece)])
            self.count += 1

    def as_dict(self) -> dict:
        return {
            "run": self.run_id,
            "title": self.title,
            "lines": list(self.lines),
            "lines_before": max(0, self.count - len(self.lines)),
        }


def _shorten(line: str) -> str:
    if len(line) <= TAIL_LINE_CHARS:
        return line
    end = "\n" if line.endswith("\n") else ""
    return line[: TAIL_LINE_CHARS - 1] + "…" + end


def summarize_records(rows: Iterable[tuple[int, int | None, str, str]], titles: dict[int, str]) -> dict:
    """The summary of ``(seq, run_id, stream, text)`` rows in ``seq`` order. Lines are counted by their line breaks,
    plus a last line without one."""
    streams: dict[str, dict[str, int]] = {}
    tails: dict[int | None, _Tail] = {}
    open_line: dict[tuple[int | None, str], bool] = {}  # (run, stream) whose last text did not end a line
    records = through = 0
    for seq, run_id, stream, text in rows:
        records += 1
        through = seq
        counts = streams.setdefault(stream, {"lines": 0, "chars": 0, "bytes": 0})
        counts["lines"] += text.count("\n")
        counts["chars"] += len(text)
        counts["bytes"] += len(text.encode("utf-8", "surrogatepass"))
        open_line[(run_id, stream)] = not text.endswith("\n")
        if run_id not in tails:
            tails[run_id] = _Tail(run_id, titles.get(run_id, "") if run_id is not None else "Anyon")
        tails[run_id].add(stream, text)
    for (_, stream), is_open in open_line.items():
        streams[stream]["lines"] += is_open
    return {
        "through_seq": through,
        "records": records,
        "lines": sum(s["lines"] for s in streams.values()),
        "chars": sum(s["chars"] for s in streams.values()),
        "bytes": sum(s["bytes"] for s in streams.values()),
        "streams": streams,
        "tails": [tail.as_dict() for tail in tails.values()],
    }


def _merge(earlier: dict, later: dict) -> dict:
    """An attempt whose log was removed, then grew again (a follow-up): one summary of both."""
    if not earlier:
        return later
    merged = dict(later)
    for key in ("records", "lines", "chars", "bytes"):
        merged[key] = earlier.get(key, 0) + later[key]
    streams = {name: dict(counts) for name, counts in earlier.get("streams", {}).items()}
    for name, counts in later["streams"].items():
        into = streams.setdefault(name, {"lines": 0, "chars": 0, "bytes": 0})
        for key, value in counts.items():
            into[key] = into.get(key, 0) + value
    merged["streams"] = streams
    later_runs = {tail["run"] for tail in later["tails"]}
    merged["tails"] = [t for t in earlier.get("tails", []) if t["run"] not in later_runs] + later["tails"]
    return merged


def do_drop_attempt_log(*, attempt: Attempt, days: int) -> LogDrop:
    """Remove the full log of a finished attempt, keeping a summary (``Attempt.log_summary``) and when it was
    removed. ``days`` is the retention it was removed under (the page says so). Raises ``AttemptBusy`` while the
    attempt or one of its jobs works. Running it again finishes an interrupted removal and does nothing after."""
    if attempt_is_working(attempt):
        raise AttemptBusy("The attempt is still working: its log is not removed while it runs.")
    attempt.refresh_from_db(fields=["log_summary", "log_removed_at"])
    earlier = attempt.log_summary if attempt.log_removed_at else {}
    titles = dict(attempt.runs.values_list("pk", "title"))
    rows = (
        LogRecord.objects.filter(attempt_id=attempt.pk, seq__gt=earlier.get("through_seq", 0))
        .order_by("seq")
        .values_list("seq", "run_id", "stream", "text")
    )
    new = summarize_records(rows.iterator(chunk_size=READ_CHUNK), titles)
    summary = earlier
    if new["records"]:
        summary = {**_merge(earlier, new), "days": days}
        with transaction.atomic():  # the summary first: no moment without the log and without it
            now = timezone.now()
            Attempt.objects.filter(pk=attempt.pk).update(log_summary=summary, log_removed_at=now)
            attempt.log_summary, attempt.log_removed_at = summary, now
            wake_attempt_viewers(attempt.pk)
    drop = _delete_through(attempt.pk, summary.get("through_seq", 0))
    if drop.records:
        logger.info("removed %s log records of attempt %s (%s days after it finished)", drop.records, attempt.pk, days)
        with transaction.atomic():
            wake_attempt_viewers(attempt.pk)
    return drop


def _delete_through(attempt_id: int, through_seq: int) -> LogDrop:
    """Delete the attempt's records up to ``through_seq``, ``DELETE_BATCH`` at a time, oldest first, one short
    transaction each (a range of the (attempt, seq) index, no list of ids)."""
    drop = LogDrop()
    records = LogRecord.objects.filter(attempt_id=attempt_id, seq__lte=through_seq)
    while True:
        started = time.perf_counter()
        with transaction.atomic():
            edge = records.order_by("seq").values_list("seq", flat=True)[DELETE_BATCH - 1 : DELETE_BATCH].first()
            deleted, _ = records.filter(seq__lte=edge if edge is not None else through_seq).delete()
        if not deleted:
            with transaction.atomic():  # the whole tool outputs the removed lines offered go with them
                ToolOutput.objects.filter(attempt_id=attempt_id).delete()
            return drop
        drop.records += deleted
        drop.batches += 1
        drop.longest_batch_s = max(drop.longest_batch_s, time.perf_counter() - started)


def attempts_past_retention(days: int):
    """Finished attempts that still have log records, whose end (and every job's end) is more than ``days`` ago;
    oldest first. An attempt with a job queued or running is not one of them."""
    cutoff = timezone.now() - timedelta(days=days)
    return (
        Attempt.objects.filter(status__in=FINAL_STATUSES, finished_at__lt=cutoff)
        .filter(Exists(LogRecord.objects.filter(attempt_id=OuterRef("pk"))))
        .exclude(jobs__finished_at__gte=cutoff)
        .exclude(jobs__status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
        .order_by("finished_at", "pk")
    )


def sweep_old_logs(
    *, progress: Progress = _noop, dry_run: bool = False, days: int | None = None, limit: int | None = None
) -> SweepReport:
    """Remove the full logs of finished attempts older than ``days`` (``ANYON_LOG_RETENTION_DAYS``; 0 keeps them
    forever), at most ``limit`` attempts a sweep (None: all)."""
    days = settings.ANYON_LOG_RETENTION_DAYS if days is None else days
    report = SweepReport("old logs", dry_run=dry_run)
    if days <= 0:
        progress("a retention of 0 days keeps logs forever (ANYON_LOG_RETENTION_DAYS=0): nothing to remove")
        return report
    candidates = attempts_past_retention(days).only("pk", "status", "finished_at")  # not every old diff at once
    for attempt in list(candidates[:limit] if limit else candidates):
        report.examined += 1
        if dry_run:
            report.removed.append(str(attempt.pk))
            progress(f"would remove the full log of attempt {attempt.pk} (finished {local_day(attempt.finished_at)})")
            continue
        try:
            drop = do_drop_attempt_log(attempt=attempt, days=days)
        except AttemptBusy:
            continue  # a follow-up started meanwhile: the next sweep looks again
        except Exception as exc:
            logger.exception("could not remove the log of attempt %s", attempt.pk)
            report.failed.append(str(attempt.pk))
            progress(f"FAILED to remove the log of attempt {attempt.pk}: {exc}")
            continue
        report.removed.append(str(attempt.pk))
        progress(
            f"removed the full log of attempt {attempt.pk}: {drop.records:,} records in {drop.batches} batches "
            f"(longest {drop.longest_batch_s * 1000:.0f} ms)"
        )
    if report.removed and not dry_run:
        reclaimed = let_postgresql_reuse_the_space()
        if reclaimed:
            progress(reclaimed)
    return report


def let_postgresql_reuse_the_space() -> str:
    """PostgreSQL reuses the space of deleted rows only after a vacuum; without one the log table grows by every
    batch of logs however many are removed (measured: 7.8 → 38.4 MB over five rounds). A plain ``VACUUM`` marks it
    reusable without blocking writers (it takes no lock they need); autovacuum would get there too, but on its own
    timer. SQLite reuses freed pages at once. Not inside a transaction: VACUUM cannot run in one."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return ""
    with connection.cursor() as cursor:
        cursor.execute(f'VACUUM (ANALYZE) "{LogRecord._meta.db_table}"')
    return f"vacuumed {LogRecord._meta.db_table}: the removed logs' space is reused by the next ones"


def run_scheduled_log_retention() -> str:
    """The django-q2 scheduled task (hourly)."""
    return sweep_old_logs().line()
