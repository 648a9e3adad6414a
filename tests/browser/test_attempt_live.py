"""The whole path in a real browser: create a task, start an attempt, a real worker runs it in the real image,
and the attempt page shows the log lines while the run is still going, over a real websocket."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from secrets_app.secret_store import do_store_secret
from tests.execution.conftest import oauth_token
from tests.fakes.anthropic_api import FakeAnthropicAPI, TextReply, ToolUseReply
from tests.fakes.github import classic_token
from tests.fixtures.browser import login
from tests.fixtures.processes import ARTIFACTS


@pytest.mark.browser
@pytest.mark.docker
def test_attempt_logs_arrive_live(page, asgi_server, session_github, worker_factory, runtime_image, tmp_path):
    user = User.objects.create_user("erin", password="erin password 123")
    github_token, claude_token = classic_token(), oauth_token()
    session_github.add_token(github_token, login="erin")
    repo = session_github.add_repo("erin", "site", {"index.html": "<h1>hi</h1>\n"})
    do_store_secret(owner=user, provider="github", kind="pat", value=github_token)
    do_store_secret(owner=user, provider="claude", kind="oauth_token", value=claude_token)
    with FakeAnthropicAPI(expected_token=claude_token) as api:
        api.enqueue(
            ToolUseReply("Bash", {"command": "for i in 1 2 3 4; do echo tick $i; sleep 1; done", "description": "t"}),
            TextReply("All done: ticked four times."),
        )
        worker_factory(
            ANYON_CLOUD_NETWORK="host",
            ANYON_ANTHROPIC_API_URL=api.url,
            ANYON_TEMP_DIR=str(tmp_path / "worker-tmp"),
        )
        login(page, asgi_server.url, "erin", "erin password 123")
        page.goto(f"{asgi_server.url}/tasks/new/")
        page.fill("#id_title", "Tick")
        page.fill("#id_repo_url", repo)
        page.fill("#id_prompt", "Tick four times")
        page.get_by_role("button", name="Create task").click()
        page.get_by_role("button", name="Start attempt").click()
        page.wait_for_url(re.compile(r".*/attempts/\d+/$"))
        log = page.get_by_test_id("log")
        status = page.get_by_test_id("attempt-status")
        # The tool call shows up while the attempt is still running (the tool itself takes four seconds).
        page.wait_for_function(
            "() => document.getElementById('log').textContent.includes('[tool] Bash')", timeout=60_000
        )
        assert status.get_attribute("data-status") == "running"
        assert page.get_by_test_id("live-state").inner_text() == "live"
        page.screenshot(path=str(ARTIFACTS / "attempt-running.png"), full_page=True)
        page.wait_for_selector('[data-testid="attempt-status"][data-status="succeeded"]', timeout=60_000)
        # The page reloads itself once the stream ends (for the diff): these wait through it.
        expect(page.get_by_test_id("live-state")).to_have_text("complete", timeout=30_000)
        expect(page.locator("#runs tr")).to_have_count(4, timeout=30_000)  # clone, branch, Claude, commit
        expect(log).to_contain_text("Secret directory removed", timeout=30_000)
        text = log.inner_text()
        assert "tick 4" in text and "All done: ticked four times." in text
        assert github_token not in text and claude_token not in text
        page.screenshot(path=str(ARTIFACTS / "attempt-succeeded.png"), full_page=True)
    assert not list((tmp_path / "worker-tmp" / "cloud-secrets").glob("*"))
