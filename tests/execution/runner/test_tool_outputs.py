"""Whole tool outputs kept beside the log (``ToolOutput``): the log line shows the start and names the rest, the
whole is masked and capped, and only who may see the attempt may read it (another user gets 404; staff, who may
look at any attempt, may read it too)."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User

from execution.logs.writer import TOOL_OUTPUT_MAX_CHARS
from execution.models import LogRecord, Run, ToolOutput
from tests.execution.runner.test_session import AGENT_STEP, claude_token, run  # noqa: F401 - the fixture
from tests.fakes.docker_engine import FakeEngine, ScriptedExec, agent_events


def result_event(body: str) -> dict:
    return {"type": "user", "message": {"content": [{"type": "tool_result", "content": body}]}}


def agent_with(*bodies: str) -> FakeEngine:
    events = agent_events(
        *(result_event(body) for body in bodies),
        {"type": "result", "subtype": "success", "is_error": False, "result": "ok"},
    )
    return FakeEngine(lambda argv: ScriptedExec(events) if "claude" in argv else None)


@pytest.mark.hostile
def test_a_long_output_is_kept_whole_masked_and_capped(alice, claude_token):  # noqa: F811
    # JSON escapes the token's characters here (\u0073 for "s"): the line's masking cannot see it, the whole's does.
    escaped = json.dumps(claude_token).strip('"').replace("s", "\\u0073")
    long_one = "line\n" * 200 + f"<script>{claude_token}</script>\n" + "tail"
    huge = "y" * (TOOL_OUTPUT_MAX_CHARS + 1000)
    events = [result_event("short"), result_event(long_one), result_event(huge)]
    raw = [json.dumps(e) for e in events]
    raw[1] = raw[1].replace(json.dumps(claude_token).strip('"'), escaped)
    lines = [("stdout", (line + "\n").encode()) for line in raw] + agent_events(
        {"type": "result", "subtype": "success", "is_error": False, "result": "ok"}
    )
    engine = FakeEngine(lambda argv: ScriptedExec(lines) if "claude" in argv else None)
    _, attempt = run(alice, engine, [AGENT_STEP])
    agent = Run.objects.get(attempt=attempt, kind="agent")
    log = "".join(LogRecord.objects.filter(attempt=attempt).values_list("text", flat=True))
    assert f"[full output #{agent.pk}.1]" in log and f"[full output #{agent.pk}.2]" in log
    assert "-> short\n" in log  # a short one is whole in the log: no marker
    first, second = ToolOutput.objects.filter(run=agent).order_by("number")
    assert first.text.endswith("tail") and first.text.startswith("line\n")
    assert claude_token not in first.text and "<script>***</script>" in first.text
    assert len(second.text) == TOOL_OUTPUT_MAX_CHARS and second.chars == TOOL_OUTPUT_MAX_CHARS + 1000
    assert claude_token not in log


def test_no_whole_output_is_kept_once_the_log_was_cut(alice, claude_token, settings):  # noqa: F811
    settings.ANYON_ATTEMPT_LOG_MAX_CHARS = 100
    _, attempt = run(alice, agent_with("z" * 2000, "w" * 2000), [AGENT_STEP])
    # The first line cuts the log; from then on nothing is kept beside it either.
    assert list(ToolOutput.objects.filter(attempt=attempt).values_list("number", flat=True)) == [1]


def test_the_endpoint_serves_the_owner_and_staff_and_nobody_else(alice, bob, claude_token, client):  # noqa: F811
    _, attempt = run(alice, agent_with("<b>bold</b> " + "x" * 1000), [AGENT_STEP])
    agent = Run.objects.get(attempt=attempt, kind="agent")
    url = f"/attempts/{attempt.pk}/runs/{agent.pk}/outputs/1/"
    assert client.get(url).status_code == 302  # signed out: to the sign-in page
    client.force_login(alice)
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response.json()["text"].startswith("<b>bold</b> ") and response.json()["chars"] == 1012
    assert "no-store" in response["Cache-Control"]
    assert client.get(f"/attempts/{attempt.pk}/runs/{agent.pk}/outputs/2/").status_code == 404
    assert client.post(url).status_code == 405
    client.force_login(bob)
    assert client.get(url).status_code == 404  # another user's: not found, as if it did not exist
    _, bobs = run(bob, agent_with("b" * 1000), [AGENT_STEP])
    # Alice's output under Bob's attempt's address: the output must belong to the attempt named.
    assert client.get(f"/attempts/{bobs.pk}/runs/{agent.pk}/outputs/1/").status_code == 404
    staff = User.objects.create_user("staffer", password="staff password 123", is_staff=True)
    client.force_login(staff)
    assert client.get(url).status_code == 200  # staff may look at any attempt, its log included
