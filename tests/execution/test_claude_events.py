"""Rendering of the Claude CLI's stream-json events, including hostile ones."""

import json

from execution.claude_events import AgentOutcome, render_event


def test_lone_surrogates_become_replacement_characters_everywhere():
    outcome = AgentOutcome()
    text = render_event(
        '{"type":"assistant","message":{"content":[{"type":"text","text":"a \\ud800 b \\u00e9 \\ud83d\\ude00"}]}}',
        outcome,
    )
    assert text == "🤖 a \ufffd b é 😀\n"
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
    assert render_event(line, outcome).startswith("✗ error (3 turns)")
    assert outcome.result_seen and outcome.is_error and outcome.session_id == "s-1"
