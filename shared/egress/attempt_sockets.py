"""One attempt's listening UNIX sockets and everything live behind them, so closing the attempt ends all of it.

Longer than 300 lines: an attempt's sockets, credentials, live policy and record share one lifecycle.

The sockets are created in the attempt's directory (which the wiring bind-mounts into the container) and handed to
the container user (owner ``uid``, mode 0600). Closing stops listening, removes the socket files and aborts every
open connection: after close, nothing of the attempt can talk through the proxy. Every connection passes the
attempt's :class:`~shared.egress.limits.Gate` (a cap for all its sockets together, head and idle timeouts, a request
rate), so one attempt cannot starve the others or the control socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from shared.egress.address_policy import AddressPolicy
from shared.egress.connect_tunnel import serve_tunnel
from shared.egress.credential_swap import anthropic_handler, git_handler, github_api_handler
from shared.egress.grant import CredentialSource, CredentialUses, Grant, HostPort, OnBlocked, Service
from shared.egress.limits import Budget, Gate, Limits
from shared.egress.network_policy import Bounds, NetworkPolicy, NetworkRule, decide, policy_refusal, rule_refusal
from shared.egress.network_record import NetworkRecord
from shared.egress.reverse_proxy import Upstream, new_session

logger = logging.getLogger(__name__)

API_SOCKET = "api.sock"
GIT_SOCKET = "git.sock"
PROXY_SOCKET = "proxy.sock"
GITHUB_API_SOCKET = "github-api.sock"
SOCKET_NAMES = (API_SOCKET, GIT_SOCKET, PROXY_SOCKET, GITHUB_API_SOCKET)
_MAX_UNIX_PATH = 107
#: A throttled attempt is reported to ``on_blocked`` at most this often (the rest is counted in its status).
_THROTTLE_REPORT_EVERY = 10.0


@dataclass
class _Cached:
    value: str
    expires: float
    uses: int = 1


class AttemptSockets:
    """The live state of one open attempt: its grant, listeners, upstream clients and open connections."""

    def __init__(
        self,
        grant: Grant,
        directory: Path,
        *,
        credential_source: CredentialSource,
        on_blocked: OnBlocked | None,
        policy: AddressPolicy,
        limits: Limits | None = None,
        budget: Budget | None = None,
        on_credential_uses: CredentialUses | None = None,
        bounds: Bounds | None = None,
    ) -> None:
        self.bounds = (bounds or Bounds()).with_allow((h.host, h.port) for h in grant.allowed)
        problem = policy_refusal(grant.network, self.bounds) if grant.network is not None else None
        if problem:
            raise ValueError(f"network policy refused: {problem}")
        self.grant = grant
        self.record = NetworkRecord()
        self.limits = limits or Limits()
        self.gate = Gate(grant.attempt_id, self.limits, budget or Budget())
        self._on_credential_uses = on_credential_uses
        self._cache: dict[Service, _Cached] = {}
        self._cache_locks: dict[Service, asyncio.Lock] = {}
        self._throttle_reported = 0.0
        self.directory = directory
        self.policy = policy
        self._credential_source = credential_source
        self._on_blocked = on_blocked
        self.api_upstream = Upstream.of(grant.anthropic_url) if grant.anthropic_url else None
        self.git_upstream = Upstream.of(grant.git_url) if grant.git_url else None
        self.github_api_upstream = Upstream.of(grant.github_api_url) if grant.github_api_url else None
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._listeners: list[asyncio.Server] = []
        self._web_servers: list[web.Server] = []
        self._clients: set[asyncio.StreamWriter] = set()  # connections to proxy.sock
        self._tunnels: set[asyncio.StreamWriter] = set()  # their upstream ends
        #: proxy.sock connections past their decision: target, method and path (None for a tunnel), upstream end
        self.live: dict[asyncio.StreamWriter, tuple[HostPort, str | None, str | None, asyncio.StreamWriter]] = {}
        self.paths: dict[str, Path] = {}
        self.blocked_count = 0
        self.closed = False

    # -- the network policy, live ------------------------------------------------------------------------
    @property
    def network(self) -> NetworkPolicy:
        return self.grant.network or NetworkPolicy()

    def set_network(self, policy: NetworkPolicy) -> int:
        """Replace the policy (a setup phase ending, say); the next request or tunnel is decided by it, and open
        tunnels and requests it no longer allows are cut (a setup step's lingering tunnel does not outlive it).
        Returns how many were cut."""
        problem = policy_refusal(policy, self.bounds)
        if problem:
            raise ValueError(f"network policy refused: {problem}")
        self.grant = dataclasses.replace(self.grant, network=policy)
        cut = 0
        for writer, (target, method, path, upstream) in list(self.live.items()):
            if not decide(policy, self.bounds, method, target.host, target.port, path).allowed:
                writer.transport.abort()
                upstream.transport.abort()
                cut += 1
        return cut

    def allow_rule(self, rule: NetworkRule) -> NetworkPolicy:
        """Add one rule for the rest of this attempt ("allow for this attempt"); raises ValueError when the
        operator's bounds forbid it."""
        problem = rule_refusal(rule, self.bounds)
        if problem:
            raise ValueError(f"rule refused: {problem}")
        self.grant = dataclasses.replace(self.grant, network=self.network.with_rule(rule))
        return self.network

    # -- used by the handlers ------------------------------------------------------------------------------
    async def credential(self, service: Service) -> str:
        """The real credential: asked for (in a thread: the wiring decrypts and audits) at most once per
        ``credential_ttl`` per service; the requests a cached value served are counted and reported when it goes."""
        if self.closed:
            raise RuntimeError("attempt closed")
        lock = self._cache_locks.setdefault(service, asyncio.Lock())
        async with lock:  # a burst waits for one fill instead of decrypting once per request
            cached = self._cache.get(service)
            if cached is not None and time.monotonic() < cached.expires:
                cached.uses += 1
                return cached.value
            await self._retire(service)
            value = await asyncio.to_thread(self._credential_source, self.grant.attempt_id, service)
            if self.closed:
                raise RuntimeError("attempt closed")
            if self.limits.credential_ttl > 0:
                self._cache[service] = _Cached(value, time.monotonic() + self.limits.credential_ttl)
            return value

    async def _retire(self, service: Service) -> None:
        """Forget the cached credential of ``service`` and report how many requests it served."""
        cached = self._cache.pop(service, None)
        if cached is None or self._on_credential_uses is None:
            return
        try:
            await asyncio.to_thread(self._on_credential_uses, self.grant.attempt_id, service, cached.uses)
        except Exception:
            logger.exception("egress credential use callback failed for attempt %s", self.grant.attempt_id)

    async def throttled(self, target: HostPort) -> None:
        """Tell the wiring about an attempt over its request rate, at most every few seconds (not per request)."""
        now = time.monotonic()
        if now - self._throttle_reported >= _THROTTLE_REPORT_EVERY:
            self._throttle_reported = now
            await self.blocked(target, f"is over the request rate ({self.limits.requests_per_second:g}/s)")

    async def blocked(
        self, target: HostPort, reason: str, *, method: str | None = None, path: str | None = None
    ) -> None:
        self.blocked_count += 1
        self.record.blocked(target.host, target.port, method, path, reason)
        logger.debug("egress attempt %s: blocked %s %s", self.grant.attempt_id, target, reason)
        if self._on_blocked is not None:
            try:
                await asyncio.to_thread(
                    self._on_blocked, self.grant.attempt_id, target.host, target.port, reason, method=method, path=path
                )
            except Exception:
                logger.exception("egress on_blocked callback failed for attempt %s", self.grant.attempt_id)

    def session(self, service: Service | str) -> aiohttp.ClientSession:
        """One upstream client per service (``Service`` or another name): a pooled TLS connection is never reused
        for another upstream."""
        if service not in self._sessions:
            self._sessions[service] = new_session(self.limits.max_connections)
        return self._sessions[service]

    def track(self, writer: asyncio.StreamWriter) -> None:
        self._tunnels.add(writer)

    def untrack(self, writer: asyncio.StreamWriter) -> None:
        self._tunnels.discard(writer)

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def open(self, uid: int | None = None, gid: int | None = None) -> dict[str, Path]:
        """Create the sockets this grant needs in the attempt's directory; returns name → path."""
        info = os.lstat(self.directory)
        if not stat.S_ISDIR(info.st_mode):
            raise ValueError(f"{self.directory} is not a directory")
        self.gate.budget.attempts += 1
        self.gate.start()
        try:
            if self.api_upstream:
                await self._listen_http(API_SOCKET, anthropic_handler(self), uid, gid, self._api_throttled)
            if self.git_upstream:
                await self._listen_http(GIT_SOCKET, git_handler(self), uid, gid)
            if self.github_api_upstream:
                await self._listen_http(GITHUB_API_SOCKET, github_api_handler(self), uid, gid)
            await self._listen(PROXY_SOCKET, lambda r, w: serve_tunnel(self, r, w), uid, gid)
        except BaseException:
            await self.close()
            raise
        return dict(self.paths)

    def _api_throttled(self) -> web.Response:
        body = '{"type": "error", "error": {"type": "rate_limit_error", "message": "egress proxy: too many requests"}}'
        return web.Response(status=429, text=body, content_type="application/json", headers={"retry-after": "1"})

    @staticmethod
    def _throttled() -> web.Response:
        return web.Response(status=429, text="egress proxy: too many requests\n", headers={"Retry-After": "1"})

    async def _listen_http(
        self, name: str, handler, uid: int | None, gid: int | None, throttled: Callable[[], web.Response] | None = None
    ) -> None:
        gate = self.gate
        upstream = {API_SOCKET: self.api_upstream, GIT_SOCKET: self.git_upstream}.get(name, self.github_api_upstream)
        credential = Service.ANTHROPIC.value if name == API_SOCKET else Service.GITHUB.value

        async def paced(request: web.BaseRequest) -> web.StreamResponse:
            guard = gate.guard_of(request.transport)
            if guard is not None:
                guard.begin()
            response: web.StreamResponse | None = None
            try:
                if not gate.take():
                    if upstream is not None:
                        await self.throttled(upstream.target)
                    return (throttled or self._throttled)()
                response = await handler(request)
                return response
            finally:
                if guard is not None:
                    guard.end()
                if upstream is not None:
                    self._count(request, response, upstream.target, credential)

        server = web.Server(
            paced, handler_cancellation=True, auto_decompress=False, access_log=None,
            keepalive_timeout=self.limits.idle_timeout,
        )  # fmt: skip
        self._web_servers.append(server)
        loop = asyncio.get_running_loop()
        await self._bind(name, lambda path: loop.create_unix_server(gate.wrap(server), path), uid, gid)

    def _count(
        self, request: web.BaseRequest, response: web.StreamResponse | None, target: HostPort, credential: str
    ) -> None:
        """One request of a credentialed socket in the network record (bytes as far as they went)."""
        use = self.record.request(target.host, target.port, request.method, request.path, credential)
        use.bytes_out += request.content.total_bytes
        if response is not None and response.prepared:
            use.bytes_in += response.body_length
        elif isinstance(body := getattr(response, "body", None), bytes | bytearray):
            use.bytes_in += len(body)  # a refusal, written after the handler returns

    async def _listen(self, name: str, callback: Callable[..., Awaitable[None]], uid: int | None, gid: int | None):
        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if self.closed:  # accepted just before close, handled just after: it goes too
                writer.transport.abort()
                return
            self._clients.add(writer)
            try:
                await callback(reader, writer)
            finally:
                self._clients.discard(writer)

        loop = asyncio.get_running_loop()

        def stream_protocol() -> asyncio.Protocol:
            return asyncio.StreamReaderProtocol(asyncio.StreamReader(limit=2**16, loop=loop), on_connection, loop=loop)

        await self._bind(name, lambda path: loop.create_unix_server(self.gate.wrap(stream_protocol), path), uid, gid)

    async def _bind(self, name: str, start: Callable[[str], Awaitable[asyncio.Server]], uid, gid) -> None:
        path = self.directory / name
        if len(os.fsencode(path)) > _MAX_UNIX_PATH:
            raise ValueError(f"socket path too long for a UNIX socket: {path}")
        if path.is_symlink() or (path.exists() and not stat.S_ISSOCK(path.lstat().st_mode)):
            raise ValueError(f"{path} exists and is not a socket")
        path.unlink(missing_ok=True)  # a stale socket of a crashed proxy
        listener = await start(str(path))
        self._listeners.append(listener)
        self.paths[name] = path
        os.chmod(path, 0o600)
        if uid is not None and (uid != os.geteuid() or gid is not None):
            os.chown(path, uid, gid if gid is not None else -1)

    async def close(self) -> int:
        """Stop listening, remove the socket files, drop every open connection; returns how many were dropped."""
        if not self.closed:
            self.gate.budget.attempts -= 1
        self.closed = True
        self.gate.close()
        for path in self.paths.values():  # from here on a connect by path fails (ENOENT)
            path.unlink(missing_ok=True)
        # Connections asyncio accepted but has not attached yet would, once the listener is closed, fail to attach
        # and hang until garbage collection (CPython 3.11): let them attach first, so they are dropped below.
        for _ in range(3):
            await asyncio.sleep(0)
        for listener in self._listeners:
            listener.close()
        dropped = 0
        for server in self._web_servers:
            for handler in server.connections:
                if handler.transport is not None:
                    handler.transport.abort()
                    dropped += 1
        dropped += len(self._clients)
        for writer in [*self._clients, *self._tunnels]:
            writer.transport.abort()
        for guard in list(self.gate.guards.values()):  # admitted, not yet handed to a server
            guard.abort()
        self._clients.clear()
        self._tunnels.clear()
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
        self._listeners.clear()
        for service in list(self._cache):
            await self._retire(service)
        logger.debug("egress attempt %s closed, %s connections dropped", self.grant.attempt_id, dropped)
        return dropped

    def status(self) -> dict[str, object]:
        live = sum(len(s.connections) for s in self._web_servers) + len(self._clients)
        return {
            "attempt": self.grant.attempt_id,
            "directory": str(self.directory),
            "sockets": sorted(self.paths),
            "connections": live,
            "blocked": self.blocked_count,
            "network": self.network.mode,
            "refused_connections": self.gate.refused_connections,
            "throttled": self.gate.throttled,
            "timed_out": self.gate.timed_out,
        }
