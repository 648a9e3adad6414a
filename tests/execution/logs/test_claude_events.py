"""Rendering of the Claude CLI's stream-json events: the real transcripts of both CLI generations
(tests/fixtures/transcripts/), and hostile or unknown events."""

import json
from pathlib import Path

import pytest

from execution.logs.claude_events import AgentOutcome, render_event
from execution.runner.outcomes import CLAUDE_AUTH_ERROR

TRANSCRIPTS = Path(__file__).resolve().parents[2] / "fixtures" / "transcripts"
VERSIONS = ("2.0.31", "2.1.332")


def replay(version: str, name: str) -> tuple[list[str | None], AgentOutcome, list[dict]]:
    """Every line of a checked-in transcript through render_event, as the runner feeds them."""
    outcome = AgentOutcome()
    lines = (TRANSCRIPTS / version / f"{name}.jsonl").read_text().splitlines()
    assert lines, f"empty transcript {version}/{name}"
    return [render_event(line, outcome) for line in lines], outcome, [json.loads(line) for line in lines]


@pytest.mark.parametrize("version", VERSIONS)
def test_tool_use_transcript(version):
    rendered, outcome, events = replay(version, "tool_use")
    assert None not in rendered, "every line of a real transcript is an event"
    text = "".join(rendered)
    assert f"[session] started (Claude Code {version}, model {events[0]['model']}, cwd /workspace)" in text
    assert "[claude] On it.\n" in text
    assert "[tool] Bash: echo transcript > note.txt && cat note.txt\n" in text
    assert "   -> transcript\n" in text
    assert outcome.result_seen and not outcome.is_error and not outcome.errors
    assert outcome.result_text == "Wrote note.txt."
    assert outcome.session_id == events[0]["session_id"]
    done = rendered[-1]
    cost = events[-1]["total_cost_usd"]
    assert done.startswith(f"[done] (2 turns, ${cost:.4f}, ") and done.endswith(": Wrote note.txt.\n")
    for model in events[-1]["modelUsage"]:  # model and cost: what the attempt page shows of the run
        assert model in done


@pytest.mark.parametrize("version", VERSIONS)
def test_resume_transcript_continues_the_session(version):
    _, first, _ = replay(version, "tool_use")
    rendered, outcome, _ = replay(version, "resume")
    assert None not in rendered
    assert outcome.result_seen and not outcome.is_error and outcome.result_text == "The note says: transcript."
    assert outcome.session_id == first.session_id  # what the next --resume uses


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", ["auth_failure", "oauth_auth_failure"])
def test_rejected_credential_is_recognised(version, name):
    """The worker marks the credential expired when the error matches CLAUDE_AUTH_ERROR: true for the API key
    and the subscription token wording of both generations."""
    rendered, outcome, events = replay(version, name)
    assert None not in rendered
    assert outcome.result_seen and outcome.is_error
    assert CLAUDE_AUTH_ERROR.search("; ".join(outcome.errors)), outcome.errors
    assert rendered[-1].startswith("[error]")
    if version != "2.0.31":  # 2.1.x also says so in fields, whatever the wording
        assert "API authentication_error (401)" in outcome.errors
    assert json.loads(json.dumps(events[-1]))["is_error"] is True


def test_the_two_failure_wordings_differ_but_both_match():
    results = {(v, n): replay(v, n)[1].result_text for v in VERSIONS for n in ("auth_failure", "oauth_auth_failure")}
    assert results[("2.0.31", "auth_failure")] == results[("2.1.332", "auth_failure")]
    assert len(set(results.values())) == 3  # the 2.1.x subscription wording is new: "Not logged in"
    assert all(CLAUDE_AUTH_ERROR.search(text) for text in results.values())


def test_new_events_of_2_1():
    rendered, outcome, events = replay("2.1.332", "oauth")
    kinds = [e["type"] for e in events]
    assert "rate_limit_event" in kinds
    assert rendered[kinds.index("rate_limit_event")] == ""  # status allowed: nothing to say
    assert outcome.result_text == "pong" and not outcome.is_error
    rendered, _, events = replay("2.1.332", "oauth_auth_failure")
    retries = [r for r, e in zip(rendered, events, strict=True) if e.get("subtype") == "api_retry"]
    assert retries and retries[0].startswith("[retry] API 401: retry 1/10 in ")


def test_a_rate_limit_that_bites_is_shown():
    outcome = AgentOutcome()
    line = json.dumps({"type": "rate_limit_event", "rate_limit_info": {"status": "rejected", "resetsAt": 1790000000}})
    assert render_event(line, outcome) == '· rate limit: {"status":"rejected","resetsAt":1790000000}\n'


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


@pytest.mark.hostile
def test_unknown_events_are_shown_plainly():
    outcome = AgentOutcome()
    assert render_event('{"type": "unknown"}', outcome) == "· unknown\n"
    line = json.dumps({"type": "tool_progress", "subtype": "tick", "uuid": "u", "session_id": "s", "pct": 50})
    assert render_event(line, outcome) == '· tool_progress/tick: {"pct":50}\n'
    assert render_event(json.dumps({"type": "x", "blob": "y" * 5000}), outcome).endswith("more characters)\n")
    assert render_event('{"type": "system", "subtype": "compact_boundary"}', outcome) == ""  # bookkeeping


@pytest.mark.parametrize(
    "event",
    [
        {"type": "assistant", "message": "just a string"},
        {"type": "assistant", "message": {"content": [{"type": "tool_use", "name": None, "input": "x"}]}},
        {"type": "user", "message": {"content": [{"type": "tool_result", "content": [1, None, {"text": 2}]}]}},
        {"type": "result", "total_cost_usd": "free", "num_turns": [], "modelUsage": "none", "is_error": False},
        {"type": "system", "subtype": "api_retry", "retry_delay_ms": "soon"},
        {"type": "rate_limit_event", "rate_limit_info": ["odd"]},
        {"type": {"nested": True}},
        {"type": "system", "subtype": "init", "model": {"a": 1}, "claude_code_version": 3},
    ],
)
def test_odd_shapes_never_crash(event):
    rendered = render_event(json.dumps(event), AgentOutcome())
    assert rendered is None or isinstance(rendered, str)


def test_result_event_sets_the_outcome():
    outcome = AgentOutcome()
    line = json.dumps({"type": "result", "subtype": "error_max_turns", "session_id": "s-1", "num_turns": 3})
    assert render_event(line, outcome).startswith("[error] (3 turns)")
    assert outcome.result_seen and outcome.is_error and outcome.session_id == "s-1"


def test_markers_are_plain_ascii_so_every_font_shows_them():
    """Tool icons once rendered as empty boxes in fonts without emoji. With ASCII content in, only
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
