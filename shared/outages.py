"""One log line when Redis or the database stops answering, one when it is back (docs/ARCHITECTURE.md,
"Live updates", Outages)."""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("anyon.outages")

#: While a part is down, its best-effort callers try it again at most this often.
RETRY_SECONDS = 2.0
#: While a part stays down, one reminder line this often.
REMIND_SECONDS = 300.0


def describe(exc: BaseException) -> str:
    """An exception as one short line: its type and first line, no traceback."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Outage:
    def __init__(self, part: str) -> None:
        self.part = part
        self.down_since: float | None = None
        self.failures = 0
        self._last_try = 0.0
        self._reminded = 0.0
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, where: str, exc: BaseException) -> None:
        """``where`` could not reach the part: logged if it is the outage's first failure (or a reminder is due)."""
        now = time.monotonic()
        with self._lock:
            self.failures += 1
            self._last_try = now
            if self.down_since is None:
                self.down_since = self._reminded = now
                first = True
            elif now - self._reminded >= REMIND_SECONDS:
                self._reminded = now
                first = False
            else:
                return
        if first:
            logger.warning("%s unreachable (%s: %s); retrying quietly until it answers", self.part, where,
                           describe(exc))  # fmt: skip
        else:
            logger.warning("%s still unreachable after %.0f s (%s)", self.part, now - self.down_since, describe(exc))

    def answered(self) -> None:
        """The part answered: one line if it was down."""
        if self.down_since is None:
            return
        with self._lock:
            since, self.down_since = self.down_since, None
            failures, self.failures = self.failures, 0
        if since is not None:
            logger.warning("%s reachable again after %.0f s (%d failed tries)", self.part, time.monotonic() - since,
                           failures)  # fmt: skip

    def should_try(self) -> bool:
        """Whether a best-effort caller should try the part now (always while it is up; every few seconds while
        it is down)."""
        if self.down_since is None:
            return True
        with self._lock:
            now = time.monotonic()
            if now - self._last_try >= RETRY_SECONDS:
                self._last_try = now
                return True
            return False


_outages: dict[str, Outage] = {}
_registry_lock = threading.Lock()


def outage(part: str) -> Outage:
    """This process's :class:`Outage` of ``part``."""
    with _registry_lock:
        found = _outages.get(part)
        if found is None:
            found = _outages[part] = Outage(part)
        return found


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` says a server (Redis, the database) could not be reached, rather than a bug."""
    from django.db import InterfaceError, OperationalError

    if isinstance(exc, (OperationalError, InterfaceError, ConnectionError, TimeoutError)):
        return True
    try:
        import redis.exceptions
    except ImportError:  # pragma: no cover - redis is a dependency
        return False
    return isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError))


def part_of(exc: BaseException) -> str:
    """Which part a connection error names: ``"redis"``, ``"database"`` or ``"a server"``."""
    from django.db import Error as DatabaseError

    if type(exc).__module__.split(".")[0] in ("redis", "channels_redis"):
        return "redis"
    return "database" if isinstance(exc, DatabaseError) else "a server"


class OutageFilter(logging.Filter):
    """For a library's logger (django-q2's): a record that carries a connection error (``logger.exception`` while
    Redis or the database is away) becomes the outage's line, once, instead of a traceback each time."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not is_connection_error(exc):
            return True
        outage(part_of(exc)).failed(record.getMessage(), exc)
        return False
