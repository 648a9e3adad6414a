"""A fake Anthropic API on 127.0.0.1 that the real Claude Code CLI can talk to (``ANTHROPIC_BASE_URL``).

It answers ``POST /v1/messages`` (any query string; the CLI sends ``?beta=true``) with the Messages API: the
server-sent event stream (``message_start`` … ``message_stop``) when the request asks for ``"stream": true``,
a plain JSON message otherwise. Replies come from a queue of scripted turns (:class:`TextReply`,
:class:`ToolUseReply`); when the queue is empty the default text (``"pong"``) answers.

Only *agent turns* take replies from the queue: requests that offer ``tools``. The CLI also makes side
requests without tools (e.g. a one-token quota probe or a topic/title classification on a small model); those
get the default text, so they cannot eat a scripted tool call. Claude Code 2.0.31 run as
``claude -p ... --output-format json`` with ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` calls only
``/v1/messages?beta=true``; other paths (``/api/hello``, ``/v1/models``, ``count_tokens``, event logging,
…) get harmless answers anyway.

With ``expected_token`` set, a request whose ``x-api-key`` or ``Authorization: Bearer`` credential differs is
answered ``401`` with Anthropic's error shape, which the CLI reports as an authentication failure.

Usage::

    with FakeAnthropicAPI(expected_token=token) as api:
        env = {"ANTHROPIC_BASE_URL": api.url}
        ...
        assert api.credentials() == {token}
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.http_server import QuietServer

DEFAULT_MODEL = "claude-sonnet-4-5-20250929"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it. Header names are lower-case; ``json`` is the parsed body (or None)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    json: Any
    credential: str | None
    auth_ok: bool

    @property
    def is_agent_turn(self) -> bool:
        """A Messages request from the agent loop (it offers tools), as opposed to a side request."""
        return self.path == "/v1/messages" and isinstance(self.json, dict) and bool(self.json.get("tools"))

    def tool_results(self) -> list[dict[str, Any]]:
        """The ``tool_result`` blocks of the last user message (what the CLI reports after a tool call)."""
        messages = (self.json or {}).get("messages") or []
        if not messages or not isinstance(messages[-1].get("content"), list):
            return []
        return [b for b in messages[-1]["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]


@dataclass(frozen=True)
class TextReply:
    """An assistant turn that ends the conversation with ``text``."""

    text: str


@dataclass(frozen=True)
class ToolUseReply:
    """An assistant turn that calls tool ``name`` (e.g. ``Write`` or ``Bash``) with ``input``.

    The CLI runs the tool (if its permission mode allows it) and sends the result in its next request, which
    takes the next scripted reply, so a script is usually ``[ToolUseReply(...), TextReply("done")]``.
    Inputs as Claude Code 2.0.31 expects them: ``Write`` ``{"file_path": "/abs/path", "content": "..."}``,
    ``Bash`` ``{"command": "...", "description": "..."}``.
    """

    name: str
    input: dict[str, Any]
    text: str | None = None  # optional text block before the tool call
    id: str = field(default_factory=lambda: f"toolu_{uuid.uuid4().hex[:24]}")


Reply = TextReply | ToolUseReply


def _credential(headers: dict[str, str]) -> str | None:
    if "x-api-key" in headers:
        return headers["x-api-key"]
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return None


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": f"req_{uuid.uuid4().hex}"}


class FakeAnthropicAPI:
    """Context manager running the fake on a free port of 127.0.0.1; ``url`` is its base URL."""

    def __init__(
        self,
        reply_text: str = "pong",
        *,
        replies: Iterable[Reply] = (),
        expected_token: str | None = None,
        delay: float = 0.0,
    ) -> None:
        self.reply_text = reply_text
        self.delay = delay  # seconds a Messages answer takes, like a model thinking
        self.expected_token = expected_token
        self._queue: deque[Reply] = deque(replies)
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server = QuietServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-anthropic", daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- test-facing API ---------------------------------------------------------------------------------
    def __enter__(self) -> FakeAnthropicAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def enqueue(self, *replies: Reply) -> None:
        """Append scripted replies for the next agent turns."""
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending_replies(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def messages_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path == "/v1/messages"]

    def credentials(self) -> set[str | None]:
        """The distinct credentials (API key or bearer token) that Messages requests carried."""
        return {r.credential for r in self.messages_requests()}

    # -- replies -----------------------------------------------------------------------------------------
    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            if request.is_agent_turn and self._queue:
                return self._queue.popleft()
        return TextReply(self.reply_text)

    @staticmethod
    def _blocks(reply: Reply) -> list[dict[str, Any]]:
        if isinstance(reply, TextReply):
            return [{"type": "text", "text": reply.text}]
        blocks: list[dict[str, Any]] = []
        if reply.text:
            blocks.append({"type": "text", "text": reply.text})
        blocks.append({"type": "tool_use", "id": reply.id, "name": reply.name, "input": reply.input})
        return blocks

    def message(self, reply: Reply, model: str) -> dict[str, Any]:
        """The non-streaming Messages API response for ``reply``."""
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": self._blocks(reply),
            "stop_reason": "tool_use" if isinstance(reply, ToolUseReply) else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5},
        }

    def events(self, reply: Reply, model: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The streaming events of the same message: text as ``text_delta``, tool input as ``input_json_delta``."""
        message = self.message(reply, model)
        start = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": 10, "output_tokens": 1}}
        yield "message_start", {"type": "message_start", "message": start}
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                empty, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": block["text"]}
            else:
                empty = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": empty}
            yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
            yield "content_block_stop", {"type": "content_block_stop", "index": index}
        yield (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": 5},
            },
        )
        yield "message_stop", {"type": "message_stop"}

    # -- HTTP --------------------------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("request-id", f"req_{uuid.uuid4().hex[:24]}")
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, payload: Any) -> None:
                self._send(status, json.dumps(payload).encode(), "application/json")

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                headers = {k.lower(): v for k, v in self.headers.items()}
                parts = urlsplit(self.path)
                credential = _credential(headers)
                auth_ok = fake.expected_token is None or credential == fake.expected_token
                request = RecordedRequest(self.command, parts.path, parts.query, headers, body, credential, auth_ok)
                with fake._lock:
                    fake._requests.append(request)
                self._route(request)

            def _route(self, request: RecordedRequest) -> None:
                path = request.path.rstrip("/")
                if path.startswith("/v1/") and not request.auth_ok:
                    # x-should-retry: the CLI would otherwise retry with backoff for minutes.
                    error = json.dumps(_error("authentication_error", "invalid x-api-key")).encode()
                    self._send(401, error, "application/json", {"x-should-retry": "false"})
                elif request.method == "POST" and path == "/v1/messages":
                    self._messages(request)
                elif request.method == "POST" and path == "/v1/messages/count_tokens":
                    self._json(200, {"input_tokens": 10})
                elif request.method == "GET" and path == "/v1/models":
                    model = {"type": "model", "id": DEFAULT_MODEL, "display_name": "Fake", "created_at": "2025-01-01"}
                    self._json(200, {"data": [model], "has_more": False, "first_id": None, "last_id": None})
                elif request.method == "GET" and path.startswith("/v1/models/"):
                    model = {"type": "model", "id": path.removeprefix("/v1/models/"), "display_name": "Fake"}
                    self._json(200, {**model, "created_at": "2025-01-01"})
                elif path in {"/api/hello", ""}:
                    self._json(200, {"message": "hello"})
                elif path.startswith("/api/"):  # event logging, metrics, settings, ...: accept and ignore
                    self._json(200, {})
                else:
                    self._json(404, _error("not_found_error", f"no route {request.method} {request.path}"))

            def _messages(self, request: RecordedRequest) -> None:
                payload = request.json if isinstance(request.json, dict) else {}
                model = str(payload.get("model") or DEFAULT_MODEL)
                reply = fake._next_reply(request)
                if fake.delay:
                    time.sleep(fake.delay)
                if not payload.get("stream"):
                    self._json(200, fake.message(reply, model))
                    return
                stream = "".join(
                    f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in fake.events(reply, model)
                )
                self._send(200, stream.encode(), "text/event-stream", {"Cache-Control": "no-cache"})

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        return Handler
