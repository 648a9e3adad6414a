"""What ``api.sock`` lets through to the Anthropic API: the requests the Claude CLI makes, and nothing that makes
Anthropic's servers reach another host.

Requests (method and the raw, undecoded origin-form target):

* ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``, with no query or ``?beta=true``;
* ``GET /v1/models`` and ``GET /v1/models/<id>``, with no query or only ``beta``/``limit``/``after_id``/``before_id``.

Everything else is refused: other paths (Files, Batches, organisations, OAuth, ...), other methods (``TRACE``,
``OPTIONS``, ...), absolute-form, authority-form and ``*`` targets, and disguised paths (``//``, dot segments,
percent-encoding, ``;`` parameters), since only the exact characters above are accepted.

Bodies of the two ``POST`` requests must be one JSON object of at most :data:`MAX_BODY` bytes, sent uncompressed.
Unless the grant allows remote fetches (the operator's ``ANYON_AGENT_API_REMOTE_FETCH``), a body is refused when
it asks Anthropic to fetch something on the agent's behalf: an image or document whose source is not inline
(``url``, ``file``: anywhere in the messages, also inside tool results and documents), ``mcp_servers``, a
``container``, or a tool that is neither a plain (client-side) tool nor tool search: ``web_fetch_*``,
``web_search_*`` (a search fetches pages too), ``code_execution_*``, ``mcp_toolset`` and any server tool this module
does not know.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

#: The Messages API's own request size limit; a larger body would be refused upstream anyway.
MAX_BODY = 32 * 1024 * 1024

_MESSAGES = {"/v1/messages", "/v1/messages/count_tokens"}
_MODELS = re.compile(r"/v1/models(?:/[A-Za-z0-9][A-Za-z0-9._:@-]{0,127})?")
_QUERY_VALUE = re.compile(r"[A-Za-z0-9_.:@-]{0,128}")
_MODELS_QUERY_KEYS = {"beta", "limit", "after_id", "before_id"}
#: Tools the CLI runs itself (the API only describes them to the model; custom tools have no type), and tool search,
#: which only searches the tool definitions of the request itself.
_CLIENT_TOOL = re.compile(r"(?:custom|(?:bash|text_editor|computer|memory|tool_search_tool_(?:regex|bm25))_\d{8})")
#: Where an image or document may come from without Anthropic fetching anything.
_INLINE_SOURCES = {"base64", "text", "content"}
_MAX_NESTING = 64


def request_problem(method: str, target: str) -> str | None:
    """Why a request to ``api.sock`` is refused by its method and raw request target, or None."""
    if not target.startswith("/"):
        return "only origin-form request targets are accepted"
    path, _, query = target.partition("?")
    if path in _MESSAGES:
        if method != "POST":
            return f"{method} is not allowed on {path}"
        if query not in ("", "beta=true"):
            return "unexpected query"
        return None
    if _MODELS.fullmatch(path):
        if method != "GET":
            return f"{method} is not allowed on {path}"
        for pair in query.split("&") if query else ():
            key, _, value = pair.partition("=")
            if key not in _MODELS_QUERY_KEYS or not _QUERY_VALUE.fullmatch(value):
                return "unexpected query"
        return None
    return "this API path is not used by the Claude CLI"


def body_problem(body: bytes, *, remote_fetch: bool) -> str | None:
    """Why a Messages (or count_tokens) body is refused, or None. ``remote_fetch`` allows what makes Anthropic reach
    other hosts; the body must still be one JSON object."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return "the body is not JSON"
    if not isinstance(payload, dict):
        return "the body is not a JSON object"
    if remote_fetch:
        return None
    if payload.get("mcp_servers"):
        return "mcp_servers make Anthropic connect to other hosts"
    if payload.get("container"):
        return "a code execution container was asked for"
    tools = payload.get("tools") or []
    if not isinstance(tools, list):
        return "tools is not a list"
    for tool in tools:
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind is not None and not (isinstance(kind, str) and _CLIENT_TOOL.fullmatch(kind)):
            return f"the server tool {str(kind)[:40]!r} makes Anthropic fetch or run things for the agent"
    return _sources_problem(payload)


def _blocks(value: Any) -> Iterator[tuple[dict[str, Any], int]]:
    if isinstance(value, list):
        for block in value:
            if isinstance(block, dict):
                yield block, 0


def _sources_problem(payload: dict[str, Any]) -> str | None:
    """An image or document anywhere in ``system`` or the messages (tool results and documents included) whose
    source Anthropic would fetch."""
    stack: list[tuple[dict[str, Any], int]] = list(_blocks(payload.get("system")))
    messages = payload.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if isinstance(message, dict):
            stack.extend(_blocks(message.get("content")))
    while stack:
        block, depth = stack.pop()
        if depth > _MAX_NESTING:
            return "content is nested too deeply"
        source = block.get("source")
        if isinstance(source, dict):
            kind = source.get("type")
            if kind not in _INLINE_SOURCES:
                return f"a {str(block.get('type'))[:20]} with a {str(kind)[:20]!r} source asks Anthropic to fetch it"
            stack.extend((inner, depth + 1) for inner, _ in _blocks(source.get("content")))
        stack.extend((inner, depth + 1) for inner, _ in _blocks(block.get("content")))
    return None
