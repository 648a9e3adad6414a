"""Rendering of the Claude CLI's stream-json events, including hostile ones."""

import json

from execution.claude_events import AgentOutcome, render_event


def test_lone_surrogates_become_replacement_characters_everywhere():
    outcome = AgentOutcome()
    text = render_event(
        '{"type":"assistant","message":{"content":[{"type":"text","text":"a \\ud800 b \\u00e9 \\ud83d\\ude00"}]}}',
        outcome,
    )
    assert text == "[claude] a \ufffd b é 😀\n"
    text.encode("utf-8")  # storable and sendable: a lone surrogate would raise here
    result = render_event('{"type":"result","subtype":"success","result":"done \\udc80"}', outcome)
    assert outcome.result_text == "done \ufffd" and result.endswith("done \ufffd\n")


def test_lines_that_are_not_events_are_shown_as_they_are():
    outcome = AgentOutcome()
    assert render_event("plain text", outcome) is None
    assert render_event("[1, 2]", outcome) is None
    assert render_event(json.dumps({"no": "type"}), outcome) is None
    assert render_event('{"type": "unknown"}', outcome) == ""


def test_result_event_sets_the_outcome():
    outcome = AgentOutcome()
    line = json.dumps({"type": "result", "subtype": "error_max_turns", "session_id": "s-1", "num_turns": 3})
    assert render_event(line, outcome).startswith("[error] (3 turns)")
    assert outcome.result_seen and outcome.is_error and outcome.session_id == "s-1"


def test_markers_are_plain_ascii_so_every_font_shows_them():
    """Issue 18, item 6: tool icons rendered as empty boxes in fonts without emoji. With ASCII content in, only
    ASCII comes out: the markers themselves add no emoji (nor any other non-ASCII glyph)."""
    outcome = AgentOutcome()
    events = [
        {"type": "system", "subtype": "init", "model": "m", "cwd": "/workspace", "session_id": "s"},
        {"type": "assistant", "message": {"content": [{"type": "text", "text": "Looking."}]}},
        {
            "type": "assistant",
            "message": {"content": [{"type": "tool_use", "name": "Bash", "input": {"command": "ls"}}]},
        },
        {"type": "user", "message": {"content": [{"type": "tool_result", "content": "README.md"}]}},
        {"type": "user", "message": {"content": [{"type": "tool_result", "content": "no", "is_error": True}]}},
        {"type": "result", "subtype": "success", "result": "ok", "num_turns": 2, "total_cost_usd": 0.01},
        {"type": "result", "subtype": "error_during_execution", "is_error": True, "result": "bad"},
    ]
    text = "".join(render_event(json.dumps(event), outcome) for event in events)
    assert text.isascii(), [c for c in text if not c.isascii()]
    assert "[tool] Bash: ls" in text and "[claude] Looking." in text and "-> README.md" in text
    assert "-> error: no" in text and "[done] (2 turns, $0.0100): ok" in text and "[error]" in text
