"""Reads of an attempt's log: its records after a point, its newest record, what the page says of a removed log."""

from __future__ import annotations

from django.conf import settings

from execution.models import Attempt, LogRecord
from shared.dates import local_day


def log_removed_note(attempt: Attempt) -> str:
    """What the attempt page (and a live viewer) says about a log removed by retention ("" while it is kept)."""
    if not attempt.log_removed_at:
        return ""
    summary = attempt.log_summary or {}
    days = summary.get("days", settings.ANYON_LOG_RETENTION_DAYS)
    streams = ", ".join(f"{name} {counts['lines']:,}" for name, counts in summary.get("streams", {}).items())
    return (
        f"The full log was removed {days} day{'s' if days != 1 else ''} after the attempt finished (on "
        f"{local_day(attempt.log_removed_at)}). It had {summary.get('lines', 0):,} lines ({streams}), "
        f"{summary.get('bytes', 0):,} bytes. Kept: the steps, the changes and the last lines of each step."
    )


def log_records_after(*, attempt_id: int, after_seq: int, limit: int = 500, max_chars: int | None = None) -> list:
    """The attempt's records after ``after_seq`` in order: at most ``limit`` of them, and no more than needed to
    reach ``max_chars`` of text (records are read one small batch at a time, so a backlog of large records is not
    loaded whole to fill one message)."""
    rows = (
        LogRecord.objects.filter(attempt_id=attempt_id, seq__gt=after_seq)
        .order_by("seq")
        .values_list("seq", "run_id", "stream", "text")[:limit]
    )
    records, size = [], 0
    for row in rows.iterator(chunk_size=16):
        records.append(row)
        size += len(row[3])
        if max_chars is not None and size >= max_chars:
            break
    return records


def last_log_seq(*, attempt_id: int) -> int:
    """The ``seq`` of the attempt's newest record (0 before the first)."""
    last = LogRecord.objects.filter(attempt_id=attempt_id).order_by("-seq").values_list("seq", flat=True).first()
    return last or 0
