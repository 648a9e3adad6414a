"""One attempt's listening UNIX sockets and everything live behind them, so closing the attempt ends all of it.

The sockets are created in the attempt's directory (which the wiring bind-mounts into the container) and handed to
the container user (owner ``uid``, mode 0600). Closing stops listening, removes the socket files and aborts every
open connection: after close, nothing of the attempt can talk through the proxy.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from shared.egress.address_policy import AddressPolicy
from shared.egress.connect_tunnel import serve_tunnel
from shared.egress.credential_swap import anthropic_handler, git_handler, github_api_handler
from shared.egress.grant import CredentialSource, Grant, HostPort, OnBlocked, Service
from shared.egress.reverse_proxy import Upstream, new_session

logger = logging.getLogger(__name__)

API_SOCKET = "api.sock"
GIT_SOCKET = "git.sock"
PROXY_SOCKET = "proxy.sock"
GITHUB_API_SOCKET = "github-api.sock"
SOCKET_NAMES = (API_SOCKET, GIT_SOCKET, PROXY_SOCKET, GITHUB_API_SOCKET)
_MAX_UNIX_PATH = 107


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
    ) -> None:
        self.grant = grant
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
        self.paths: dict[str, Path] = {}
        self.blocked_count = 0
        self.closed = False

    # -- used by the handlers ------------------------------------------------------------------------------
    async def credential(self, service: Service) -> str:
        """The real credential, asked for now (in a thread: the wiring may decrypt from the database)."""
        if self.closed:
            raise RuntimeError("attempt closed")
        return await asyncio.to_thread(self._credential_source, self.grant.attempt_id, service)

    async def blocked(self, target: HostPort, reason: str) -> None:
        self.blocked_count += 1
        logger.debug("egress attempt %s: blocked %s %s", self.grant.attempt_id, target, reason)
        if self._on_blocked is not None:
            try:
                await asyncio.to_thread(self._on_blocked, self.grant.attempt_id, target.host, target.port, reason)
            except Exception:
                logger.exception("egress on_blocked callback failed for attempt %s", self.grant.attempt_id)

    def session(self, service: Service | str) -> aiohttp.ClientSession:
        """One upstream client per service (``Service`` or another name): a pooled TLS connection is never reused
        for another upstream."""
        if service not in self._sessions:
            self._sessions[service] = new_session()
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
        try:
            if self.api_upstream:
                await self._listen_http(API_SOCKET, anthropic_handler(self), uid, gid)
            if self.git_upstream:
                await self._listen_http(GIT_SOCKET, git_handler(self), uid, gid)
            if self.github_api_upstream:
                await self._listen_http(GITHUB_API_SOCKET, github_api_handler(self), uid, gid)
            await self._listen(PROXY_SOCKET, lambda r, w: serve_tunnel(self, r, w), uid, gid)
        except BaseException:
            await self.close()
            raise
        return dict(self.paths)

    async def _listen_http(self, name: str, handler, uid: int | None, gid: int | None) -> None:
        server = web.Server(handler, handler_cancellation=True, auto_decompress=False, access_log=None)
        self._web_servers.append(server)
        await self._bind(name, lambda path: asyncio.get_running_loop().create_unix_server(server, path), uid, gid)

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

        await self._bind(name, lambda path: asyncio.start_unix_server(on_connection, path), uid, gid)

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
        self.closed = True
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
        self._clients.clear()
        self._tunnels.clear()
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
        self._listeners.clear()
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
        }
