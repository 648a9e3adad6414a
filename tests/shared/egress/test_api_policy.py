"""``api.sock`` lets through only what the Claude CLI sends: a hostile agent holding the placeholder reaches no other
Anthropic endpoint, and no request body makes Anthropic's servers fetch a URL or reach an MCP server (unless the
operator allows remote fetches). Requests go out as raw bytes, so the proxy sees exactly the target an attacker wrote.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from shared.egress import API_SOCKET, Service
from shared.egress.anthropic_policy import body_problem, request_problem
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.shared.egress.conftest import API_KEY, PLACEHOLDER, grant

pytestmark = pytest.mark.hostile  # attacks: counted in docs/QA_CHECKLIST.md

TURN = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def api_grant(url: str, **changes):
    return grant("1", anthropic_url=url, internal=[url.removeprefix("http://")], **changes)


async def raw_request(path, method: str, target: str, body: bytes = b"", headers: dict | None = None):
    """One request written by hand on a fresh connection; returns (status, headers text, body bytes)."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    head = {"Host": "bridge", "x-api-key": PLACEHOLDER, "Content-Length": str(len(body)), "Connection": "close"}
    head.update(headers or {})
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in head.items()), "", ""]
    writer.write("\r\n".join(lines).encode() + body)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head_text, _, payload = answer.partition(b"\r\n\r\n")
    status = int(head_text.split()[1]) if head_text else 0
    return status, head_text.decode("latin-1"), payload


ALLOWED = [
    ("POST", "/v1/messages?beta=true"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens?beta=true"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models?limit=1000"),
    ("GET", "/v1/models/claude-sonnet-4-5-20250929"),
]
REFUSED = [
    ("GET", "/v1/files"),
    ("POST", "/v1/files"),
    ("GET", "/v1/organizations/me"),
    ("POST", "/v1/messages/batches"),
    ("GET", "/v1/messages/batches"),
    ("POST", "/v1/oauth/token"),
    ("POST", "/api/oauth/claude_cli/create_api_key"),
    ("GET", "/api/oauth/profile"),
    ("GET", "/api/hello"),
    ("TRACE", "/v1/messages"),
    ("OPTIONS", "/v1/messages"),
    ("GET", "/v1/messages"),
    ("PUT", "/v1/messages"),
    ("DELETE", "/v1/models/claude-sonnet-4-5"),
    ("POST", "/v1/models"),
    ("OPTIONS", "*"),
    ("POST", "http://api.anthropic.com/v1/messages"),  # absolute-form
    ("POST", "http://127.0.0.1:1/v1/messages"),
    ("CONNECT", "api.anthropic.com:443"),  # authority-form
    ("POST", "//v1/messages"),
    ("POST", "/v1//messages"),
    ("POST", "/v1/messages/../files"),
    ("GET", "/v1/models/../files"),
    ("GET", "/v1/models/.."),
    ("POST", "/v1/./messages"),
    ("POST", "/v1%2fmessages"),
    ("POST", "/v1/messages%2f..%2ffiles"),
    ("GET", "/v1/models/%2e%2e/files"),
    ("POST", "/v1/messages;x=1"),
    ("GET", "/v1/models;/../files"),
    ("POST", "/v1/messages/batches?beta=true"),
    ("POST", "/v1/messages?beta=true&x=/v1/files"),
    ("GET", "/v1/models?after_id=../files"),
    ("POST", "/V1/MESSAGES"),
    ("GET", "/v1/files/file_01/content"),
    ("GET", "/v1/skills"),
    ("POST", "/v1/complete"),
]


@pytest.mark.parametrize(("method", "target"), ALLOWED, ids=[f"{m} {t}" for m, t in ALLOWED])
async def test_the_cli_requests_reach_the_api_with_the_real_credential(proxy, attempt_dirs, blocked, method, target):
    with FakeAnthropicAPI(expected_token=API_KEY) as api:
        paths = await proxy.open_attempt(api_grant(api.url), attempt_dirs[0])
        body = json.dumps(TURN).encode() if method == "POST" else b""
        status, _head, payload = await raw_request(paths[API_SOCKET], method, target, body)
        assert status == 200, payload
        (seen,) = api.requests
        assert (seen.method, seen.path) == (method, target.partition("?")[0])
        assert seen.credential == API_KEY
    assert blocked.events == []


@pytest.mark.parametrize(("method", "target"), REFUSED, ids=[f"{m} {t}" for m, t in REFUSED])
async def test_every_other_request_is_refused_before_any_decrypt(
    proxy, attempt_dirs, credentials, blocked, method, target
):
    with FakeAnthropicAPI() as api:
        paths = await proxy.open_attempt(api_grant(api.url), attempt_dirs[0])
        body = json.dumps(TURN).encode() if method in ("POST", "PUT") else b""
        status, head, payload = await raw_request(paths[API_SOCKET], method, target, body)
        assert status in (400, 403), payload
        if status == 403:
            error = json.loads(payload)
            assert error["type"] == "error" and error["error"]["type"] == "permission_error"
            assert "x-should-retry: false" in head.lower()
            ((attempt, host, port, reason),) = blocked.events  # recorded on the attempt
            assert attempt == "1" and (host, port) == ("127.0.0.1", int(api.url.rsplit(":", 1)[1]))
            assert reason.startswith("refused ")
        assert api.requests == []
    assert credentials.calls == []


IMAGE_URL = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
DOC_URL = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
INLINE_IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}


def turn(content=None, **extra):
    content = content if content is not None else [{"type": "text", "text": "hi"}]
    return {**TURN, "messages": [{"role": "user", "content": content}], **extra}


def tool_result(*blocks):
    return {"type": "tool_result", "tool_use_id": "toolu_1", "content": list(blocks)}


FETCHING_BODIES = {
    "image-url": turn([IMAGE_URL]),
    "document-url": turn([DOC_URL]),
    "image-url-in-tool-result": turn([tool_result({"type": "text", "text": "see"}, IMAGE_URL)]),
    "document-url-in-document-content": turn(
        [{"type": "document", "source": {"type": "content", "content": [IMAGE_URL]}}]
    ),
    "file-source": turn([{"type": "image", "source": {"type": "file", "file_id": "file_011"}}]),
    "mcp-servers": turn(mcp_servers=[{"type": "url", "url": "https://example.com/mcp", "name": "x"}]),
    "web-fetch-tool": turn(tools=[{"type": "web_fetch_20250910", "name": "web_fetch"}]),
    "web-search-tool": turn(tools=[{"type": "web_search_20250305", "name": "web_search"}]),
    "code-execution-tool": turn(tools=[{"type": "code_execution_20250825", "name": "code_execution"}]),
    "mcp-toolset": turn(tools=[{"type": "mcp_toolset", "mcp_server_name": "x"}]),
    "unknown-server-tool": turn(tools=[{"type": "url_context_20990101", "name": "u"}]),
    "container": turn(container="container_011"),
}


@pytest.mark.parametrize("name", list(FETCHING_BODIES))
@pytest.mark.parametrize("target", ["/v1/messages?beta=true", "/v1/messages/count_tokens?beta=true"])
async def test_a_body_that_makes_anthropic_fetch_is_refused_unless_the_operator_allows_it(
    proxy, attempt_dirs, blocked, name, target
):
    body = json.dumps(FETCHING_BODIES[name]).encode()
    with FakeAnthropicAPI() as api:
        paths = await proxy.open_attempt(api_grant(api.url), attempt_dirs[0])
        status, _head, payload = await raw_request(paths[API_SOCKET], "POST", target, body)
        assert status == 403, payload
        assert json.loads(payload)["error"]["type"] == "permission_error"
        assert api.requests == []
        assert len(blocked.events) == 1
        # With ANYON_AGENT_API_REMOTE_FETCH the same body goes through, byte for byte.
        paths = await proxy.open_attempt(api_grant(api.url, api_remote_fetch=True), attempt_dirs[0])
        status, _head, payload = await raw_request(paths[API_SOCKET], "POST", target, body)
        assert status == 200, payload
        (seen,) = api.requests
        assert seen.json == FETCHING_BODIES[name]


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'"text"', b"", b"[" * 100_000 + b"]" * 100_000],
    ids=["broken", "array", "string", "empty", "deep"],
)
@pytest.mark.parametrize("remote_fetch", [False, True])
async def test_an_unparseable_body_is_refused(proxy, attempt_dirs, body, remote_fetch):
    with FakeAnthropicAPI() as api:
        paths = await proxy.open_attempt(api_grant(api.url, api_remote_fetch=remote_fetch), attempt_dirs[0])
        status, _head, payload = await raw_request(paths[API_SOCKET], "POST", "/v1/messages", body)
        assert status == 400, payload
        assert json.loads(payload)["error"]["type"] == "invalid_request_error"
        assert api.requests == []


async def test_an_oversized_or_compressed_body_is_refused(proxy, attempt_dirs):
    with FakeAnthropicAPI() as api:
        paths = await proxy.open_attempt(api_grant(api.url), attempt_dirs[0])
        big = b'{"x": "' + b"a" * (33 * 1024 * 1024) + b'"}'
        status, _h, _p = await raw_request(paths[API_SOCKET], "POST", "/v1/messages", big)
        assert status == 413
        body = json.dumps(turn([IMAGE_URL])).encode()
        status, _h, _p = await raw_request(
            paths[API_SOCKET], "POST", "/v1/messages", body, {"Content-Encoding": "gzip"}
        )
        assert status == 415
        assert api.requests == []


def test_what_the_cli_sends_passes_the_body_check():
    """A turn as the Claude CLI builds it: inline images, tool results with text and images, custom tools."""
    body = turn(
        [
            INLINE_IMAGE,
            tool_result({"type": "text", "text": "ok"}, INLINE_IMAGE),
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}},
            {"type": "text", "text": 'a prompt that quotes {"source": {"type": "url"}} is only text'},
        ],
        system=[{"type": "text", "text": "You are Claude Code", "cache_control": {"type": "ephemeral"}}],
        tools=[
            {"name": "Bash", "description": "run", "input_schema": {"type": "object"}},
            {"type": "custom", "name": "Mine", "input_schema": {"type": "object"}},
            {"type": "bash_20250124", "name": "bash"},
            {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
            {"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"},
        ],
        stream=True,
    )
    write = {"type": "tool_use", "id": "t", "name": "Write", "input": {"source": {"type": "url"}}}  # data, not a fetch
    body["messages"].insert(0, {"role": "assistant", "content": [write]})
    assert body_problem(json.dumps(body).encode(), remote_fetch=False) is None
    assert request_problem("POST", "/v1/messages?beta=true") is None


async def test_a_burst_of_requests_is_a_few_decrypts_and_every_request_is_counted(proxy, attempt_dirs, credentials):
    uses: list[tuple[str, Service, int]] = []
    proxy.on_credential_uses = lambda attempt, service, n: uses.append((attempt, service, n))
    with FakeAnthropicAPI(expected_token=API_KEY) as api:
        paths = await proxy.open_attempt(api_grant(api.url), attempt_dirs[0])
        body = json.dumps(TURN).encode()
        results = await asyncio.gather(
            *(raw_request(paths[API_SOCKET], "POST", "/v1/messages", body) for _ in range(40))
        )
        assert [status for status, _h, _p in results] == [200] * 40
        assert api.credentials() == {API_KEY}
        await proxy.close_attempt("1")
    decrypts = [call for call in credentials.calls if call == ("1", Service.ANTHROPIC)]
    assert 1 <= len(decrypts) <= 3  # one per cache period (10 s), not one per request
    assert sum(n for _a, _s, n in uses) == 40 and len(uses) == len(decrypts)
