"""Fixtures of the egress proxy tests: a proxy in the test's event loop, a stub resolver (no test ever resolves a real
name or connects outside 127.0.0.0/8), recorded credentials and refusals, and a TCP→UNIX bridge like the container's.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from shared.egress import AddressPolicy, EgressProxy, Grant, Service

API_KEY = "sk-ant-api03-" + "R" * 40
OAUTH_TOKEN = "sk-ant-oat01-" + "O" * 40
GH_TOKEN = "ghp_" + "G" * 36
PLACEHOLDER = "anyon-placeholder-0123456789"
OWN_ADDRESS = "198.51.100.7"  # "this host's public address" in the policy tests; never connected to


class StubResolver:
    """Answers from a table and counts lookups; an unknown name does not resolve (no real DNS in tests)."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = dict(table or {})
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        answer = self.table.get(host)
        if answer is None:
            raise OSError(f"stub resolver: {host} is unknown")
        return list(answer.pop(0) if answer and isinstance(answer[0], list) else answer)


@dataclass
class Credentials:
    """The credential source of the tests: per attempt and service; records every request for a credential."""

    values: dict[tuple[str, Service], str] = field(default_factory=dict)
    calls: list[tuple[str, Service]] = field(default_factory=list)

    def __call__(self, attempt_id: str, service: Service) -> str:
        self.calls.append((attempt_id, service))
        return self.values[(attempt_id, service)]


@dataclass
class Blocked:
    """Refusals as ``(attempt, host, port, reason)``; ``requests`` has the method and path seen with each."""

    events: list[tuple[str, str, int, str]] = field(default_factory=list)
    requests: list[tuple[str | None, str | None]] = field(default_factory=list)

    def __call__(
        self, attempt_id: str, host: str, port: int, reason: str, *, method: str | None = None, path: str | None = None
    ) -> None:
        self.events.append((attempt_id, host, port, reason))
        self.requests.append((method, path))


@pytest.fixture
def resolver() -> StubResolver:
    return StubResolver()


@pytest.fixture
def credentials() -> Credentials:
    return Credentials(
        {
            ("1", Service.ANTHROPIC): API_KEY,
            ("1", Service.GITHUB): GH_TOKEN,
            ("2", Service.ANTHROPIC): OAUTH_TOKEN,
            ("2", Service.GITHUB): "ghp_" + "H" * 36,
        }
    )


@pytest.fixture
def blocked() -> Blocked:
    return Blocked()


@pytest.fixture
async def proxy(resolver, credentials, blocked) -> AsyncIterator[EgressProxy]:
    policy = AddressPolicy(resolver, own_addresses=[OWN_ADDRESS])
    egress = EgressProxy(credentials, on_blocked=blocked, policy=policy)
    yield egress
    await egress.stop()


def short_tempdir(prefix: str) -> Path:
    """UNIX socket paths are limited to 107 bytes, which pytest's tmp_path can exceed."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@pytest.fixture
def attempt_dirs() -> Iterator[list[Path]]:
    """Two per-attempt directories (what the wiring creates under cloud-secrets/<attempt>)."""
    root = short_tempdir("egress-")
    dirs = [root / "1", root / "2"]
    for d in dirs:
        d.mkdir(mode=0o700)
    yield dirs
    shutil.rmtree(root, ignore_errors=True)


def grant(attempt_id: str = "1", **changes) -> Grant:
    return Grant(attempt_id=attempt_id, placeholder=PLACEHOLDER, **changes)


def unix_session(path: Path) -> aiohttp.ClientSession:
    """An HTTP client that talks to a UNIX socket (as git and the CLI do through the container's bridge)."""
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path)), auto_decompress=False)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()


@contextlib.asynccontextmanager
async def tcp_bridge(socket_path: Path) -> AsyncIterator[int]:
    """What ``anyon-egress-bridge`` does with socat inside the container: 127.0.0.1:<port> → the UNIX socket."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(str(socket_path))
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        writer.close()
        up_writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


class ConnectionCounter:
    """A TCP server on 127.0.0.1 that only counts the connections it accepts (the "evil" server)."""

    def __init__(self) -> None:
        self.count = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ConnectionCounter:
        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.count += 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nevil")
            await writer.drain()
            writer.close()

        self._server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
