"""The base of every websocket consumer: JSON out, and client frames checked before anything reads them.

Every client message must be a JSON object with a ``type``; binary, oversized or malformed frames get an ``error``
message back, never a crash. Messages out are encoded with orjson: a viewer of a busy run receives megabytes a
second, and the standard encoder spent more time on them than anything else in the web process (profiled,
docs/PERFORMANCE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

import orjson
from channels.generic.websocket import AsyncWebsocketConsumer


class JsonConsumer(AsyncWebsocketConsumer):
    #: Largest client frame accepted, in characters; consumers that only listen may lower it.
    max_frame = 8192
    follower: asyncio.Task | None = None

    async def accept_and_follow(self, group: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Join ``group`` (channels leaves it on disconnect), accept, and run ``loop`` until the socket closes.
        A handler of the group's messages (:func:`shared.live.events.wake_group`) calls ``woken``."""
        self.wake = asyncio.Event()
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups.append(group)
        await self.accept()
        self.follower = asyncio.create_task(loop())

    def woken(self) -> None:
        self.wake.set()

    async def wait_for_wakeup(self, timeout: float) -> None:
        """Until a group message or ``timeout`` seconds (the poll that covers a wake-up that never came)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=timeout)
        self.wake.clear()

    async def disconnect(self, code: int) -> None:
        if self.follower is not None:
            self.follower.cancel()

    async def send_json(self, payload: dict) -> None:
        try:
            text = orjson.dumps(payload).decode()
        except TypeError:  # a lone surrogate (orjson refuses it): the standard encoder escapes it
            text = json.dumps(payload)
        await self.send(text_data=text)

    async def send_error(self, error: str) -> None:
        await self.send_json({"type": "error", "error": error})

    async def parse(self, text_data: str | None, bytes_data: bytes | None) -> dict | None:
        """The client's message, or None after telling the client what was wrong with it."""
        if bytes_data is not None or text_data is None:
            await self.send_error("binary frames are not accepted")
            return None
        if len(text_data) > self.max_frame:
            await self.send_error("message too large")
            return None
        try:
            message = json.loads(text_data)
        except ValueError:
            await self.send_error("malformed JSON")
            return None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self.send_error("unknown message: a message is an object with a type")
            return None
        return message
