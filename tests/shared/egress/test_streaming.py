"""The proxy as its own process (``python -m shared.egress``): 100 MB each way through ``git.sock`` with bounded
memory, and the time to the first byte through ``api.sock`` compared with going direct."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from shared.egress import API_SOCKET, GIT_SOCKET, EgressClient
from shared.egress.receive_pack import FLUSH, pkt_line
from tests.shared.egress.conftest import GH_TOKEN, PLACEHOLDER, grant, short_tempdir, tcp_bridge, unix_session

MB = 1024 * 1024
TOTAL = 100 * MB
CHUNK = b"\x5a" * MB
#: What git sends before its PACK: one command for the attempt's own branch (the proxy reads it, then streams on).
HEAD = pkt_line(b"0" * 40 + b" " + b"1" * 40 + b" refs/heads/anyon/attempt-1\0report-status\n") + FLUSH


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def proxy_process():
    """The proxy in a process of its own, so its memory can be measured; credentials from a file."""
    root = short_tempdir("egress-proc-")
    (root / "creds.json").write_text(json.dumps({"1": {"github": GH_TOKEN, "anthropic": "sk-ant-api03-" + "K" * 40}}))
    control = root / "control.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.egress", "--control", str(control), "--credentials", str(root / "creds.json"),
         "--log-level", "WARNING"],
        cwd=Path(__file__).resolve().parents[3],
    )  # fmt: skip
    client = EgressClient(control, timeout=5)
    deadline = time.monotonic() + 15
    while not client.ping():
        assert process.poll() is None and time.monotonic() < deadline, "the proxy did not start"
        time.sleep(0.05)
    (root / "1").mkdir()
    yield process, client, root / "1"
    process.terminate()
    assert process.wait(10) == 0
    assert not control.exists()


async def start_upstream(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


async def test_100_mb_each_way_streams_with_bounded_memory(proxy_process):
    process, client, directory = proxy_process
    received = {"bytes": 0, "authorization": None}

    async def receive_pack(request: web.Request) -> web.Response:
        received["authorization"] = request.headers.get("Authorization")
        async for data in request.content.iter_any():
            received["bytes"] += len(data)
        return web.Response(text="ok")

    async def info_refs(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = TOTAL
        await response.prepare(request)
        for _ in range(TOTAL // MB):
            await response.write(CHUNK)
        return response

    app = web.Application(client_max_size=TOTAL * 2)
    app.router.add_post("/octo/demo.git/git-receive-pack", receive_pack)
    app.router.add_get("/octo/demo.git/info/refs", info_refs)
    runner, upstream = await start_upstream(app)
    try:
        g = grant("1", git_url=f"http://{upstream}", git_repository="octo/demo", internal=[upstream],
                  git_push=True, git_push_branch="anyon/attempt-1")  # fmt: skip
        sockets = await asyncio.to_thread(client.open, g, directory)
        async with unix_session(Path(sockets[GIT_SOCKET])) as session:
            # Warm-up (the proxy's code is loaded and running), with Expect: 100-continue as curl sends for big bodies.
            warmup = session.post("http://b/octo/demo.git/git-receive-pack", data=HEAD + CHUNK, expect100=True)
            async with warmup as response:
                assert response.status == 200
            baseline = peak_rss_mb(process.pid)

            async def body():
                yield HEAD
                for _ in range(TOTAL // MB):
                    yield CHUNK

            started = time.monotonic()
            async with session.post("http://b/octo/demo.git/git-receive-pack", data=body()) as response:
                assert response.status == 200
            downloaded = 0
            async with session.get("http://b/octo/demo.git/info/refs?service=git-upload-pack") as response:
                async for data in response.content.iter_any():
                    downloaded += len(data)
            elapsed = time.monotonic() - started
        growth = peak_rss_mb(process.pid) - baseline
        print(f"\n200 MB through git.sock in {elapsed:.1f} s; proxy peak RSS grew {growth:.1f} MB over {baseline:.0f}")
        assert received["bytes"] == TOTAL + MB + 2 * len(HEAD)
        assert downloaded == TOTAL
        assert received["authorization"] and received["authorization"].startswith("Basic ")
        assert growth < 30, f"the proxy's peak memory grew {growth:.0f} MB: something buffers"
    finally:
        await runner.cleanup()


async def first_byte_seconds(post) -> float:
    started = time.perf_counter()
    async with post() as response:
        await response.content.readuntil(b"\n\n")
        elapsed = time.perf_counter() - started
        await response.read()
    return elapsed


async def test_first_byte_overhead_through_api_sock(proxy_process):
    """The Claude round trip's first event, direct and through the proxy (UNIX socket and the container's TCP
    bridge). Local upstream, so this is the proxy's own cost, not the network's."""
    _process, client, directory = proxy_process

    async def messages(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'event: message_start\ndata: {"type": "message_start"}\n\n')
        await response.write(b'event: message_stop\ndata: {"type": "message_stop"}\n\n')
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    runner, upstream = await start_upstream(app)
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x" * 2000}]}
    headers = {"x-api-key": PLACEHOLDER}
    rounds = 40
    try:
        sockets = await asyncio.to_thread(
            client.open, grant("1", anthropic_url=f"http://{upstream}", internal=[upstream]), directory
        )
        async with (
            aiohttp.ClientSession() as direct,
            unix_session(Path(sockets[API_SOCKET])) as via_unix,
            tcp_bridge(Path(sockets[API_SOCKET])) as bridge_port,
            aiohttp.ClientSession() as via_bridge,
        ):
            ways = {
                "direct": lambda: direct.post(f"http://{upstream}/v1/messages", json=body, headers=headers),
                "api.sock": lambda: via_unix.post("http://b/v1/messages", json=body, headers=headers),
                "bridge+api.sock": lambda: via_bridge.post(
                    f"http://127.0.0.1:{bridge_port}/v1/messages", json=body, headers=headers
                ),
            }
            times: dict[str, list[float]] = {name: [] for name in ways}
            for _ in range(rounds):
                for name, post in ways.items():
                    times[name].append(await first_byte_seconds(post))
        medians = {name: statistics.median(t[3:]) * 1000 for name, t in times.items()}  # first rounds warm up
        print("\nfirst byte, median ms: " + ", ".join(f"{n} {m:.2f}" for n, m in medians.items()))
        assert medians["api.sock"] - medians["direct"] < 15
        if os.environ.get("ANYON_EGRESS_BENCH_OUT"):
            Path(os.environ["ANYON_EGRESS_BENCH_OUT"]).write_text(json.dumps(medians))
    finally:
        await runner.cleanup()
