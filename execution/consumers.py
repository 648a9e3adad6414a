"""Live attempt logs over a websocket: history from the database first, then new records as they arrive.

Delivery never depends on the channel layer reaching across processes (docs/ARCHITECTURE.md, "Live updates"): the
layer only wakes the consumer early; without a wake-up it looks at the database every ``ANYON_LOG_POLL_SECONDS``.
Records are sent strictly in ``seq`` order from the last one sent, so a viewer sees no duplicates and no gaps; a
reconnecting viewer passes ``?after=<last seq>`` and continues where it stopped.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings

from execution import selectors
from execution.log_writer import attempt_group
from execution.models import Attempt
from shared.live.consumer import JsonConsumer

BATCH_RECORDS = 500
MAX_MESSAGE_CHARS = 512 * 1024


class AttemptLogConsumer(JsonConsumer):
    max_frame = 4096  # viewers only send pings
    attempt_id: int
    last_seq: int

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.attempt_id = int(self.scope["url_route"]["kwargs"]["attempt_id"])
        try:
            await database_sync_to_async(selectors.attempt_for)(user=user, attempt_id=self.attempt_id)
        except Attempt.DoesNotExist:
            await self.close(code=4404)  # also for another user's attempt: nothing reveals that it exists
            return
        query = parse_qs(self.scope.get("query_string", b"").decode(errors="replace"))
        try:
            self.last_seq = max(0, int(query.get("after", ["0"])[0]))
        except ValueError:
            self.last_seq = 0
        await self.accept_and_follow(attempt_group(self.attempt_id), self.follow)

    async def attempt_changed(self, event: dict) -> None:
        self.woken()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Viewers only listen; a ``ping`` is answered, anything else gets an error message (never a crash)."""
        message = await self.parse(text_data, bytes_data)
        if message is None:
            return
        if message["type"] == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_error("unknown message type")

    async def follow(self) -> None:
        sent_snapshot: dict | None = None
        while True:
            if await self.send_new_records():
                continue  # more may be waiting: drain before sleeping
            snapshot = await database_sync_to_async(self._snapshot)()
            if not snapshot["active"]:
                # Records are written before the final status: every one goes out before it, so a viewer that
                # sees the final status has the whole log.
                while await self.send_new_records():
                    pass
            if snapshot != sent_snapshot:
                await self.send_json({"type": "status", "attempt": snapshot})
                sent_snapshot = snapshot
            if not snapshot["active"]:
                await self.send_json({"type": "end", "last_seq": self.last_seq})
                return
            await self.wait_for_wakeup(settings.ANYON_LOG_POLL_SECONDS)

    def _snapshot(self) -> dict:
        attempt = Attempt.objects.get(pk=self.attempt_id)
        return selectors.attempt_snapshot(attempt)

    async def send_new_records(self) -> bool:
        records = await database_sync_to_async(selectors.log_records_after)(
            attempt_id=self.attempt_id, after_seq=self.last_seq, limit=BATCH_RECORDS, max_chars=MAX_MESSAGE_CHARS
        )
        if not records:
            return False
        batch = [{"seq": seq, "run": run, "stream": stream, "text": text} for seq, run, stream, text in records]
        await self.send_json({"type": "logs", "records": batch})
        self.last_seq = batch[-1]["seq"]
        return True
