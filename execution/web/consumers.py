"""Live attempt logs over a websocket: history from the database first, then new records as they arrive.

The records come from the attempt's tail in this web process (``execution/web/log_tail.py``): one read per batch for
all viewers of the attempt. A viewer sees every record once, in ``seq`` order, then the final status, then ``end``;
a reconnecting viewer passes ``?after=<last seq>`` and continues where it stopped. Who may watch is decided here, at
connect; the socket's session is re-checked by the base class.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from execution.attempts import selectors
from execution.web import log_tail
from shared.live.consumer import JsonConsumer


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
        if not await database_sync_to_async(selectors.may_view_attempt)(user=user, attempt_id=self.attempt_id):
            await self.close(code=4404)  # also for another user's attempt: nothing reveals that it exists
            return
        query = parse_qs(self.scope.get("query_string", b"").decode(errors="replace"))
        try:
            self.last_seq = max(0, int(query.get("after", ["0"])[0]))
        except ValueError:
            self.last_seq = 0
        # Not a member of the attempt's group itself: the tail is, once for all viewers of this process.
        if await self.admit():
            self.follower = asyncio.create_task(self.follow())

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
        async with log_tail.watch(self.attempt_id, after_seq=self.last_seq) as viewer:
            async for text in viewer.messages():
                await self.send(text_data=text)
