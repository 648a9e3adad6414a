"""Readable lines from the Claude CLI's ``--output-format stream-json`` events.

Each stdout line of an agent run is one JSON event: ``system`` (init, with the session id), ``assistant`` (text and
tool calls), ``user`` (tool results), ``result`` (the end, ``is_error`` when it failed).

Read from both CLI generations (transcripts of 2.0.31 and 2.1.332 in tests/fixtures/transcripts/). 2.1.x adds
fields everywhere (ignored), ``system/api_retry`` (shown), ``rate_limit_event`` (shown unless the status is
``allowed``) and ``api_error_status``/``api_error_type`` on a failed result (kept with the error, so a rejected
credential is recognised by its status as well as by its wording). An event of a type not known here is shown
plainly (type and a clipped JSON body), and a line this module cannot render is shown as it is: never a crash,
never a lost line.

Lines are marked with plain ASCII labels (``[tool]``, ``[claude]``, ``->``), not emoji: the log is shown in
monospace fonts that often lack emoji, where they render as empty boxes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

MAX_FIELD = 2000
#: What the log shows of a tool's output; a longer one is kept whole on its own (``ToolOutput``) and its line ends
#: with a marker the attempt page turns into "show full output".
TOOL_RESULT_SHOWN = 500


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
    #: The run whose events these are (0: none; no marker is written then).
    run_id: int = 0
    #: Tool outputs longer than the log shows: ``(number, whole text)`` to keep, taken by the caller.
    full_outputs: list[tuple[int, str]] = field(default_factory=list)
    outputs_kept: int = 0


def _tool_summary(name: str, tool_input: dict) -> str:
    for key in ("command", "file_path", "path", "pattern", "url", "description"):
        if isinstance(tool_input, dict) and key in tool_input:
            return f"{name}: {_clip(str(tool_input[key]), 300)}"
    return f"{name} {_clip(tool_input, 300)}"


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


#: Bookkeeping fields left out when an unknown event is shown plainly.
_NOISE = frozenset({"type", "subtype", "session_id", "uuid", "timestamp", "parent_tool_use_id"})


def _number(value) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _plain(event: dict) -> str:
    """An event of a kind this module does not know, shown as its type and a clipped JSON body."""
    kind = str(event.get("type"))[:80]
    if isinstance(event.get("subtype"), str):
        kind += f"/{event['subtype'][:80]}"
    body = {k: v for k, v in event.items() if k not in _NOISE}
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":")) if body else ""
    return f"· {kind}{': ' + _clip(text, 300) if text else ''}\n"


def render_event(line: str, outcome: AgentOutcome) -> str | None:
    """A readable rendering of one stream-json line (None: not an event, show the line as it is).

    JSON may escape lone surrogates (``"\\ud800"``), which no database or websocket can carry as text: they become
    U+FFFD here, in the rendering and in the result text alike.
    """
    try:
        event = json.loads(line)
    except ValueError:
        return None
    except RecursionError:  # absurdly nested: not an event worth rendering
        return None
    try:
        return _render(line, event, outcome)
    except Exception:  # a shape no CLI version produced so far: the line itself is shown
        return None


def _render(line: str, event, outcome: AgentOutcome) -> str | None:
    if "\\u" in line:  # only an escape can produce a lone surrogate
        event = json.loads(_LONE_SURROGATE.sub("\ufffd", json.dumps(event, ensure_ascii=False)))
    if not isinstance(event, dict) or "type" not in event:
        return None
    kind = event.get("type")
    if event.get("session_id"):
        outcome.session_id = str(event["session_id"])[:80]
    if kind == "system":
        subtype = event.get("subtype")
        if subtype == "init":
            version = (
                f"Claude Code {_clip(str(event['claude_code_version']), 40)}, "
                if event.get("claude_code_version")
                else ""
            )
            model, cwd = _clip(str(event.get("model", "?")), 100), _clip(str(event.get("cwd", "?")), 300)
            return f"[session] started ({version}model {model}, cwd {cwd})\n"
        if subtype == "api_retry":  # 2.1.x: the API failed, the CLI waits and tries again
            status = event.get("error_status") or event.get("error") or "error"
            delay = _number(event.get("retry_delay_ms"))
            wait = f" in {delay / 1000:.1f} s" if delay is not None else ""
            attempt = f"{event.get('attempt', '?')}/{event.get('max_retries', '?')}"
            return f"[retry] API {_clip(str(status), 80)}: retry {_clip(attempt, 40)}{wait}\n"
        return ""  # compaction boundaries, hooks, status: the CLI's own bookkeeping
    if kind == "rate_limit_event":  # 2.1.x, subscription users: only a limit that bites is worth a line
        info = event.get("rate_limit_info") if isinstance(event.get("rate_limit_info"), dict) else {}
        if info.get("status") in (None, "allowed"):
            return ""
        return _plain({**info, "type": "rate limit"})
    if kind in ("assistant", "user"):
        parts = []
        message = event.get("message")
        content = (message.get("content") if isinstance(message, dict) else message) or []
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
                body = str(body or "")
                more = ""
                if len(body) > TOOL_RESULT_SHOWN and outcome.run_id:
                    outcome.outputs_kept += 1
                    outcome.full_outputs.append((outcome.outputs_kept, body))
                    more = f" [full output #{outcome.run_id}.{outcome.outputs_kept}]"
                parts.append(f"   {marker} {_clip(body, TOOL_RESULT_SHOWN)}{more}\n")
        return "".join(parts)
    if kind == "result":
        outcome.result_seen = True
        outcome.is_error = bool(event.get("is_error")) or event.get("subtype") not in (None, "success")
        outcome.result_text = _clip(str(event.get("result", "")))
        cost = _number(event.get("total_cost_usd"))
        turns = _number(event.get("num_turns"))
        usage = event.get("modelUsage") if isinstance(event.get("modelUsage"), dict) else {}
        status = "error" if outcome.is_error else "done"
        extra = ", ".join(
            x
            for x in (
                f"{turns:g} turns" if turns else "",
                f"${cost:.4f}" if cost else "",
                _clip(", ".join(str(m) for m in usage), 200),  # the models that answered (2.x)
            )
            if x
        )
        if outcome.is_error:
            outcome.errors.append(outcome.result_text or str(event.get("subtype")))
            if event.get("api_error_status") or event.get("api_error_type"):  # 2.1.x: the API's own verdict
                api_error = f"API {event.get('api_error_type') or 'error'} ({event.get('api_error_status') or '?'})"
                outcome.errors.append(_clip(api_error, 200))
        return f"[{status}]{f' ({extra})' if extra else ''}: {outcome.result_text}\n"
    return _plain(event)
