# Long because the tail, its viewers and their resync are one concurrency design, explained below.
"""One tail per attempt: a web process reads an attempt's new log records once per batch and hands the same batch to
every live viewer of that attempt in the process (docs/ARCHITECTURE.md, "Live updates").

Before, each viewer queried the database itself and had its own wake-up message: 50 viewers of one attempt cost 50
queries and 50 channel-layer deliveries per batch. Now the first viewer of an attempt starts an :class:`AttemptTail`
(an asyncio task of the web process) and the last one to leave stops it. The tail is the only member of the
attempt's group in this process (one channel of its own, with the embedded layer and with Redis alike). On each
wake-up it reads the records after the last one it delivered (one query; another only when the read was full,
bounded by ``BATCH_RECORDS`` and ``MAX_MESSAGE_CHARS`` as before), encodes the message once and offers it to every
:class:`Viewer`. Delivery still never depends on wake-ups: the tail also looks at the database when it has not for
``ANYON_LOG_POLL_SECONDS``, and reads the attempt's status on every wake-up without a ``seq`` (a status change) and
at least that often.

A viewer joining late, or reconnecting with ``?after=<seq>``, first reads what it missed from the database alone
(``catch-up``), up to where the tail stood when it started, then continues with the shared stream; records it
already has are skipped by ``seq``, so it sees every record once, in order. A viewer keeps at most
``MAX_BUFFERED_MESSAGES`` / ``MAX_BUFFERED_CHARS`` of the shared stream that it has not sent yet; a viewer further
behind (one still catching up on a long history) drops what it holds and catches up from the database again (a
resync) instead of growing a queue, and never holds the tail or the other viewers up.

The final status goes out only after the records written before it (records are written before the final status),
so a viewer that sees the final status has the whole log; then ``end``, and the tail stops.

Who may watch is decided by the consumer when the socket connects (and its session re-checks); records in the
database are already masked. The tail only decides when to read and what to hand on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from execution.attempts import selectors
from execution.logs import selectors as log_selectors
from execution.logs.writer import attempt_group
from execution.models import Attempt
from shared.live.consumer import encode_json
from shared.outages import is_connection_error, outage

logger = logging.getLogger(__name__)

BATCH_RECORDS = 500
MAX_MESSAGE_CHARS = 512 * 1024
#: What one viewer may hold of the shared stream before it drops it and catches up from the database instead.
MAX_BUFFERED_MESSAGES = 64
MAX_BUFFERED_CHARS = 4 * MAX_MESSAGE_CHARS


@dataclass(frozen=True, eq=False)
class Message:
    """One message of the shared stream, encoded once for every viewer."""

    kind: str  # "logs", "status" or "end"
    text: str = ""
    records: tuple[dict, ...] = ()
    status: dict | None = None


def _records_message(rows: list) -> Message:
    records = tuple({"seq": seq, "run": run, "stream": stream, "text": text} for seq, run, stream, text in rows)
    return Message("logs", encode_json({"type": "logs", "records": list(records)}), records)


def _read_records(attempt_id: int, after_seq: int) -> list:
    return log_selectors.log_records_after(
        attempt_id=attempt_id, after_seq=after_seq, limit=BATCH_RECORDS, max_chars=MAX_MESSAGE_CHARS
    )


def _is_full(rows: list) -> bool:
    """The read stopped at a bound: more records may be waiting right now."""
    return len(rows) >= BATCH_RECORDS or sum(len(row[3]) for row in rows) >= MAX_MESSAGE_CHARS


def _read_status(attempt_id: int) -> dict | None:
    # Not the diff (up to megabytes of patches, decoded from JSON at every status change of every watched attempt)
    # nor the plan: the snapshot shows neither.
    attempt = Attempt.objects.defer("diff", "plan").filter(pk=attempt_id).first()
    return None if attempt is None else selectors.attempt_snapshot(attempt)


def _read_start(attempt_id: int) -> tuple[dict | None, int]:
    # The status first: if it is final, every record was written before it and the last seq read after it is final.
    status = _read_status(attempt_id)
    return status, log_selectors.last_log_seq(attempt_id=attempt_id)


class AttemptTail:
    """Reads one attempt's new records and status for all its viewers in this process."""

    def __init__(self, attempt_id: int) -> None:
        self.attempt_id = attempt_id
        self.loop = asyncio.get_running_loop()
        self.viewers: set[Viewer] = set()
        self.position = 0  # the last seq handed to the viewers
        self.status: Message | None = None  # the last status handed to the viewers
        self.ready = asyncio.Event()  # position and status are known
        self.ended = False  # the attempt is over and ``end`` went out
        self.stopped = False
        self.record_reads = 0  # queries for new records (counted by make bench: one per batch)
        self._wake = asyncio.Event()
        self._wanted_seq = 0  # the highest seq a wake-up announced
        self._status_due = True
        self._records_read_at = self._status_read_at = 0.0
        self._channel: str | None = None  # made by the receiver when the layer was away at the start
        self._task = self.loop.create_task(self._run(), name=f"log-tail-{attempt_id}")

    # --- wake-ups ------------------------------------------------------------------------------------------------
    def wake(self, seq: object = None) -> None:
        """A batch up to ``seq`` was stored, or (no ``seq``) something else about the attempt changed."""
        if isinstance(seq, int) and not isinstance(seq, bool):
            self._wanted_seq = max(self._wanted_seq, seq)
        else:
            self._status_due = True
        self._wake.set()

    async def _receive(self, layer, channel: str | None, group: str, *, joined: bool) -> None:
        """The wake-ups of the attempt's group. While the layer (Redis) does not answer, the poll goes on alone: one
        log line for the outage (shared/outages.py), then the group is joined again (a restarted Redis forgot it)
        and the tail looks at the database at once for what the outage hid."""
        pause = 0.0
        while True:
            try:
                if channel is None:
                    channel = self._channel = await layer.new_channel()
                if not joined:
                    await layer.group_add(group, channel)
                    joined = True
                    if pause:
                        self.wake()
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_connection_error(exc):
                    outage("redis").failed("live log", exc)
                else:
                    logger.warning("log tail of attempt %s: wake-ups not received", self.attempt_id, exc_info=True)
                joined = False
                pause = min(max(pause * 2, settings.ANYON_LOG_POLL_SECONDS), 10.0)
                await asyncio.sleep(pause)
                continue
            if pause:
                pause = 0.0
                outage("redis").answered()
            if message.get("type") == "attempt.changed":
                self.wake(message.get("seq"))

    async def _wait(self) -> None:
        """Until a wake-up, or until the poll is due."""
        due = min(self._records_read_at, self._status_read_at) + settings.ANYON_LOG_POLL_SECONDS - time.monotonic()
        if due > 0 and not self._wake.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=due)
        self._wake.clear()

    # --- the loop ------------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        layer = get_channel_layer()
        channel = receiver = None
        group = attempt_group(self.attempt_id)
        try:
            if layer is not None:  # joined before the first read, so no batch falls between the two
                joined = False
                try:
                    channel = await layer.new_channel()
                    await layer.group_add(group, channel)
                    joined = True
                except Exception as exc:  # Redis unreachable: the poll alone keeps the viewers going meanwhile
                    outage("redis").failed("live log", exc)
                receiver = asyncio.create_task(self._receive(layer, channel, group, joined=joined))
            while not self.ended:
                try:
                    await (self._step() if self.ready.is_set() else self._start())
                    outage("database").answered()
                except Exception as exc:  # the database went away for a moment: try again at the next poll
                    if not is_connection_error(exc):
                        logger.warning("log tail of attempt %s: read failed", self.attempt_id, exc_info=True)
                    else:
                        outage("database").failed("live log", exc)
                    self._records_read_at = self._status_read_at = time.monotonic()
                    self._status_due = True
                if not self.ended:
                    await self._wait()
        finally:
            if receiver is not None:
                receiver.cancel()
            channel = channel or self._channel
            if channel is not None:
                with contextlib.suppress(Exception):
                    await layer.group_discard(group, channel)

    async def _start(self) -> None:
        self._status_due = False  # read now; a change from here on wakes the tail again
        status, position = await database_sync_to_async(_read_start)(self.attempt_id)
        self._records_read_at = self._status_read_at = time.monotonic()
        self.position = max(self.position, position)
        self._publish_status(status)
        self.ready.set()
        if status is None or not status["active"]:
            self._end()

    async def _step(self) -> None:
        now, poll = time.monotonic(), settings.ANYON_LOG_POLL_SECONDS
        status_due = self._status_due or now - self._status_read_at >= poll
        self._status_due = False
        if status_due or self._wanted_seq > self.position or now - self._records_read_at >= poll:
            await self._read_new_records()
        if not status_due:
            return
        self._status_read_at = time.monotonic()
        status = await database_sync_to_async(_read_status)(self.attempt_id)
        final = status is None or not status["active"]
        if final:  # what was written before the final status goes out before it
            await self._read_new_records()
        self._publish_status(status)
        if final:
            self._end()

    async def _read_new_records(self) -> None:
        """One query; more only while a read comes back full (a backlog larger than one message)."""
        while True:
            self._records_read_at = time.monotonic()
            rows = await database_sync_to_async(_read_records)(self.attempt_id, self.position)
            self.record_reads += 1
            if not rows:
                return
            message = _records_message(rows)
            self.position = message.records[-1]["seq"]
            self._offer(message)
            if not _is_full(rows):
                return

    # --- handing on ----------------------------------------------------------------------------------------------
    def _offer(self, message: Message) -> None:
        for viewer in self.viewers:
            viewer.offer(message)

    def _publish_status(self, status: dict | None) -> None:
        if status is None or (self.status is not None and self.status.status == status):
            return
        self.status = Message("status", encode_json({"type": "status", "attempt": status}), status=status)
        self._offer(self.status)

    def _end(self) -> None:
        self.ended = True
        self._offer(Message("end"))
        _forget(self)

    def stop(self) -> None:
        """The last viewer left."""
        self.stopped = True
        _forget(self)
        self._task.cancel()

    async def stopped_fully(self) -> None:
        """Until the tail's task has finished (it left the attempt's group)."""
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class Viewer:
    """One socket's view of a tail: catch-up reads of its own, then the shared stream."""

    def __init__(self, tail: AttemptTail, after_seq: int) -> None:
        self.tail = tail
        self.last_seq = after_seq
        self.resyncs = 0  # how often it fell too far behind and caught up from the database (tests read it)
        self.catch_up_reads = 0
        self._pending: deque[Message] = deque()
        self._pending_chars = 0
        self._behind = True  # the shared stream starts where the tail stands: read what comes before it first
        self._arrived = asyncio.Event()
        self._sent_status: dict | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def offer(self, message: Message) -> None:
        if len(self._pending) >= MAX_BUFFERED_MESSAGES or self._pending_chars + len(message.text) > MAX_BUFFERED_CHARS:
            # Too far behind: what it holds is read again from the database later, not kept.
            self._pending.clear()
            self._pending_chars = 0
            self._behind = True
            self.resyncs += 1
        self._pending.append(message)
        self._pending_chars += len(message.text)
        self._arrived.set()

    async def messages(self) -> AsyncIterator[str]:
        """The encoded messages for this socket, in order, until ``end``."""
        await self.tail.ready.wait()
        while True:
            if self._behind:
                self._behind = False
                # Where the tail stands sums up all it handed on so far: the records up to ``target`` (read here),
                # the status then (sent after them), and ``end`` if it came.
                target, status = self.tail.position, self.tail.status
                end = [message for message in self._pending if message.kind == "end"]
                self._pending = deque(end)
                self._pending_chars = 0
                async for text in self._catch_up(target):
                    yield text
                if status is not None and status.status != self._sent_status:
                    self._sent_status = status.status
                    yield status.text
                continue
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            message = self._pending.popleft()
            self._pending_chars -= len(message.text)
            if message.kind == "logs":
                records = message.records
                if records[-1]["seq"] <= self.last_seq:
                    continue  # caught up past it already
                text = message.text
                if records[0]["seq"] <= self.last_seq:
                    fresh = [r for r in records if r["seq"] > self.last_seq]
                    text = encode_json({"type": "logs", "records": fresh})
                self.last_seq = records[-1]["seq"]
                yield text
            elif message.kind == "status":
                if message.status != self._sent_status:
                    self._sent_status = message.status
                    yield message.text
            else:
                yield encode_json({"type": "end", "last_seq": self.last_seq})
                return

    async def _catch_up(self, target: int) -> AsyncIterator[str]:
        while self.last_seq < target:
            rows = await database_sync_to_async(_read_records)(self.tail.attempt_id, self.last_seq)
            self.catch_up_reads += 1
            if not rows:
                return
            self.last_seq = rows[-1][0]
            yield _records_message(rows).text


#: The running tails of this process, by attempt (consumers of one process share its event loop).
_tails: dict[int, AttemptTail] = {}


def _forget(tail: AttemptTail) -> None:
    if _tails.get(tail.attempt_id) is tail:
        del _tails[tail.attempt_id]


def running_tail(attempt_id: int) -> AttemptTail | None:
    return _tails.get(attempt_id)


@contextlib.asynccontextmanager
async def watch(attempt_id: int, *, after_seq: int = 0) -> AsyncIterator[Viewer]:
    """A viewer of the attempt's log after ``after_seq``, on the attempt's tail (started if it is the first)."""
    tail = _tails.get(attempt_id)
    if tail is None or tail.ended or tail.loop is not asyncio.get_running_loop():
        tail = _tails[attempt_id] = AttemptTail(attempt_id)
    viewer = Viewer(tail, after_seq)
    tail.viewers.add(viewer)
    try:
        yield viewer
    finally:
        tail.viewers.discard(viewer)
        if not tail.viewers and not tail.stopped:
            tail.stop()
