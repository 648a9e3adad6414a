"""Batched, ordered writing of an attempt's log records, with a wake-up for live viewers after each batch.

Records are written in batches bounded by size and time, so a run printing 200 MB costs a bounded amount of
memory and a few thousand inserts, not millions. ``seq`` numbers the records of an attempt without gaps; one
writer per attempt (the worker running it) assigns them.
"""

from __future__ import annotations

import logging
import time

from django.db.models import Max

from anyon.live_events import notify_group
from execution.models import LogRecord

logger = logging.getLogger(__name__)

MAX_RECORD_CHARS = 16 * 1024
FLUSH_CHARS = 1024 * 1024  # fewer, larger transactions: the time bound below keeps the log live
FLUSH_SECONDS = 0.1


def attempt_group(attempt_id: int) -> str:
    return f"attempt.{attempt_id}"


def wake_viewers(attempt_id: int, **event) -> None:
    """Tell live viewers that something new is in the database (best effort)."""
    notify_group(attempt_group(attempt_id), {"type": "attempt.changed", **event})


class LogWriter:
    def __init__(self, attempt_id: int) -> None:
        self.attempt_id = attempt_id
        last = LogRecord.objects.filter(attempt_id=attempt_id).aggregate(m=Max("seq"))["m"]
        self.next_seq = (last or 0) + 1
        self._pending: list[LogRecord] = []
        self._pending_chars = 0
        self._last_flush = time.monotonic()
        self.total_chars = 0

    def write(self, run_id: int | None, stream: str, text: str) -> None:
        if not text:
            return
        text = text.replace("\x00", "\ufffd")  # NUL cannot be stored in PostgreSQL text
        self.total_chars += len(text)
        while text:
            last = self._pending[-1] if self._pending else None
            if (
                last is not None
                and last.run_id == run_id
                and last.stream == stream
                and len(last.text) < MAX_RECORD_CHARS
            ):
                room = MAX_RECORD_CHARS - len(last.text)
                last.text += text[:room]
                piece = text[:room]
            else:
                piece = text[:MAX_RECORD_CHARS]
                self._pending.append(
                    LogRecord(attempt_id=self.attempt_id, run_id=run_id, seq=self.next_seq, stream=stream, text=piece)
                )
                self.next_seq += 1
            self._pending_chars += len(piece)
            text = text[len(piece) :]
        if self._pending_chars >= FLUSH_CHARS:
            self.flush()

    def flush_if_due(self) -> None:
        if self._pending and time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        LogRecord.objects.bulk_create(self._pending)
        last_seq = self._pending[-1].seq
        self._pending, self._pending_chars = [], 0
        wake_viewers(self.attempt_id, seq=last_seq)
