"""The attempt page in real Chromium with its live log socket connected, without Docker: the test writes the log
records and the status a worker would, and the page follows them over the websocket."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from execution.attempts.actions import do_create_task, do_start_attempt
from execution.logs.claude_events import AgentOutcome, render_event
from execution.logs.writer import LogWriter
from execution.models import Attempt, AttemptStatus, Run, RunKind, RunStatus
from tests.fixtures.browser import login
from tests.fixtures.queueing import held_from_workers

pytestmark = pytest.mark.browser

# Emoji and other pictographs: what a monospace font without an emoji fallback draws as an empty box.
PICTOGRAPH = "/[\\p{Extended_Pictographic}\\p{Emoji_Presentation}\\u{FE0F}]/u"

AGENT_EVENTS = [
    {"type": "system", "subtype": "init", "model": "claude-x", "cwd": "/workspace", "session_id": "s-1"},
    {"type": "assistant", "message": {"content": [{"type": "text", "text": "Let me look."}]}},
    {"type": "assistant", "message": {"content": [{"type": "tool_use", "name": "Bash", "input": {"command": "ls"}}]}},
    {"type": "user", "message": {"content": [{"type": "tool_result", "content": "README.md"}]}},
    {"type": "user", "message": {"content": [{"type": "tool_result", "content": "denied", "is_error": True}]}},
    {"type": "assistant", "message": {"content": [{"type": "tool_use", "name": "Edit", "input": {"file_path": "a"}}]}},
    {"type": "result", "subtype": "success", "result": "Done.", "num_turns": 3, "total_cost_usd": 0.02},
]


def running_attempt(page, asgi_server, name: str):
    user = User.objects.create_user(name, password=f"{name} password 123")
    task = do_create_task(owner=user, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p")
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    Attempt.objects.filter(pk=attempt.pk).update(status=AttemptStatus.RUNNING)
    clone = Run.objects.create(attempt=attempt, kind=RunKind.CLONE, title="Clone repository", exit_code=0)
    Run.objects.filter(pk=clone.pk).update(status=RunStatus.SUCCEEDED)
    login(page, asgi_server.url, name, f"{name} password 123")
    page.goto(f"{asgi_server.url}/attempts/{attempt.pk}/")
    page.wait_for_function("() => document.getElementById('live-state').textContent === 'live'")
    return attempt


def test_the_live_log_shows_tool_lines_without_emoji(page, asgi_server, transactional_db):
    """The agent's lines arrive over the socket and their markers are glyphs every font has."""
    attempt = running_attempt(page, asgi_server, "icons")
    agent = Run.objects.create(attempt=attempt, kind=RunKind.AGENT, title="Claude Code")
    writer = LogWriter(attempt.pk)
    outcome = AgentOutcome()
    for event in AGENT_EVENTS:
        writer.write(agent.pk, "agent", render_event(json.dumps(event), outcome))
    writer.close()
    page.wait_for_function("() => document.getElementById('log').textContent.includes('[done] (3 turns')")
    text = page.get_by_test_id("log").inner_text()
    assert "[tool] Bash: ls" in text and "[tool] Edit: a" in text and "[claude] Let me look." in text
    found = page.evaluate(f"() => document.getElementById('log').textContent.match({PICTOGRAPH}g)")
    assert found is None, found
    assert page.evaluate(f"() => {PICTOGRAPH}.test('\\u{{1F527}} Bash')")  # the check does see the old icon


def test_after_a_cancel_the_page_says_the_clone_succeeded_and_nothing_was_recorded(page, asgi_server, transactional_db):
    """The clone succeeded, then the user cancelled; the page reloads at the end (the socket says
    so) and tells what happened instead of "Changes appear here once the repository is cloned…"."""
    attempt = running_attempt(page, asgi_server, "canceller")
    note = page.get_by_test_id("changes-note")
    assert "once the repository is cloned" in note.inner_text()  # still running: the promise holds
    page.evaluate("window.__before_end = true")
    LogWriter(attempt.pk).write(None, "system", "Attempt cancelled: Cancelled by the user.\n")
    Attempt.objects.filter(pk=attempt.pk).update(status=AttemptStatus.CANCELLED, error="Cancelled by the user.")
    # The socket reports the end and the page reloads itself for the results (expect retries across the reload).
    expect(note).to_contain_text(
        "Cancelled after the repository was cloned, before any changes were recorded", timeout=15_000
    )
    assert page.evaluate("window.__before_end") is None  # it is the reloaded page that says so
    assert page.get_by_test_id("attempt-status").get_attribute("data-status") == "cancelled"
    assert "once the repository is cloned" not in page.content()


def test_an_attempt_that_ends_before_the_socket_opens_still_reloads_for_its_results(
    page, asgi_server, transactional_db
):
    """The page was rendered while the attempt ran; it ended before the log socket connected, so the socket's first
    status is already final. The page must still reload once for the results (it used to stay as rendered)."""
    user = User.objects.create_user("racer", password="racer password 123")
    task = do_create_task(owner=user, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p")
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    Attempt.objects.filter(pk=attempt.pk).update(status=AttemptStatus.RUNNING)
    Run.objects.create(attempt=attempt, kind=RunKind.CLONE, title="Clone repository", status=RunStatus.SUCCEEDED)
    login(page, asgi_server.url, "racer", "racer password 123")
    held, released = [], []

    def hold(ws) -> None:  # the first socket waits until the test lets it through; later ones connect at once
        if released:
            ws.connect_to_server()
        else:
            held.append(ws)

    page.route_web_socket("**/ws/attempts/**", hold)
    page.goto(f"{asgi_server.url}/attempts/{attempt.pk}/")
    page.evaluate("window.__first_render = true")
    Attempt.objects.filter(pk=attempt.pk).update(status=AttemptStatus.CANCELLED, error="Cancelled by the user.")
    released.append(True)
    for ws in held:
        ws.connect_to_server()
    expect(page.get_by_test_id("changes-note")).to_contain_text("Cancelled after the repository was cloned")
    assert page.evaluate("window.__first_render") is None


def test_a_waiting_attempt_says_so_and_the_note_goes_when_it_gets_its_slot(
    page, asgi_server, transactional_db, settings, monkeypatch
):
    """ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER: the page of an attempt queued behind the user's others says so, and the
    note goes live when the earlier attempt ends and this one is handed to the queue."""
    from execution.attempts.actions import do_transition

    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: None)  # no worker in this test
    settings.ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER = 1
    user = User.objects.create_user("patient", password="patient password 123")
    task = do_create_task(owner=user, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p")
    first, second = do_start_attempt(task=task), do_start_attempt(task=task)
    assert second.waiting_for_slot
    login(page, asgi_server.url, "patient", "patient password 123")
    page.goto(f"{asgi_server.url}/attempts/{second.pk}/")
    page.wait_for_function("() => document.getElementById('live-state').textContent === 'live'")
    note = page.get_by_test_id("attempt-waiting")
    expect(note).to_contain_text("Queued behind your other attempts (1 ahead of it")
    do_transition(attempt=first, to=AttemptStatus.CANCELLED)
    expect(note).to_be_hidden(timeout=10_000)
    assert page.get_by_test_id("attempt-status").get_attribute("data-status") == "queued"
