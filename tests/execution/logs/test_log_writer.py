"""The log writer: batches stored in order by its background thread, bounded memory when the database is slow,
errors surfacing in the runner, inline inserts inside a transaction, and the size-bounded read of the viewers."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from django.db import IntegrityError, connection, transaction

from execution.logs import writer as log_writer
from execution.logs.selectors import log_records_after
from execution.logs.writer import FLUSH_CHARS, MAX_BATCHES_IN_FLIGHT, MAX_RECORD_CHARS, LogWriter
from execution.models import LogRecord
from tests.execution.conftest import logs, make_attempt


def writer_threads(attempt_id: int) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(f"log-writer-{attempt_id}_")]


@pytest.mark.django_db(transaction=True)
def test_batches_are_stored_in_order_and_the_thread_ends_on_close():
    attempt = make_attempt()
    writer = LogWriter(attempt.pk)
    expected = []
    for i in range(3000):  # about 3 MB in small writes, two streams interleaved
        line = f"{i:05d} " + "x" * (900 + i % 200) + "\n"
        stream = "stderr" if i % 7 == 0 else "stdout"
        writer.write(None, stream, line)
        expected.append((stream, line))
        writer.flush_if_due(quiet=i % 50 == 0)
    assert writer_threads(attempt.pk)  # batches went to the background thread
    writer.close()
    writer.close()  # idempotent
    assert writer_threads(attempt.pk) == []
    records = list(LogRecord.objects.filter(attempt=attempt).order_by("seq"))
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert all(len(r.text) <= MAX_RECORD_CHARS for r in records)
    assert "".join(r.text for r in records) == "".join(line for _, line in expected)
    for stream in ("stdout", "stderr"):
        assert "".join(r.text for r in records if r.stream == stream) == "".join(
            line for s, line in expected if s == stream
        )


@pytest.mark.django_db(transaction=True)
def test_a_slow_database_blocks_the_producer_instead_of_growing_memory():
    if connection.vendor != "sqlite":
        pytest.skip("holds the SQLite write lock from a second connection")
    attempt = make_attempt()
    writer = LogWriter(attempt.pk)
    chunk = "y" * 64 * 1024
    done = threading.Event()

    def produce() -> None:
        for _ in range(16 * FLUSH_CHARS // len(chunk)):  # 16 batches' worth
            writer.write(None, "stdout", chunk)
        done.set()

    blocker = sqlite3.connect(connection.settings_dict["NAME"], timeout=30)
    blocker.execute("BEGIN IMMEDIATE")  # the database is "slow": nobody else can write
    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(1.5)
    assert not done.is_set()
    # In flight: the batch being inserted, MAX_BATCHES_IN_FLIGHT waiting, one being filled.
    assert writer.total_chars <= (MAX_BATCHES_IN_FLIGHT + 2) * FLUSH_CHARS + len(chunk)
    blocker.rollback()
    blocker.close()
    producer.join(timeout=60)
    assert done.is_set()
    writer.close()
    assert len(logs(attempt.pk)) == 16 * FLUSH_CHARS


@pytest.mark.django_db(transaction=True)
def test_an_insert_error_in_the_background_surfaces_in_the_caller():
    writer = LogWriter(987654)  # no such attempt: the foreign key fails
    writer.write(None, "stdout", "lost\n")
    with pytest.raises(IntegrityError):
        writer.close()
    assert writer_threads(987654) == []


@pytest.mark.django_db
def test_inside_a_transaction_the_insert_is_inline_and_visible_to_it():
    attempt = make_attempt()
    with transaction.atomic():
        writer = LogWriter(attempt.pk)
        writer.write(None, "stdout", "inside\n")
        writer.flush()
        assert logs(attempt.pk) == "inside\n"  # another thread's connection could not see this attempt
    assert writer_threads(attempt.pk) == []


@pytest.mark.django_db
def test_nul_bytes_are_stored_as_replacement_characters():
    attempt = make_attempt()
    writer = LogWriter(attempt.pk)
    writer.write(None, "stdout", "a\x00b\n")
    writer.close()
    assert logs(attempt.pk) == "a\ufffdb\n"


@pytest.mark.django_db
def test_viewers_read_only_as_many_records_as_one_message_needs():
    attempt = make_attempt()
    writer = LogWriter(attempt.pk)
    writer.write(None, "stdout", "z" * (40 * MAX_RECORD_CHARS))  # 40 full records
    writer.close()
    records = log_records_after(attempt_id=attempt.pk, after_seq=0, limit=500, max_chars=3 * MAX_RECORD_CHARS)
    assert [seq for seq, *_ in records] == [1, 2, 3]
    assert len(log_records_after(attempt_id=attempt.pk, after_seq=0, limit=500)) == 40
    assert [seq for seq, *_ in log_records_after(attempt_id=attempt.pk, after_seq=38, limit=500)] == [39, 40]


def test_insert_statement_names_the_model_columns():
    sql = log_writer._insert_sql()
    for column in ("attempt_id", "run_id", "seq", "stream", "text", "created_at"):
        assert column in sql
    assert sql.count("%s") == 6
