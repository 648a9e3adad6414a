"""A blocked request in real Chromium: a sealed attempt's agent (the real CLI in the real image, scripted by the fake
API) asks a host its policy does not name; the blocked line appears on the page without a reload, with method and
path; its owner clicks "Allow for this attempt", the agent's next try goes through, and the attempt's network
record shows beside its changes. Another user and a staff member cannot allow anything for it."""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from execution.models import AllowanceState, NetworkAllowance
from secrets_app.secret_store import do_store_secret
from shared.egress import EgressClient, HostPort
from tests.execution.conftest import oauth_token
from tests.execution.runner.test_network_docker import Hello, retrying_script
from tests.fakes.anthropic_api import FakeAnthropicAPI, TextReply, ToolUseReply
from tests.fakes.github import classic_token
from tests.fixtures.browser import login
from tests.fixtures.processes import ARTIFACTS, github_env, start_asgi, start_process, subprocess_env
from tests.fixtures.waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.docker]


@pytest.fixture
def mirror():
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def _post_allow(context, url: str, attempt_url: str, port: int) -> int:
    """POST "allow for this attempt" as whoever ``context`` is signed in as, with their own CSRF token."""
    page = context.new_page()
    page.goto(url + "/tasks/")
    token = next(c["value"] for c in context.cookies() if c["name"] == "csrftoken")
    answer = page.request.post(
        f"{attempt_url}network/allow/",
        form={"host": "127.0.0.1", "port": str(port)},
        headers={"X-CSRFToken": token, "Referer": attempt_url},
        max_redirects=0,
    )
    page.close()
    return answer.status


def test_allow_for_this_attempt_from_the_blocked_line(
    page, browser, transactional_db, session_github, worker_factory, runtime_image, mirror
):
    owner = User.objects.create_user("nina", password="nina password 123")
    User.objects.create_user("mallory", password="mallory password 123")
    User.objects.create_user("root", password="root password 123", is_staff=True)
    github_token, claude_token = classic_token(), oauth_token()
    session_github.add_token(github_token, login="nina")
    repo = session_github.add_repo("nina", "pkgs", {"README.md": "# pkgs\n"})
    do_store_secret(owner=owner, provider="github", kind="pat", value=github_token)
    do_store_secret(owner=owner, provider="claude", kind="oauth_token", value=claude_token)
    temp = Path(tempfile.mkdtemp(prefix="an-", dir="/tmp"))  # short: UNIX socket paths are at most 107 bytes
    with FakeAnthropicAPI(expected_token=claude_token) as api:
        api.enqueue(
            ToolUseReply("Bash", {"command": retrying_script(mirror), "description": "fetch"}), TextReply("Fetched.")
        )
        internal = [HostPort.of_url(api.url), HostPort.of_url(session_github.url), HostPort("127.0.0.1", mirror)]
        sealed = {
            "ANYON_CREDENTIAL_MODE": "sealed",
            "ANYON_CLOUD_NETWORK": "host",
            "ANYON_TEMP_DIR": str(temp),
            "ANYON_EGRESS_CONTROL": str(temp / "egress" / "control.sock"),
            "ANYON_ANTHROPIC_API_URL": api.url,
            "ANYON_EGRESS_ALLOW_INTERNAL": ",".join(str(h) for h in internal),
        }
        env = subprocess_env(**github_env(session_github), **sealed)
        proxy = start_process("egress-net-allow", [sys.executable, "manage.py", "egress_proxy"], env)
        web = start_asgi("asgi-net-allow", env)
        try:
            client = EgressClient(sealed["ANYON_EGRESS_CONTROL"], timeout=2)
            wait_for(lambda: client.ping(), timeout=30, what="the egress proxy")
            worker_factory(**sealed)
            login(page, web.url, "nina", "nina password 123")
            page.goto(f"{web.url}/tasks/new/")
            page.fill("#id_title", "Fetch")
            page.fill("#id_repo_url", repo)
            page.fill("#id_prompt", "Fetch the package index")
            page.get_by_role("button", name="Create task").click()
            page.get_by_role("button", name="Start attempt").click()
            page.wait_for_url(re.compile(r".*/attempts/\d+/$"))
            attempt_url = page.url
            line = page.get_by_test_id("blocked-line").filter(has_text=f"127.0.0.1:{mirror}")
            expect(line).to_contain_text("GET /simple/demo/", timeout=120_000)  # live: no reload
            page.get_by_test_id("network").screenshot(path=str(ARTIFACTS / "attempt-network-blocked.png"))
            assert page.get_by_test_id("live-state").inner_text() == "live"

            for name in ("mallory", "root"):  # another user: not found; staff may look, not act
                other = browser.new_context()
                login(other.new_page(), web.url, name, f"{name} password 123")
                assert _post_allow(other, web.url, attempt_url, mirror) == 404
                other.close()
            assert not NetworkAllowance.objects.exists()

            page.evaluate("window.stayed = true")  # the allow is sent without leaving the page
            line.get_by_role("button", name="Allow for this attempt").click()
            expect(page.get_by_test_id("network-message")).to_contain_text("is allowed for this attempt")
            assert page.evaluate("window.stayed === true")
            expect(page.get_by_test_id("blocked-line").first).to_contain_text(
                "allowed for this attempt by nina", timeout=30_000
            )
            page.wait_for_selector('[data-testid="attempt-status"][data-status="succeeded"]', timeout=120_000)
            expect(page.get_by_test_id("live-state")).to_have_text("complete", timeout=30_000)
            record = page.get_by_test_id("network-record")
            expect(record).to_contain_text(f"127.0.0.1:{mirror}", timeout=30_000)
            expect(page.get_by_test_id("blocked-line").first).to_contain_text("GET /simple/demo/")
            expect(page.get_by_test_id("log")).to_contain_text(f"nina allowed 127.0.0.1:{mirror} for this attempt")
            assert NetworkAllowance.objects.get().state == AllowanceState.APPLIED
            page.get_by_test_id("network").screenshot(path=str(ARTIFACTS / "attempt-network.png"))
        finally:
            web.stop()
            proxy.stop()
