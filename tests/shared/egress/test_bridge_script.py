"""``runtime-image/files/anyon-egress-bridge`` on the host: socat listeners on 127.0.0.1 that reach the proxy's
sockets, the way the container's processes reach them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import aiohttp
import pytest

from shared.egress import ApiAuth
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.shared.egress.conftest import OAUTH_TOKEN, PLACEHOLDER, grant

BRIDGE = Path(__file__).resolve().parents[3] / "runtime-image" / "files" / "anyon-egress-bridge"

pytestmark = pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed (apt-get install socat)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def placeholder_request(port: int) -> int:
    """What the CLI in the container sends: a Messages request with the placeholder token, to the bridge's port."""
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            f"http://127.0.0.1:{port}/v1/messages",
            json={"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {PLACEHOLDER}"},
        ) as response,
    ):
        return response.status


async def test_bridge_listens_for_each_socket_present_and_then_runs_the_command(proxy, attempt_dirs):
    ports = {"API": free_port(), "GIT": free_port(), "PROXY": free_port()}
    env = {**os.environ, "ANYON_EGRESS_DIR": str(attempt_dirs[0])}
    env.update({f"ANYON_EGRESS_{name}_PORT": str(port) for name, port in ports.items()})
    with FakeAnthropicAPI(expected_token=OAUTH_TOKEN) as api:
        g = grant("2", anthropic_url=api.url, api_auth=ApiAuth.BEARER, internal=[api.url.removeprefix("http://")])
        await proxy.open_attempt(g, attempt_dirs[0])  # api.sock and proxy.sock, no git.sock
        starter = await asyncio.create_subprocess_exec(str(BRIDGE), env=env, start_new_session=True)
        try:
            assert await asyncio.wait_for(starter.wait(), 10) == 0
            assert await placeholder_request(ports["API"]) == 200
            assert api.credentials() == {OAUTH_TOKEN}
            with pytest.raises(OSError):  # no git.sock, so no git listener
                socket.create_connection(("127.0.0.1", ports["GIT"]), timeout=2).close()

            # Again, with a command: the listeners that are up stay as they are, and the command runs.
            done = await asyncio.create_subprocess_exec(
                str(BRIDGE), "sh", "-c", "echo bridged", env=env, stdout=asyncio.subprocess.PIPE
            )
            output, _ = await asyncio.wait_for(done.communicate(), 10)
            assert (done.returncode, output) == (0, b"bridged\n")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(starter.pid, signal.SIGTERM)  # the socat listeners it left in its process group


def test_bridge_without_sockets_just_runs_the_command(tmp_path):
    env = {**os.environ, "ANYON_EGRESS_DIR": str(tmp_path)}
    done = subprocess.run([str(BRIDGE), "true"], env=env, timeout=10, check=False)
    assert done.returncode == 0


async def test_with_listen_all_the_ports_listen_before_the_sockets_exist(proxy, attempt_dirs):
    """A sealed container's main process: listeners first, sockets whenever the proxy opens (or replaces) them."""
    ports = {"API": free_port(), "GIT": free_port(), "PROXY": free_port()}
    env = {**os.environ, "ANYON_EGRESS_DIR": str(attempt_dirs[0]), "ANYON_EGRESS_LISTEN": "all"}
    env.update({f"ANYON_EGRESS_{name}_PORT": str(port) for name, port in ports.items()})
    starter = await asyncio.create_subprocess_exec(str(BRIDGE), env=env, start_new_session=True)
    try:
        assert await asyncio.wait_for(starter.wait(), 10) == 0
        assert not list(attempt_dirs[0].iterdir())  # nothing to connect to yet, yet every port listens
        for port in ports.values():
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        with FakeAnthropicAPI(expected_token=OAUTH_TOKEN) as api:
            g = grant("2", anthropic_url=api.url, api_auth=ApiAuth.BEARER, internal=[api.url.removeprefix("http://")])
            await proxy.open_attempt(g, attempt_dirs[0])
            assert await placeholder_request(ports["API"]) == 200
            assert api.credentials() == {OAUTH_TOKEN}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(starter.pid, signal.SIGTERM)


async def test_no_wait_runs_the_command_at_once_and_the_listeners_still_come_up(attempt_dirs):
    """The container's main process: it does not wait for socat (the session's first exec does)."""
    ports = {"API": free_port(), "GIT": free_port(), "PROXY": free_port(), "GITHUB_API": free_port()}
    env = {**os.environ, "ANYON_EGRESS_DIR": str(attempt_dirs[0]), "ANYON_EGRESS_LISTEN": "all"}
    env.update({f"ANYON_EGRESS_{name}_PORT": str(port) for name, port in ports.items()})
    main = await asyncio.create_subprocess_exec(
        str(BRIDGE), "--no-wait", "sh", "-c", "echo ran", env=env, stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    groups = [main.pid]
    try:
        output, _ = await asyncio.wait_for(main.communicate(), 10)
        assert (main.returncode, output) == (0, b"ran\n")
        waiter = await asyncio.create_subprocess_exec(str(BRIDGE), env=env, start_new_session=True)  # the first exec
        groups.append(waiter.pid)
        assert await asyncio.wait_for(waiter.wait(), 10) == 0
        for port in ports.values():
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
