# Long because order, late joiners, resync and stop are each tested with the embedded layer and Redis.
"""One tail per attempt: one read per batch for all viewers of a process, in order, late joiners and
reconnects without loss or duplicates, slow viewers resynced instead of queued without end, stopped with the last
viewer; with the embedded channel layer and with Redis."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from execution.attempts.actions import do_transition
from execution.logs.writer import attempt_group, wake_attempt_viewers
from execution.models import Attempt, AttemptStatus, LogRecord, Run, RunKind
from execution.web import log_tail
from execution.web.consumers import AttemptLogConsumer
from tests.execution.conftest import make_attempt
from tests.fixtures.sockets import signed_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_poll(settings):
    """Only wake-ups make the tail read here (the poll would add reads of its own): what is counted is theirs."""
    settings.ANYON_LOG_POLL_SECONDS = 60


def _store(attempt_id: int, first_seq: int, texts: list[str]) -> int:
    """One batch as the log writer stores it: one transaction, the viewers woken with its last seq on commit."""
    with transaction.atomic():
        LogRecord.objects.bulk_create(
            LogRecord(attempt_id=attempt_id, seq=first_seq + i, stream="stdout", text=text)
            for i, text in enumerate(texts)
        )
        wake_attempt_viewers(attempt_id, seq=first_seq + len(texts) - 1)
    return first_seq + len(texts) - 1


store = database_sync_to_async(_store)


def _finish(attempt, to=AttemptStatus.SUCCEEDED) -> None:
    do_transition(attempt=attempt, to=AttemptStatus.PROVISIONING)
    do_transition(attempt=attempt, to=to)


async def running_attempt():
    attempt = await database_sync_to_async(make_attempt)()
    await database_sync_to_async(do_transition)(attempt=attempt, to=AttemptStatus.PROVISIONING)
    return attempt


async def collect(viewer: log_tail.Viewer, until_seq: int | None = None) -> tuple[list[int], list[dict]]:
    """Seqs and other messages of a viewer until ``end`` (or until it has ``until_seq``)."""
    seqs, others = [], []
    async for text in viewer.messages():
        message = json.loads(text)
        if message["type"] == "logs":
            assert message["records"], "an empty logs message"
            seqs += [r["seq"] for r in message["records"]]
            if until_seq is not None and seqs[-1] >= until_seq:
                break
        else:
            others.append(message)
            if message["type"] == "end":
                break
    return seqs, others


async def test_fifty_viewers_cost_one_query_per_batch(settings):
    """Through the real consumer: 50 sockets of one attempt, N batches, N reads of log records in all."""
    settings.ANYON_MAX_WEBSOCKETS_PER_USER = 0  # 50 sockets of one user
    attempt = await running_attempt()
    user = await database_sync_to_async(lambda: attempt.task.owner)()
    comms = []
    for _ in range(50):
        comm = WebsocketCommunicator(AttemptLogConsumer.as_asgi(), f"/ws/attempts/{attempt.pk}/logs/")
        signed_in(comm, user)
        comm.scope["url_route"] = {"kwargs": {"attempt_id": attempt.pk}}
        assert (await comm.connect())[0]
        assert json.loads(await comm.receive_from(timeout=10))["type"] == "status"
        comms.append(comm)
    tail = log_tail.running_tail(attempt.pk)
    assert tail is not None and len(tail.viewers) == 50
    reads_before = tail.record_reads
    # The tail's queries run in the database thread of database_sync_to_async: captured there.
    capture = CaptureQueriesContext(connection)
    await database_sync_to_async(capture.__enter__)()
    batches, seq = 10, 0
    for n in range(batches):
        seq = await store(attempt.pk, seq + 1, [f"batch {n} line {i}\n" for i in range(3)])
        for comm in comms:  # every viewer has the batch before the next is written: nothing is coalesced
            message = json.loads(await comm.receive_from(timeout=10))
            assert message["type"] == "logs"
            assert [r["seq"] for r in message["records"]] == [seq - 2, seq - 1, seq]
    await database_sync_to_async(capture.__exit__)(None, None, None)
    queries = await database_sync_to_async(lambda: [q["sql"] for q in capture.captured_queries])()
    reads = [sql for sql in queries if sql.lstrip().upper().startswith("SELECT")]
    assert len(reads) == batches, reads  # one query per batch, however many viewers
    assert all("execution_logrecord" in sql for sql in reads)
    assert tail.record_reads - reads_before == batches
    for comm in comms:
        await comm.disconnect()
    await tail.stopped_fully()
    assert log_tail.running_tail(attempt.pk) is None


async def test_records_in_order_then_the_final_status_then_end():
    attempt = await running_attempt()
    async with log_tail.watch(attempt.pk) as viewer:
        reader = asyncio.create_task(collect(viewer))
        seq = 0
        for n in range(20):
            seq = await store(attempt.pk, seq + 1, [f"line {n}\n"])
        await database_sync_to_async(do_transition)(attempt=attempt, to=AttemptStatus.FAILED, error="boom")
        seqs, others = await asyncio.wait_for(reader, 10)
    assert seqs == list(range(1, 21))
    statuses = [m["attempt"]["status"] for m in others if m["type"] == "status"]
    assert statuses[0] == "provisioning" and statuses[-1] == "failed"
    assert others[-1] == {"type": "end", "last_seq": 20}
    assert log_tail.running_tail(attempt.pk) is None


async def test_final_status_waits_for_records_written_before_it():
    """Records stored without a wake-up before the final status still go out before it."""
    attempt = await running_attempt()
    async with log_tail.watch(attempt.pk) as viewer:
        reader = asyncio.create_task(collect(viewer))
        await database_sync_to_async(
            lambda: LogRecord.objects.bulk_create(
                LogRecord(attempt_id=attempt.pk, seq=i, stream="stdout", text=f"{i}\n") for i in range(1, 1201)
            )
        )()  # more than one message's worth, and no wake-up for them
        await database_sync_to_async(do_transition)(attempt=attempt, to=AttemptStatus.CANCELLED)
        seqs, others = await asyncio.wait_for(reader, 10)
    assert seqs == list(range(1, 1201))
    assert [m["type"] for m in others][-2:] == ["status", "end"] and others[-2]["attempt"]["status"] == "cancelled"


async def test_late_joiner_and_reconnect_get_everything_once_in_order():
    attempt = await running_attempt()
    total = 60
    joined = asyncio.Event()

    async def produce() -> None:
        seq = 0
        for n in range(total):
            seq = await store(attempt.pk, seq + 1, [f"line {n}\n"])
            if n == 20:
                joined.set()
                await asyncio.sleep(0)
            await asyncio.sleep(0.005)
        await database_sync_to_async(do_transition)(attempt=attempt, to=AttemptStatus.SUCCEEDED)

    async def late(after: int) -> tuple[list[int], list[dict], int]:
        await joined.wait()
        async with log_tail.watch(attempt.pk, after_seq=after) as viewer:
            seqs, others = await collect(viewer)
            return seqs, others, viewer.catch_up_reads

    async with log_tail.watch(attempt.pk) as first:
        tail = first.tail
        results = await asyncio.wait_for(asyncio.gather(collect(first), late(0), late(7), produce()), timeout=30)
    (seqs_first, _), (seqs_late, others_late, late_reads), (seqs_resumed, _, _), _ = results
    assert seqs_first == list(range(1, total + 1))
    assert seqs_late == list(range(1, total + 1))  # what it missed, read alone, then the shared stream
    assert seqs_resumed == list(range(8, total + 1))
    assert late_reads >= 1 and others_late[-1]["type"] == "end"
    # The late viewers joined the same tail: the shared reads stayed about one per batch.
    assert tail.record_reads <= total + 2


async def test_a_viewer_ahead_of_the_shared_stream_skips_what_it_has():
    """A joiner's catch-up can read past where the tail stands: the tail's next batches are then skipped whole or
    in part, never sent twice."""
    attempt = await running_attempt()
    unannounced = database_sync_to_async(
        lambda first, last: LogRecord.objects.bulk_create(
            LogRecord(attempt_id=attempt.pk, seq=i, stream="stdout", text=f"{i}\n") for i in range(first, last + 1)
        )
    )
    async with log_tail.watch(attempt.pk) as first:
        first_messages = first.messages()
        assert json.loads(await anext(first_messages))["type"] == "status"
        await store(attempt.pk, 1, ["1\n", "2\n", "3\n"])
        assert len(json.loads(await anext(first_messages))["records"]) == 3  # the tail stands at 3
        await unannounced(4, 6)  # stored, no wake-up yet
        async with log_tail.watch(attempt.pk) as joiner:
            messages = joiner.messages()
            caught_up = json.loads(await anext(messages))
            assert [r["seq"] for r in caught_up["records"]] == [1, 2, 3, 4, 5, 6]  # past the tail's 3
            assert json.loads(await anext(messages))["type"] == "status"
            await database_sync_to_async(wake_attempt_viewers)(attempt.pk, seq=6)  # the tail reads 4..6
            assert [r["seq"] for r in json.loads(await anext(first_messages))["records"]] == [4, 5, 6]
            await unannounced(7, 8)
            await store(attempt.pk, 9, ["9\n"])  # the tail reads 7..9 as one batch
            assert [r["seq"] for r in json.loads(await anext(first_messages))["records"]] == [7, 8, 9]
            # The joiner skipped 4..6 whole and gets 7..9 as the same message.
            assert [r["seq"] for r in json.loads(await asyncio.wait_for(anext(messages), 10))["records"]] == [7, 8, 9]
            await unannounced(10, 12)
            async with log_tail.watch(attempt.pk) as second:
                second_messages = second.messages()
                caught_up = json.loads(await anext(second_messages))
                assert [r["seq"] for r in caught_up["records"]] == list(range(1, 13))  # the tail stands at 9
                assert json.loads(await anext(second_messages))["type"] == "status"
                await store(attempt.pk, 13, ["13\n"])  # the tail reads 10..13: the second joiner has 10..12
                for viewer_messages in (first_messages, messages):
                    assert [r["seq"] for r in json.loads(await anext(viewer_messages))["records"]] == [10, 11, 12, 13]
                partial = json.loads(await asyncio.wait_for(anext(second_messages), 10))
                assert [r["seq"] for r in partial["records"]] == [13]
                await database_sync_to_async(do_transition)(attempt=attempt, to=AttemptStatus.SUCCEEDED)
                rest = [json.loads(text) async for text in second_messages]
    assert [m["type"] for m in rest] == ["status", "end"] and rest[1]["last_seq"] == 13


async def test_slow_viewer_is_resynced_and_does_not_hold_up_the_others(monkeypatch):
    monkeypatch.setattr(log_tail, "MAX_BUFFERED_MESSAGES", 4)
    attempt = await running_attempt()
    async with log_tail.watch(attempt.pk) as fast, log_tail.watch(attempt.pk) as slow:
        fast_messages, slow_messages = fast.messages(), slow.messages()
        for messages in (fast_messages, slow_messages):
            assert json.loads(await anext(messages))["type"] == "status"
        seq = 0
        for n in range(30):  # the slow viewer reads nothing meanwhile
            seq = await store(attempt.pk, seq + 1, [f"line {n}\n"])
            message = json.loads(await asyncio.wait_for(anext(fast_messages), 10))
            assert [r["seq"] for r in message["records"]] == [seq]
            assert slow.pending <= 4  # bounded: what does not fit is read again later, not queued
        assert slow.resyncs >= 1
        reads_of_the_tail = fast.tail.record_reads
        await database_sync_to_async(do_transition)(attempt=attempt, to=AttemptStatus.SUCCEEDED)
        seqs, others = [], []
        async for text in slow_messages:
            message = json.loads(text)
            if message["type"] == "logs":
                seqs += [r["seq"] for r in message["records"]]
            else:
                others.append(message)
                if message["type"] == "end":
                    break
    assert seqs == list(range(1, 31))  # nothing lost, nothing twice
    assert slow.catch_up_reads >= 1  # it caught up from the database on its own
    assert fast.tail.record_reads - reads_of_the_tail <= 2  # the final drain, not the slow viewer's reads
    assert [m["attempt"]["status"] for m in others if m["type"] == "status"][-1] == "succeeded"
    assert others[-1] == {"type": "end", "last_seq": 30}


async def test_the_tail_starts_with_the_first_viewer_and_stops_after_the_last():
    attempt = await running_attempt()
    layer = get_channel_layer()
    group = attempt_group(attempt.pk)
    assert log_tail.running_tail(attempt.pk) is None
    async with log_tail.watch(attempt.pk) as first:
        tail = first.tail
        await tail.ready.wait()
        assert log_tail.running_tail(attempt.pk) is tail and len(layer.groups[group]) == 1
        async with log_tail.watch(attempt.pk) as second:
            assert second.tail is tail
        assert log_tail.running_tail(attempt.pk) is tail  # one viewer is left
    assert log_tail.running_tail(attempt.pk) is None
    await tail.stopped_fully()
    assert not layer.groups.get(group)  # it left the attempt's group
    await store(attempt.pk, 1, ["after the restart\n"])
    async with log_tail.watch(attempt.pk) as again:
        assert again.tail is not tail
        seqs, _ = await asyncio.wait_for(collect(again, until_seq=1), 10)
    assert seqs == [1]


async def test_finished_attempt_history_then_status_then_end():
    attempt = await running_attempt()
    await store(attempt.pk, 1, [f"{i}\n" for i in range(5)])
    await database_sync_to_async(do_transition)(attempt=attempt, to=AttemptStatus.SUCCEEDED)
    async with log_tail.watch(attempt.pk, after_seq=2) as viewer:
        seqs, others = await asyncio.wait_for(collect(viewer), 10)
    assert seqs == [3, 4, 5]
    assert [m["type"] for m in others] == ["status", "end"] and others[0]["attempt"]["status"] == "succeeded"


async def test_with_redis_one_subscription_per_process(settings, redis_url):
    """With Redis the tail is the process's only member of the attempt's group, and its wake-ups come through
    Redis (the poll is a minute here)."""
    import redis

    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [redis_url]}}
    }
    attempt = await running_attempt()
    client = redis.Redis.from_url(redis_url)
    key = f"asgi:group:{attempt_group(attempt.pk)}"
    try:
        async with log_tail.watch(attempt.pk) as one, log_tail.watch(attempt.pk) as two:
            await one.tail.ready.wait()
            assert await asyncio.to_thread(client.zcard, key) == 1  # not one per viewer
            readers = [asyncio.create_task(collect(v, until_seq=6)) for v in (one, two)]
            await store(attempt.pk, 1, ["a\n", "b\n", "c\n"])
            await store(attempt.pk, 4, ["d\n", "e\n", "f\n"])
            for seqs, _ in await asyncio.wait_for(asyncio.gather(*readers), 10):
                assert seqs == [1, 2, 3, 4, 5, 6]
            tail = one.tail
        await tail.stopped_fully()
        assert await asyncio.to_thread(client.zcard, key) == 0
    finally:
        await get_channel_layer().close_pools()
        client.close()


async def test_without_wake_ups_the_poll_delivers(settings, monkeypatch):
    """A channel layer that cannot be reached (Redis down) leaves the poll: records and the end still arrive."""

    class Unreachable:
        async def new_channel(self):
            raise ConnectionError("redis is down")

    monkeypatch.setattr(log_tail, "get_channel_layer", Unreachable)
    settings.ANYON_LOG_POLL_SECONDS = 0.05
    attempt = await running_attempt()
    async with log_tail.watch(attempt.pk) as viewer:
        reader = asyncio.create_task(collect(viewer))
        await database_sync_to_async(_store)(attempt.pk, 1, ["polled\n"])
        await database_sync_to_async(do_transition)(attempt=attempt, to=AttemptStatus.SUCCEEDED)
        seqs, others = await asyncio.wait_for(reader, 10)
    assert seqs == [1] and others[-1]["type"] == "end"


def test_a_status_read_leaves_the_diff_and_the_plan_in_the_database():
    """The status goes out at every change of a watched attempt: its diff (megabytes of patches) is not read for it."""
    attempt = make_attempt()
    Attempt.objects.filter(pk=attempt.pk).update(diff=[{"path": "big", "patch": "+" * 1_000_000}])
    with CaptureQueriesContext(connection) as queries:
        status = log_tail._read_status(attempt.pk)
    assert status["id"] == attempt.pk and status["status"] == AttemptStatus.QUEUED
    attempt_reads = [q["sql"] for q in queries.captured_queries if 'FROM "execution_attempt"' in q["sql"]]
    assert attempt_reads and not any('"diff"' in sql or '"plan"' in sql for sql in attempt_reads)


def test_a_status_read_leaves_the_runs_commands_and_errors_in_the_database():
    attempt = make_attempt()
    Run.objects.create(attempt=attempt, kind=RunKind.CUSTOM, title="s", argv=["x" * 100_000], error="e" * 10_000)
    with CaptureQueriesContext(connection) as queries:
        status = log_tail._read_status(attempt.pk)
    assert [(run["title"], run["status"], run["duration"]) for run in status["runs"]] == [("s", "running", None)]
    run_reads = [q["sql"] for q in queries.captured_queries if 'FROM "execution_run"' in q["sql"]]
    assert run_reads and not any('"argv"' in sql or '"error"' in sql for sql in run_reads)


def test_viewers_are_woken_only_by_changes_they_are_shown(monkeypatch):
    """A tail reads the status at every wake-up without a seq: the attempt's container, volume and secret dir are
    not shown, so recording them (a warm claim, a cold start) wakes nobody; its results are, and do."""
    from execution.attempts import runs

    woken: list[int] = []
    monkeypatch.setattr(runs, "wake_attempt_viewers", lambda attempt_id, **event: woken.append(attempt_id))
    attempt = make_attempt()
    runs.do_set_container(attempt=attempt, container_id="c" * 64)
    runs.do_set_workspace_volume(attempt=attempt, volume="anyon-workspace-x")
    runs.do_set_warm_container(
        attempt=attempt, container_id="d" * 64, workspace_volume="anyon-workspace-pool-x", dir_name="pool-x"
    )
    attempt.refresh_from_db()
    assert (attempt.container_id, attempt.secret_dir) == ("d" * 64, "pool-x") and woken == []
    runs.do_record_results(attempt=attempt, base_commit="a" * 40, head_commit="b" * 40, diff=[], diff_truncated=False)
    assert woken == [attempt.pk]
