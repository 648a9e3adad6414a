"""``api.sock``: the placeholder is swapped for the real credential of the grant's kind, anything else is refused, and
Server-Sent Events flow through event by event."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from aiohttp import web

from shared.egress import API_SOCKET, ApiAuth, Service
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.shared.egress.conftest import API_KEY, OAUTH_TOKEN, PLACEHOLDER, grant, unix_session

MESSAGES = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 16,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}


def api_grant(attempt_id: str, url: str, auth: ApiAuth = ApiAuth.API_KEY):
    return grant(attempt_id, anthropic_url=url, api_auth=auth, internal=[url.removeprefix("http://")])


@pytest.mark.parametrize(
    ("attempt_id", "auth", "header", "real"),
    [
        ("1", ApiAuth.API_KEY, ("x-api-key", PLACEHOLDER), API_KEY),
        ("2", ApiAuth.BEARER, ("Authorization", f"Bearer {PLACEHOLDER}"), OAUTH_TOKEN),
    ],
    ids=["api-key", "setup-token"],
)
async def test_placeholder_is_swapped_for_the_real_credential(
    proxy, attempt_dirs, caplog, attempt_id, auth, header, real
):
    caplog.set_level(logging.DEBUG)
    with FakeAnthropicAPI(expected_token=real) as api:
        paths = await proxy.open_attempt(api_grant(attempt_id, api.url, auth), attempt_dirs[0])
        async with (
            unix_session(paths[API_SOCKET]) as client,
            client.post("http://bridge/v1/messages?beta=true", json=MESSAGES, headers=dict([header])) as response,
        ):
            body = await response.text()
        assert response.status == 200, body
        assert "message_stop" in body and "pong" in body
        assert api.credentials() == {real}
        (request,) = api.requests
        assert request.query == "beta=true"
        assert PLACEHOLDER not in json.dumps(request.headers)
        assert request.headers["host"] == api.url.removeprefix("http://")
    assert "egress forwarded POST" in caplog.text
    assert real not in caplog.text  # debug logging on, and still no credential in the logs


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": API_KEY},  # a real-looking key the agent found somewhere: not ours to forward
        {"x-api-key": PLACEHOLDER + "x"},
        {"Authorization": f"Bearer {PLACEHOLDER}"},  # the other kind
        {"x-api-key": PLACEHOLDER, "Authorization": "Bearer sk-ant-oat01-stolen"},
    ],
    ids=["none", "real-key", "near-miss", "wrong-kind", "extra-bearer"],
)
async def test_a_request_without_exactly_the_placeholder_is_refused(proxy, attempt_dirs, credentials, headers):
    with FakeAnthropicAPI() as api:
        paths = await proxy.open_attempt(api_grant("1", api.url), attempt_dirs[0])
        async with (
            unix_session(paths[API_SOCKET]) as client,
            client.post("http://bridge/v1/messages", json=MESSAGES, headers=headers) as response,
        ):
            payload = await response.json()
        assert response.status == 403
        assert response.headers["x-should-retry"] == "false"
        assert payload["error"]["type"] == "permission_error"
        assert api.requests == []
        assert credentials.calls == []  # refused before any decrypt


async def test_two_attempts_at_once_each_reach_upstream_with_only_their_own_credential(proxy, attempt_dirs):
    with FakeAnthropicAPI() as api_one, FakeAnthropicAPI() as api_two:
        one = await proxy.open_attempt(api_grant("1", api_one.url), attempt_dirs[0])
        two = await proxy.open_attempt(api_grant("2", api_two.url, ApiAuth.BEARER), attempt_dirs[1])

        async def calls(path, headers, n=5):
            async with unix_session(path) as client:
                for _ in range(n):
                    async with client.post("http://bridge/v1/messages", json=MESSAGES, headers=headers) as response:
                        assert response.status == 200
                        await response.read()

        await asyncio.gather(
            calls(one[API_SOCKET], {"x-api-key": PLACEHOLDER}),
            calls(two[API_SOCKET], {"Authorization": f"Bearer {PLACEHOLDER}"}),
        )
        assert api_one.credentials() == {API_KEY}
        assert api_two.credentials() == {OAUTH_TOKEN}
        assert len(api_one.requests) == len(api_two.requests) == 5


async def test_the_credential_source_refusing_means_403_and_no_upstream_request(proxy, attempt_dirs, credentials):
    del credentials.values[("1", Service.ANTHROPIC)]  # e.g. the user disconnected Claude mid-run
    with FakeAnthropicAPI() as api:
        paths = await proxy.open_attempt(api_grant("1", api.url), attempt_dirs[0])
        async with (
            unix_session(paths[API_SOCKET]) as client,
            client.post("http://bridge/v1/messages", json=MESSAGES, headers={"x-api-key": PLACEHOLDER}) as response,
        ):
            assert response.status == 403
        assert api.requests == []


async def test_server_sent_events_arrive_before_the_upstream_finishes(proxy, attempt_dirs):
    """The upstream holds the rest of its stream until the client has seen the first event: only streaming passes."""
    first_seen = asyncio.Event()

    async def messages(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'event: message_start\ndata: {"type": "message_start"}\n\n')
        await asyncio.wait_for(first_seen.wait(), 10)
        await response.write(b'event: message_stop\ndata: {"type": "message_stop"}\n\n')
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    try:
        paths = await proxy.open_attempt(api_grant("1", url), attempt_dirs[0])
        async with (
            unix_session(paths[API_SOCKET]) as client,
            client.post("http://bridge/v1/messages", json=MESSAGES, headers={"x-api-key": PLACEHOLDER}) as response,
        ):
            first = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5)
            assert b"message_start" in first
            first_seen.set()
            rest = await asyncio.wait_for(response.content.read(), 5)
        assert b"message_stop" in rest
    finally:
        await runner.cleanup()
