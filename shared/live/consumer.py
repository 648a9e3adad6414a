"""The base of every websocket consumer: JSON out, and client frames checked before anything reads them.

Every client message must be a JSON object with a ``type``; binary, oversized or malformed frames get an ``error``
message back, never a crash. A signed-in user's socket lasts only as long as the session that opened it
(shared/live/sessions.py): closed with 4401 on log-out, deactivation, or a failed periodic re-check. (A frame larger
than ``ANYON_WS_MAX_MESSAGE_BYTES`` never reaches a consumer: the web server closes its socket before buffering it,
see ``anyon/management/commands/serve.py``.)

One user holds at most ``ANYON_MAX_WEBSOCKETS_PER_USER`` sockets at once in one web process: another one is told why
and closed (code 4429), and the user's other sockets, and everyone else's, go on.

Messages out are encoded with orjson: a viewer of a busy run receives megabytes a second, and the standard encoder
spent more time on them than anything else in the web process (profiled, docs/PERFORMANCE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Awaitable, Callable

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils.crypto import constant_time_compare

from shared.live import sessions

#: Open sockets per user id in this process (consumers of one process share its event loop).
_open_sockets: Counter[int] = Counter()
TOO_MANY_SOCKETS = 4429


def open_sockets(user_id: int) -> int:
    return _open_sockets[user_id]


def encode_json(payload: dict) -> str:
    """One outgoing message as text (orjson; a lone surrogate, which orjson refuses, goes through the standard
    encoder, which escapes it)."""
    try:
        return orjson.dumps(payload).decode()
    except TypeError:
        return json.dumps(payload)


class JsonConsumer(AsyncWebsocketConsumer):
    #: Largest client frame accepted, in characters; consumers that only listen may lower it.
    max_frame = 8192
    follower: asyncio.Task | None = None
    session_guard: asyncio.Task | None = None
    signed_out = False

    async def accept(self, subprotocol=None, headers=None) -> None:
        """Accept, and for a signed-in user join the user's group and re-check the session periodically."""
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            self.session_user_id = user.pk
            self.session_key = getattr(self.scope.get("session"), "session_key", None) or ""
            group = sessions.user_group(user.pk)
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups.append(group)
            self.session_guard = asyncio.create_task(self._guard_session())
        await super().accept(subprotocol, headers)

    async def _guard_session(self) -> None:
        while True:
            await asyncio.sleep(settings.ANYON_LIVE_SESSION_CHECK_SECONDS)
            if not await self._session_still_valid():
                await self.sign_out()
                return

    async def _session_still_valid(self) -> bool:
        return await database_sync_to_async(sessions.still_signed_in)(
            user_id=self.session_user_id, session_key=self.session_key
        )

    async def session_ended(self, event: dict) -> None:
        """The user logged out somewhere or changed: close if it was this socket's session, else re-check now."""
        digest = event.get("session")
        if self.session_key and isinstance(digest, str) and digest:
            if constant_time_compare(digest, sessions.session_digest(self.session_key)):
                await self.sign_out()
            return  # another session of the same user logged out: this one is unaffected
        if not await self._session_still_valid():
            await self.sign_out()

    async def sign_out(self) -> None:
        """Stop following and close with 4401; the client's page shows the sign-in form on its next load."""
        if self.signed_out:
            return
        self.signed_out = True
        current = asyncio.current_task()
        for task in (self.follower, self.session_guard):
            if task is not None and task is not current:
                task.cancel()
        await self.close(code=sessions.CLOSE_SIGNED_OUT)

    _counted_user: int | None = None

    async def admit(self) -> bool:
        """Accept the socket if its user has room for one more (``ANYON_MAX_WEBSOCKETS_PER_USER``); otherwise
        accept only to say why, and close it. Returns whether it was admitted."""
        user_id = self.scope["user"].pk
        limit = settings.ANYON_MAX_WEBSOCKETS_PER_USER
        if limit > 0 and _open_sockets[user_id] >= limit:
            await self.accept()
            await self.send_error(
                f"Too many open live views: at most {limit} per user. Close some tabs, then reload this page."
            )
            await self.close(code=TOO_MANY_SOCKETS)
            return False
        _open_sockets[user_id] += 1
        self._counted_user = user_id
        await self.accept()
        return True

    async def websocket_disconnect(self, message) -> None:
        if self._counted_user is not None:  # however the consumer's own disconnect goes
            _open_sockets[self._counted_user] -= 1
            if _open_sockets[self._counted_user] <= 0:
                del _open_sockets[self._counted_user]
            self._counted_user = None
        await super().websocket_disconnect(message)

    async def accept_and_follow(self, group: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Join ``group`` (channels leaves it on disconnect), accept, and run ``loop`` until the socket closes.
        A handler of the group's messages (:func:`shared.live.events.wake_group`) calls ``woken``."""
        self.wake = asyncio.Event()
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups.append(group)
        if await self.admit():
            self.follower = asyncio.create_task(loop())

    def woken(self) -> None:
        self.wake.set()

    async def wait_for_wakeup(self, timeout: float) -> None:
        """Until a group message or ``timeout`` seconds (the poll that covers a wake-up that never came)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=timeout)
        self.wake.clear()

    async def disconnect(self, code: int) -> None:
        for task in (self.follower, self.session_guard):
            if task is not None:
                task.cancel()

    async def send_json(self, payload: dict) -> None:
        await self.send(text_data=encode_json(payload))

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
