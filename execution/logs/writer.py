"""Batched, ordered writing of an attempt's log records, with a wake-up for live viewers after each batch.

Records are written in batches bounded by size and time, so a run printing 200 MB costs a bounded amount of
memory and a few thousand inserts, not millions. ``seq`` numbers the records of an attempt without gaps; one
writer per attempt (the worker running it) assigns them.

Batches are inserted by one background thread of the writer, in order, so the runner reads and masks the next
output while the database stores the previous batch (a SQLite commit spends most of its time in I/O, without the
GIL). At most ``MAX_BATCHES_IN_FLIGHT`` batches wait, which bounds memory; :meth:`LogWriter.flush` returns once
everything written so far is stored. Inside a transaction (tests, admin actions) the insert happens inline: another
thread's connection could not see the transaction's rows.

An attempt stores at most ``ANYON_ATTEMPT_LOG_MAX_CHARS`` characters of output (its runs and jobs together). Past
that the run goes on: the writer stores the part that fits, a system line that says output was cut there, and from
then on only counts; the total (``Attempt.log_chars``) and where it was cut (``Attempt.log_cut_at_seq``) are kept
on the attempt, and a last system line tells how much was not stored. Anyon's own (system) lines are still stored
past the cap, up to ``SYSTEM_CHARS_AFTER_CUT`` a session: they say how the attempt ended, and a run that makes many
of them (refused connections are logged one by one) is bounded too.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from execution.models import Attempt, LogRecord, LogStream
from shared.live.events import wake_group

logger = logging.getLogger(__name__)

MAX_RECORD_CHARS = 16 * 1024
FLUSH_CHARS = 1024 * 1024  # fewer, larger transactions: the time bound below keeps the log live
FLUSH_SECONDS = 0.1
#: After a pause in the output, new text goes out this soon (a batch is not held back for FLUSH_SECONDS when
#: nothing else is coming), still at most 1 / QUIET_FLUSH_SECONDS transactions a second.
QUIET_FLUSH_SECONDS = 0.02
MAX_BATCHES_IN_FLIGHT = 4
#: Anyon's own lines stored after the log was cut, per writer (session).
SYSTEM_CHARS_AFTER_CUT = 1024 * 1024
#: The whole output of one tool call kept beside the log (``ToolOutput``): the log shows its first 500 characters.
#: A session keeps such outputs up to the attempt's log limit in all, and none once the log was cut.
TOOL_OUTPUT_MAX_CHARS = 256 * 1024


def attempt_group(attempt_id: int) -> str:
    return f"attempt.{attempt_id}"


def wake_attempt_viewers(attempt_id: int, **event) -> None:
    """Tell live viewers that something new is in the database (best effort)."""
    wake_group(attempt_group(attempt_id), {"type": "attempt.changed", **event})


class LogWriter:
    def __init__(self, attempt_id: int, *, max_chars: int | None = None) -> None:
        self.attempt_id = attempt_id
        last = LogRecord.objects.filter(attempt_id=attempt_id).aggregate(m=Max("seq"))["m"]
        self._pending: list[LogRecord] = []
        self._pending_chars = 0
        self._last_flush = time.monotonic()
        self._inserter: ThreadPoolExecutor | None = None
        self._in_flight: deque[Future] = deque()
        self.max_chars = settings.ANYON_ATTEMPT_LOG_MAX_CHARS if max_chars is None else max_chars
        # What earlier sessions of the attempt (its jobs) wrote counts against the same limit.
        row = Attempt.objects.filter(pk=attempt_id).values_list("log_chars", "log_cut_at_seq", "log_summary").first()
        chars, cut_at_seq, summary = row or (0, None, {})
        self.total_chars, self.cut_at_seq = chars, cut_at_seq
        self._recorded = (chars, cut_at_seq)
        # Records removed by log retention (execution/sweeps/log_retention.py) keep their numbers: a viewer's place
        # holds.
        self.next_seq = max(last or 0, (summary or {}).get("through_seq", 0)) + 1
        self._not_stored = 0  # since the last "not stored" line
        self._system_after_cut = 0
        self.kept_output_chars = 0  # whole tool outputs kept beside the log this session (ToolOutput)

    def may_keep_output(self) -> bool:
        """Whether one more whole tool output may be kept beside the log (``TOOL_OUTPUT_MAX_CHARS``)."""
        if self.max_chars <= 0:
            return True
        return self.cut_at_seq is None and self.kept_output_chars < self.max_chars

    def write(self, run_id: int | None, stream: str, text: str) -> None:
        if not text:
            return
        text = text.replace("\x00", "\ufffd")  # NUL cannot be stored in PostgreSQL text
        if stream == LogStream.SYSTEM and self.cut_at_seq is not None and self.max_chars > 0:
            self._system_after_cut += len(text)
            if self._system_after_cut > SYSTEM_CHARS_AFTER_CUT:
                self.total_chars += len(text)
                self._not_stored += len(text)
                return
        if stream != LogStream.SYSTEM and self.max_chars > 0:
            if self.cut_at_seq is not None:
                self.total_chars += len(text)
                self._not_stored += len(text)
                return
            room = self.max_chars - self.total_chars
            if len(text) > room:
                self._append(run_id, stream, text[: max(room, 0)])
                self.total_chars += len(text) - max(room, 0)
                self._not_stored += len(text) - max(room, 0)
                self._append(
                    run_id,
                    LogStream.SYSTEM,
                    f"\n--- output cut here: the log of an attempt keeps at most {self.max_chars:,} characters. The "
                    "run goes on; what it prints from now on is counted, not stored. ---\n",
                )
                self.cut_at_seq = self.next_seq - 1
                self._send_batch()
                self._record_size()
                return
        self._append(run_id, stream, text)

    def _append(self, run_id: int | None, stream: str, text: str) -> None:
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
            self._send_batch()

    def flush_if_due(self, *, quiet: bool = False) -> None:
        """Send the pending batch if it is old enough: ``FLUSH_SECONDS``, or ``QUIET_FLUSH_SECONDS`` when the
        caller knows no more output is waiting right now."""
        interval = QUIET_FLUSH_SECONDS if quiet else FLUSH_SECONDS
        if self._pending and time.monotonic() - self._last_flush >= interval:
            self._send_batch()

    def flush(self) -> None:
        """Store everything written so far; returns when it is in the database."""
        if self._not_stored:
            not_stored, self._not_stored = self._not_stored, 0
            self._append(
                None,
                LogStream.SYSTEM,
                f"--- {not_stored:,} characters of output were not stored; {self.total_chars:,} in all so far ---\n",
            )
        self._send_batch()
        while self._in_flight:
            self._in_flight.popleft().result()
        self._record_size()

    def _record_size(self) -> None:
        size = (self.total_chars, self.cut_at_seq)
        if size != self._recorded:
            do_record_log_size(attempt_id=self.attempt_id, chars=self.total_chars, cut_at_seq=self.cut_at_seq)
            self._recorded = size

    def close(self) -> None:
        """Flush, then stop the inserting thread and close its database connection."""
        try:
            self.flush()
        finally:
            if self._inserter is not None:
                self._inserter.submit(connection.close)
                self._inserter.shutdown(wait=True)
                self._inserter = None

    def _send_batch(self) -> None:
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        batch = self._pending
        self._pending, self._pending_chars = [], 0
        if connection.in_atomic_block:
            self._insert(batch)
            return
        if self._inserter is None:
            self._inserter = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"log-writer-{self.attempt_id}")
        while len(self._in_flight) >= MAX_BATCHES_IN_FLIGHT:  # backpressure: memory stays bounded
            self._in_flight.popleft().result()
        self._in_flight.append(self._inserter.submit(self._insert, batch))

    def _insert(self, batch: list[LogRecord]) -> None:
        """One ``executemany`` in one transaction. This is the hot path of a run's output, and ``bulk_create``
        spends about 8 ms of Python per megabyte preparing the same statement (measured, docs/PERFORMANCE.md)."""
        created = connection.ops.adapt_datetimefield_value(timezone.now())
        rows = [(r.attempt_id, r.run_id, r.seq, r.stream, r.text, created) for r in batch]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(_insert_sql(), rows)
        wake_attempt_viewers(self.attempt_id, seq=batch[-1].seq)


@functools.cache
def _insert_sql() -> str:
    meta = LogRecord._meta
    quote = connection.ops.quote_name
    columns = [meta.get_field(name).column for name in ("attempt", "run", "seq", "stream", "text", "created_at")]
    return (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(map(quote, columns))}) "  # noqa: S608 - names from the model
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )


def do_record_log_size(*, attempt_id: int, chars: int, cut_at_seq: int | None) -> None:
    """How much output the attempt printed in all, and after which record its log was cut (None: not cut)."""
    with transaction.atomic():
        Attempt.objects.filter(pk=attempt_id).update(log_chars=chars, log_cut_at_seq=cut_at_seq)
        wake_attempt_viewers(attempt_id)
