"""The websocket consumers watching one login: asyncio queues fed from the login's reader thread."""

from __future__ import annotations

import asyncio
import time


class Listeners:
    """Each listener is a consumer's event loop and queue; a message is handed over with ``call_soon_threadsafe``.
    ``orphaned_since``: when the last one left (the login is cancelled after ``ANYON_CLAUDE_LOGIN_GRACE``)."""

    def __init__(self) -> None:
        self.queues: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []
        self.orphaned_since: float | None = None

    def add(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        self.queues.append((loop, queue))
        self.orphaned_since = None

    def remove(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        if (loop, queue) in self.queues:
            self.queues.remove((loop, queue))
        if not self.queues:
            self.orphaned_since = time.monotonic()

    def publish(self, message: dict) -> None:
        for loop, queue in list(self.queues):
            try:
                loop.call_soon_threadsafe(queue.put_nowait, message)
            except RuntimeError:  # that consumer's loop is gone
                self.queues.remove((loop, queue))
