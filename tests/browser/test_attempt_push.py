"""The attempt page in real Chromium: what a push sends (the branch, the commits and their authors, the agent's own
commits and a branch switch) and the whole of a long tool output, opened on demand and loaded only then. Both
arrive over the live socket, which neither collapses what the user opened nor reloads the page under them."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import User
from django.db import connection
from playwright.sync_api import expect

from execution.attempts.actions import do_create_task, do_start_attempt, do_transition
from execution.attempts.runs import do_record_results, do_record_tool_output
from execution.git.commit_list import parse
from execution.logs.writer import LogWriter
from execution.models import Attempt, AttemptStatus, Run, RunKind
from execution.runner import run_attempt
from shared.masking import Masker
from tests.execution.conftest import world  # noqa: F401 - the fixture
from tests.execution.runner.test_push_summary_docker import AGENT_GIT
from tests.fakes.anthropic_api import TextReply, ToolUseReply
from tests.fixtures.browser import login
from tests.fixtures.queueing import held_from_workers

pytestmark = pytest.mark.browser

WHOLE = "".join(f"line {i}\n" for i in range(1, 301))


def open_live(page, server, user: User, password: str, attempt) -> None:
    login(page, server.url, user.get_username(), password)
    page.goto(f"{server.url}/attempts/{attempt.pk}/")
    page.wait_for_function("() => document.getElementById('live-state').textContent === 'live'")


def test_a_full_output_loads_when_opened_and_stays_open_while_the_log_and_the_push_arrive(
    page, asgi_server, transactional_db
):
    user = User.objects.create_user("reader", password="reader password 123")
    task = do_create_task(owner=user, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p")
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    do_transition(attempt=attempt, to=AttemptStatus.PROVISIONING)
    do_transition(attempt=attempt, to=AttemptStatus.RUNNING)
    agent = Run.objects.create(attempt=attempt, kind=RunKind.AGENT, title="Claude Code")
    open_live(page, asgi_server, user, "reader password 123", attempt)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/outputs/" in request.url else None)

    do_record_tool_output(run=agent, number=1, text="<b>" + WHOLE, chars=len(WHOLE) + 3)
    writer = LogWriter(attempt.pk)
    writer.write(agent.pk, "agent", f"   -> <b>line 1 … (2000 more characters) [full output #{agent.pk}.1]\n")
    writer.flush()
    summary = page.get_by_text("show full output")
    expect(summary).to_be_visible()
    output = page.get_by_test_id("full-output")
    assert asked == [] and output.locator("pre").inner_text() == ""  # nothing loaded until it is opened
    summary.click()
    expect(output.locator("pre")).to_contain_text("line 300")
    assert output.locator("pre").inner_text().startswith("<b>line 1")  # shown as text, not markup
    assert len(asked) == 1 and asked[0].endswith(f"/attempts/{attempt.pk}/runs/{agent.pk}/outputs/1/")

    writer.write(agent.pk, "agent", "[claude] More work after it.\n")
    writer.close()
    expect(page.get_by_test_id("log")).to_contain_text("More work after it.")
    found = parse(
        f"refs/heads/other\n2\n{'a' * 40}\x1fAnyon\x1fa@x\x1fAnyon\x1fa@x\x1fdemo\0"
        f"{'b' * 40}\x1f<i>Eve</i>\x1fe@x\x1f<i>Eve</i>\x1fe@x\x1fmine\0",
        masker=Masker(),
        branch=attempt.branch,
        head="a" * 40,
        own_commits={"a" * 40},
    )
    do_record_results(
        attempt=attempt, base_commit="c" * 40, head_commit="a" * 40, diff=[], diff_truncated=False, push_summary=found
    )
    do_transition(attempt=attempt, to=AttemptStatus.SUCCEEDED)
    # The end does not reload the page under the opened output: it offers the reload instead.
    expect(page.get_by_test_id("live-state")).to_have_text("complete: reload the page for the results")
    push = page.get_by_test_id("push")
    expect(push).to_contain_text("switched to the branch other")
    expect(push).to_contain_text("1 commit not made by Anyon")
    assert page.get_by_test_id("push-commits").locator("tbody tr").count() == 2
    expect(push.locator("tbody tr").nth(1)).to_contain_text("<i>Eve</i> <e@x>")
    assert push.locator("i").count() == 0  # the agent's text stays text
    assert output.evaluate("el => el.open") and "line 300" in output.locator("pre").inner_text()


def test_another_user_cannot_load_the_output(page, asgi_server, transactional_db):
    owner = User.objects.create_user("owner1", password="owner1 password 123")
    task = do_create_task(owner=owner, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p")
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    agent = Run.objects.create(attempt=attempt, kind=RunKind.AGENT, title="Claude Code")
    do_record_tool_output(run=agent, number=1, text="private", chars=7)
    User.objects.create_user("other1", password="other1 password 123")
    login(page, asgi_server.url, "other1", "other1 password 123")
    response = page.request.get(f"{asgi_server.url}/attempts/{attempt.pk}/runs/{agent.pk}/outputs/1/")
    assert response.status == 404 and "private" not in response.text()


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_the_agents_own_commits_and_branch_switch_arrive_live_with_a_full_output(page, asgi_server, world, github):  # noqa: F811
    """The real runner and CLI: the agent prints a long output, commits under another author, switches branches
    and leaves a change for Anyon's commit. The user opens the long output while the run goes on; the push
    section arrives live with every commit and author, and the page keeps the opened output."""
    github.add_token(world.github_token, login="alice-gh")
    repo = github.add_repo("acme", "widgets", {"README.md": "# widgets\n"})
    world.api.enqueue(
        ToolUseReply("Bash", {"command": "seq 1 400", "description": "count"}),
        ToolUseReply(
            "Bash", {"command": AGENT_GIT.format(subject="first of mine") + " && sleep 8", "description": "c"}
        ),
        TextReply("Done my way."),
    )
    attempt = world.attempt(repo_url=repo, prompt="Count, then commit as you like")
    open_live(page, asgi_server, world.user, "alice password 123", attempt)

    def work() -> None:
        try:
            run_attempt(attempt.pk)
        finally:
            connection.close()

    runner = threading.Thread(target=work, daemon=True)
    runner.start()
    summary = page.get_by_text("show full output")
    expect(summary).to_be_visible(timeout=90_000)
    summary.click()
    output = page.get_by_test_id("full-output")
    expect(output.locator("pre")).to_contain_text("400", timeout=15_000)
    runner.join(timeout=180)
    assert not runner.is_alive()
    assert Attempt.objects.get(pk=attempt.pk).status == AttemptStatus.SUCCEEDED
    expect(page.get_by_test_id("live-state")).to_have_text("complete: reload the page for the results")
    push = page.get_by_test_id("push")
    expect(push).to_contain_text("switched to the branch feature/agent", timeout=15_000)
    expect(push).to_contain_text("2 commits not made by Anyon")
    rows = push.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(2)).to_contain_text("Mal'lory & co <mallory@evil.test>")
    expect(rows.nth(2)).to_contain_text("committed by Build Bot <bot@ci.test>")
    expect(rows.nth(0)).to_contain_text("Anyon")
    assert output.evaluate("el => el.open") and "400" in output.locator("pre").inner_text()

    page.reload()  # the same, rendered by the server
    expect(page.get_by_test_id("push-commits").locator("tbody tr")).to_have_count(3)
    expect(page.get_by_test_id("push-branch")).to_contain_text(f"A push sends {attempt.branch}")
    page.get_by_text("show full output").first.click()
    expect(page.get_by_test_id("full-output").first.locator("pre")).to_contain_text("400")
