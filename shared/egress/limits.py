"""What keeps one hostile attempt from starving the others: per-attempt caps and timeouts, and a file-descriptor budget
of the whole process that always leaves room for the control socket.

Every connection to an attempt's sockets passes a :class:`Gate` before the proxy does anything with it: past the
attempt's cap (all its sockets together) or the process's budget, it is closed at once. Each accepted connection is
watched by a :class:`Guard`: one that has not sent a request head within ``head_timeout`` of its first byte (or of
connecting), or that idles with no request in flight for ``idle_timeout``, is closed. Requests are paced by a token
bucket per attempt.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: Descriptors kept out of the tenants' budget: the control socket and its connections, the database connections of
#: the credential threads, logs, the interpreter's own.
RESERVED_FDS = 96
#: Descriptors one tenant connection may take at worst: itself, its upstream connection, and idle pooled upstream
#: connections of the attempt's other services.
FDS_PER_CONNECTION = 4
#: Descriptors an open attempt holds without any connection: its listening sockets.
FDS_PER_ATTEMPT = 4
#: Concurrent control connections (workers: a few per attempt they run, each one command long).
MAX_CONTROL_CONNECTIONS = 32


@dataclass(frozen=True)
class Limits:
    """Per-attempt caps (defaults fit the real Claude CLI, git and a package manager behind ``proxy.sock``)."""

    max_connections: int = 64
    requests_per_second: float = 20.0
    request_burst: int = 200
    head_timeout: float = 15.0
    idle_timeout: float = 120.0
    credential_ttl: float = 10.0

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.requests_per_second <= 0 or self.request_burst < 1:
            raise ValueError("egress limits must be positive")
        if self.head_timeout <= 0 or self.idle_timeout <= 0 or self.credential_ttl < 0:
            raise ValueError("egress timeouts must be positive")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """The ``ANYON_EGRESS_*`` variables of docs/DEPLOYMENT.md; unset ones keep their default."""
        environ = os.environ if environ is None else environ
        names = {
            "max_connections": ("ANYON_EGRESS_MAX_CONNECTIONS", int),
            "requests_per_second": ("ANYON_EGRESS_REQUESTS_PER_SECOND", float),
            "request_burst": ("ANYON_EGRESS_REQUEST_BURST", int),
            "head_timeout": ("ANYON_EGRESS_HEAD_TIMEOUT", float),
            "idle_timeout": ("ANYON_EGRESS_IDLE_TIMEOUT", float),
            "credential_ttl": ("ANYON_EGRESS_CREDENTIAL_TTL", float),
        }
        return cls(**{field: kind(environ[var]) for field, (var, kind) in names.items() if environ.get(var)})


def raise_file_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= target:
        return file_limit()
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        logger.warning("egress proxy: cannot raise the open-file limit from %s: %s", soft, exc)
        return soft
    return target


def file_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; :meth:`take` spends one or says there is none."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.clock = clock
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Budget:
    """The process's tenant connections, kept below the open-file limit with :data:`RESERVED_FDS` to spare."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = file_limit() if limit is None else limit
        self.connections = 0
        self.attempts = 0

    @property
    def capacity(self) -> int:
        free = self.limit - RESERVED_FDS - FDS_PER_ATTEMPT * self.attempts
        return max(0, free // FDS_PER_CONNECTION)


class Guard(asyncio.Protocol):
    """Wraps the protocol of one accepted connection: admits it through the gate, and tracks whether a request is in
    flight, when its current head began and when it last saw traffic, for :meth:`Gate.sweep`."""

    def __init__(self, inner: asyncio.Protocol, gate: Gate) -> None:
        self.inner = inner
        self.gate = gate
        self.transport: asyncio.Transport | None = None
        self.admitted = False
        self.busy = 0
        self.tunnel = False
        now = time.monotonic()
        self.head_since: float | None = now
        self.last = now

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.gate.admit(self):
            transport.abort()  # type: ignore[attr-defined]
            return
        self.admitted = True
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.last = time.monotonic()
        if not self.busy and not self.tunnel and self.head_since is None:
            self.head_since = self.last
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted:
            self.admitted = False
            self.gate.release(self)
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # -- told by the handlers ---------------------------------------------------------------------------------
    def begin(self) -> None:
        """A request head arrived: no timeout while it is served."""
        self.busy += 1
        self.head_since = None

    def end(self) -> None:
        self.busy -= 1
        self.last = time.monotonic()

    def open_tunnel(self) -> None:
        """A ``CONNECT`` tunnel is up: from now on only the idle timeout applies (traffic either way counts)."""
        self.tunnel = True
        self.head_since = None
        self.last = time.monotonic()

    def touch(self) -> None:
        self.last = time.monotonic()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Gate:
    """One attempt's connections (all its sockets), its request pacing, and the sweep that ends stalled ones."""

    def __init__(self, attempt_id: str, limits: Limits, budget: Budget) -> None:
        self.attempt_id = attempt_id
        self.limits = limits
        self.budget = budget
        self.guards: dict[asyncio.BaseTransport, Guard] = {}
        self.bucket = TokenBucket(limits.requests_per_second, limits.request_burst)
        self.refused_connections = 0
        self.throttled = 0
        self.timed_out = 0
        self.closed = False
        self._sweeper: asyncio.Task[None] | None = None

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: Guard(factory(), self)

    def admit(self, guard: Guard) -> bool:
        budget = self.budget
        if self.closed or len(self.guards) >= self.limits.max_connections or budget.connections >= budget.capacity:
            self.refused_connections += 1
            if self.refused_connections in (1, 100) or self.refused_connections % 1000 == 0:
                logger.warning(
                    "egress attempt %s: connection refused (%s open, cap %s; process %s of %s); %s refused so far",
                    self.attempt_id, len(self.guards), self.limits.max_connections, budget.connections,
                    budget.capacity, self.refused_connections,
                )  # fmt: skip
            return False
        assert guard.transport is not None
        self.guards[guard.transport] = guard
        budget.connections += 1
        return True

    def release(self, guard: Guard) -> None:
        if self.guards.pop(guard.transport, None) is not None:  # type: ignore[arg-type]
            self.budget.connections -= 1

    def guard_of(self, transport: asyncio.BaseTransport | None) -> Guard | None:
        return self.guards.get(transport) if transport is not None else None  # type: ignore[arg-type]

    def take(self) -> bool:
        """Spend one request; False when the attempt is over its rate (the request is then refused)."""
        if self.bucket.take():
            return True
        self.throttled += 1
        return False

    # -- the sweep --------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        period = max(0.05, min(1.0, self.limits.head_timeout / 4, self.limits.idle_timeout / 4))
        while True:
            await asyncio.sleep(period)
            self.sweep()

    def sweep(self, now: float | None = None) -> int:
        """Close the connections whose head is late or that idled too long; returns how many."""
        now = time.monotonic() if now is None else now
        late = [
            guard
            for guard in self.guards.values()
            if not guard.busy
            and (
                (guard.head_since is not None and now - guard.head_since > self.limits.head_timeout)
                or now - guard.last > self.limits.idle_timeout
            )
        ]
        for guard in late:
            guard.abort()
        self.timed_out += len(late)
        return len(late)

    def close(self) -> None:
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
