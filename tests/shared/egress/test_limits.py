"""Per-attempt caps and timeouts: a connection cap for all of an attempt's sockets together, a request rate, a head
timeout (slow request heads) and an idle timeout, none of which cuts a request that is being served."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import time

import pytest

from shared.egress import API_SOCKET, PROXY_SOCKET, AddressPolicy, EgressProxy, Limits
from shared.egress.limits import FDS_PER_CONNECTION, RESERVED_FDS, Budget, TokenBucket, raise_file_limit
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.shared.egress.conftest import OWN_ADDRESS, PLACEHOLDER, grant
from tests.shared.egress.test_lifecycle import hanging_upstream

pytestmark = pytest.mark.hostile  # attacks: counted in docs/QA_CHECKLIST.md

TURN = json.dumps({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}).encode()
REQUEST = (
    b"POST /v1/messages HTTP/1.1\r\nHost: bridge\r\nx-api-key: " + PLACEHOLDER.encode()
    + b"\r\nContent-Length: " + str(len(TURN)).encode() + b"\r\n\r\n" + TURN
)  # fmt: skip


@pytest.fixture
async def limited(resolver, credentials, blocked):
    limits = Limits(max_connections=5, requests_per_second=5, request_burst=10, head_timeout=0.4, idle_timeout=0.8)
    egress = EgressProxy(credentials, on_blocked=blocked, policy=AddressPolicy(resolver, [OWN_ADDRESS]), limits=limits)
    yield egress
    await egress.stop()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), seconds) is not None
    except ConnectionError:  # aborted: closed too
        return True
    except TimeoutError:
        return False


async def test_the_connection_cap_counts_all_sockets_of_an_attempt_and_spares_the_others(limited, attempt_dirs):
    with FakeAnthropicAPI() as api:
        url = api.url.removeprefix("http://")
        a = await limited.open_attempt(grant("1", anthropic_url=api.url, internal=[url]), attempt_dirs[0])
        b = await limited.open_attempt(grant("2", anthropic_url=api.url, internal=[url]), attempt_dirs[1])
        held = [await asyncio.open_unix_connection(str(a[API_SOCKET])) for _ in range(3)]
        held += [await asyncio.open_unix_connection(str(a[PROXY_SOCKET])) for _ in range(2)]
        await asyncio.sleep(0.05)
        extra_reader, _w = await asyncio.open_unix_connection(str(a[API_SOCKET]))
        assert await closed_within(extra_reader, 1)  # the sixth is closed at once, on whichever socket
        extra_reader, _w = await asyncio.open_unix_connection(str(a[PROXY_SOCKET]))
        assert await closed_within(extra_reader, 1)
        reader, writer = await asyncio.open_unix_connection(str(b[API_SOCKET]))  # another attempt: its own cap
        writer.write(REQUEST)
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        status = limited.status()
        (one,) = [s for s in status["attempts"] if s["attempt"] == "1"]
        (two,) = [s for s in status["attempts"] if s["attempt"] == "2"]
        assert one["refused_connections"] == 2 and two["refused_connections"] == 0
        for _r, w in held:
            w.close()


async def test_a_slow_request_head_and_an_idle_connection_are_closed(limited, attempt_dirs):
    with FakeAnthropicAPI() as api:
        paths = await limited.open_attempt(
            grant("1", anthropic_url=api.url, internal=[api.url.removeprefix("http://")]), attempt_dirs[0]
        )
        started = time.monotonic()
        slow_reader, slow = await asyncio.open_unix_connection(str(paths[API_SOCKET]))
        for byte in REQUEST[:30]:  # one byte every 50 ms: never a whole head in time
            if slow_reader.at_eof():
                break
            with contextlib.suppress(ConnectionError):
                slow.write(bytes([byte]))
            await asyncio.sleep(0.05)
        assert await closed_within(slow_reader, 2)
        assert time.monotonic() - started < 1.6
        silent_reader, _silent = await asyncio.open_unix_connection(str(paths[API_SOCKET]))
        assert await closed_within(silent_reader, 2)  # connected, never sent anything
        reader, writer = await asyncio.open_unix_connection(str(paths[API_SOCKET]))
        writer.write(REQUEST)
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        answered = time.monotonic()
        assert await closed_within(reader, 3)  # kept alive, then idle: closed
        assert 0.5 < time.monotonic() - answered < 2.5
        assert limited.status()["attempts"][0]["timed_out"] >= 2  # the idle one may go by aiohttp's keep-alive timer


async def test_a_streaming_answer_longer_than_the_idle_timeout_is_not_cut(limited, attempt_dirs):
    runner, address = await hanging_upstream()  # one event, then nothing for 60 s: a long turn
    try:
        paths = await limited.open_attempt(
            grant("1", anthropic_url=f"http://{address}", internal=[address]), attempt_dirs[0]
        )
        reader, writer = await asyncio.open_unix_connection(str(paths[API_SOCKET]))
        writer.write(REQUEST)
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        assert not await closed_within(reader, 2.0)  # more than twice the idle timeout, still open
        writer.close()
    finally:
        await runner.cleanup()


async def test_requests_over_the_rate_are_refused_with_429(limited, attempt_dirs, blocked):
    with FakeAnthropicAPI() as api:
        paths = await limited.open_attempt(
            grant("1", anthropic_url=api.url, internal=[api.url.removeprefix("http://")]), attempt_dirs[0]
        )
        reader, writer = await asyncio.open_unix_connection(str(paths[API_SOCKET]))
        statuses = []
        for _ in range(30):
            writer.write(REQUEST)
            status = int((await reader.readline()).split()[1])
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length"))
            await reader.readexactly(int(length.split(b":")[1]))
            statuses.append(status)
        writer.close()
        assert statuses[:10] == [200] * 10  # the burst
        assert statuses.count(429) >= 15
        assert len(api.requests) < 15
        throttles = [e for e in blocked.events if "request rate" in e[3]]
        assert len(throttles) == 1  # told once, not per refused request


def test_the_token_bucket_refills_at_its_rate():
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] = 1.0
    assert [bucket.take() for _ in range(3)] == [True, True, False]


def test_the_budget_keeps_tenant_connections_below_the_file_limit():
    budget = Budget(limit=1024)
    budget.attempts = 10
    assert budget.capacity * FDS_PER_CONNECTION + RESERVED_FDS + 4 * 10 <= 1024
    assert budget.capacity >= 64 * 3  # room for a few attempts at their cap


def test_the_soft_file_limit_is_raised_to_the_hard_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert raise_file_limit() == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == (hard if hard != resource.RLIM_INFINITY else 1 << 20)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_limits_come_from_the_environment():
    limits = Limits.from_env({"ANYON_EGRESS_MAX_CONNECTIONS": "7", "ANYON_EGRESS_IDLE_TIMEOUT": "30"})
    assert (limits.max_connections, limits.idle_timeout, limits.head_timeout) == (7, 30.0, Limits().head_timeout)
    with pytest.raises(ValueError):
        Limits.from_env({"ANYON_EGRESS_MAX_CONNECTIONS": "0"})


async def test_a_tunnel_is_closed_when_idle_but_not_while_bytes_flow(limited, attempt_dirs):
    """A ``CONNECT`` tunnel: no traffic either way for the idle timeout closes it; a trickle from upstream does not."""
    trickle = asyncio.Event()

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await trickle.wait()
        with contextlib.suppress(ConnectionError):
            for _ in range(8):  # 2 s of one byte every 0.25 s: longer than the idle timeout, never idle that long
                writer.write(b".")
                await writer.drain()
                await asyncio.sleep(0.25)
        await reader.read()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    target = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        paths = await limited.open_attempt(grant("1", allowed=[target], internal=[target]), attempt_dirs[0])

        async def tunnel() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            reader, writer = await asyncio.open_unix_connection(str(paths[PROXY_SOCKET]))
            writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            return reader, writer

        quiet_reader, _quiet = await tunnel()
        assert await closed_within(quiet_reader, 3)
        busy_reader, _busy = await tunnel()
        trickle.set()
        started = time.monotonic()
        for _ in range(8):
            assert await asyncio.wait_for(busy_reader.readexactly(1), 2) == b"."
        assert time.monotonic() - started > 1.5  # open for twice the idle timeout, as long as bytes flowed
        assert await closed_within(busy_reader, 3)  # then idle: closed
    finally:
        server.close()
