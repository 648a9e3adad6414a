"""Readable lines from the Claude CLI's ``--output-format stream-json`` events.

Each stdout line of an agent run is one JSON event: ``system`` (init, with the session id), ``assistant`` (text and
tool calls), ``user`` (tool results), ``result`` (the end, ``is_error`` when it failed).

Lines are marked with plain ASCII labels (``[tool]``, ``[claude]``, ``->``), not emoji: the log is shown in
monospace fonts that often lack emoji, where they render as empty boxes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

MAX_FIELD = 2000


def _clip(text: str, limit: int = MAX_FIELD) -> str:
    text = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + f" … ({len(text) - limit} more characters)"


@dataclass
class AgentOutcome:
    session_id: str = ""
    result_seen: bool = False
    is_error: bool = False
    result_text: str = ""
    errors: list[str] = field(default_factory=list)


def _tool_summary(name: str, tool_input: dict) -> str:
    for key in ("command", "file_path", "path", "pattern", "url", "description"):
        if isinstance(tool_input, dict) and key in tool_input:
            return f"{name}: {_clip(str(tool_input[key]), 300)}"
    return f"{name} {_clip(tool_input, 300)}"


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def render_event(line: str, outcome: AgentOutcome) -> str | None:
    """A readable rendering of one stream-json line (None: not an event, show the line as it is).

    JSON may escape lone surrogates (``"\\ud800"``), which no database or websocket can carry as text: they become
    U+FFFD here, in the rendering and in the result text alike.
    """
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if "\\u" in line:  # only an escape can produce a lone surrogate
        event = json.loads(_LONE_SURROGATE.sub("\ufffd", json.dumps(event, ensure_ascii=False)))
    if not isinstance(event, dict) or "type" not in event:
        return None
    kind = event.get("type")
    if event.get("session_id"):
        outcome.session_id = str(event["session_id"])[:80]
    if kind == "system":
        if event.get("subtype") == "init":
            return f"[session] started (model {event.get('model', '?')}, cwd {event.get('cwd', '?')})\n"
        return ""
    if kind in ("assistant", "user"):
        parts = []
        content = (event.get("message") or {}).get("content") or []
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and kind == "assistant":
                parts.append(f"[claude] {_clip(block.get('text', ''))}\n")
            elif block.get("type") == "tool_use":
                parts.append(f"[tool] {_tool_summary(str(block.get('name', 'tool')), block.get('input') or {})}\n")
            elif block.get("type") == "tool_result":
                body = block.get("content")
                if isinstance(body, list):
                    body = " ".join(str(b.get("text", "")) for b in body if isinstance(b, dict))
                marker = "-> error:" if block.get("is_error") else "->"
                parts.append(f"   {marker} {_clip(str(body or ''), 500)}\n")
        return "".join(parts)
    if kind == "result":
        outcome.result_seen = True
        outcome.is_error = bool(event.get("is_error")) or event.get("subtype") not in (None, "success")
        outcome.result_text = _clip(str(event.get("result", "")))
        cost = event.get("total_cost_usd")
        turns = event.get("num_turns")
        status = "error" if outcome.is_error else "done"
        extra = ", ".join(x for x in (f"{turns} turns" if turns else "", f"${cost:.4f}" if cost else "") if x)
        if outcome.is_error:
            outcome.errors.append(outcome.result_text or str(event.get("subtype")))
        return f"[{status}]{f' ({extra})' if extra else ''}: {outcome.result_text}\n"
    return ""
