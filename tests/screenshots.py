"""``make screenshots``: drive the real UI with Playwright against a live stack with fake outside services and save
the pictures of docs/USER_GUIDE.md into docs/screenshots/, plus the hash of the UI sources they show
(tests/anyon/test_docs.py fails when templates or static files change without new screenshots).

Needs the Docker engine and the runtime image (the attempt pictures come from a real run) and Chromium.

The pictures show the default installation: sealed runs through an egress proxy. GitHub's URLs appear on the pages
(the device-flow link, the clone in the log), so the fake GitHub listens on port 80 of the loopback interface and is
configured as ``http://localhost``: no test port in any picture. The visible text of every picture is saved in
docs/screenshots/pages.txt, and a picture whose page shows a loopback address with a port is refused
(tests/anyon/test_docs.py checks the saved text too).
"""

from __future__ import annotations

import http.server
import os
import re
import sys
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.anthropic_api import FakeAnthropicAPI, TextReply, ToolUseReply  # noqa: E402
from tests.fakes.github import CLIENT_ID, FakeGitHub  # noqa: E402
from tests.live_stack import LiveStack, configure, ui_source_hash  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
FAKE_LOGIN_CLI = ROOT / "tests" / "fakes" / "fake_claude_setup_token.sh"
#: A loopback address with a port: what a picture must not show (a test port readers would copy).
TEST_ADDRESS = re.compile(r"(?:127\.0\.0\.1|localhost|\[::1\]):\d+")


class PackageIndex(http.server.BaseHTTPRequestHandler):
    """A package index on the loopback interface, standing in for PyPI in the blocked-request pictures."""

    def do_GET(self) -> None:
        body = b"<a href='demo-1.0.tar.gz'>demo-1.0.tar.gz</a>\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def fetching_script(index: str) -> str:
    """What the agent runs: ask the index through the proxy once a second until it answers (at most 90 tries)."""
    return (
        "for i in $(seq 1 90); do\n"
        f"  out=$(curl -sS -m 5 --noproxy '' -w ' status=%{{http_code}}' http://{index}/simple/demo/)\n"
        '  case "$out" in *status=200) echo "$out"; break;; esac\n'
        "  sleep 1\n"
        "done\n"
    )


def main() -> None:
    index_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PackageIndex)
    threading.Thread(target=index_server.serve_forever, daemon=True).start()
    index = f"127.0.0.1:{index_server.server_address[1]}"
    try:
        github = FakeGitHub(interval=1, port=80, host="localhost").__enter__()
    except OSError as exc:
        sys.exit(f"make screenshots serves the fake GitHub on 127.0.0.1:80 (http://localhost on the pages): {exc}")
    api = FakeAnthropicAPI().__enter__()
    configure(
        "screens",
        ANYON_GITHUB_URL=github.url,
        ANYON_GITHUB_API_URL=github.api_url,
        ANYON_GITHUB_CLIENT_ID=CLIENT_ID,
        ANYON_ANTHROPIC_API_URL=api.url,
        ANYON_CLAUDE_LOGIN_COMMAND=f"bash {FAKE_LOGIN_CLI}",
        ANYON_CREDENTIAL_MODE="sealed",
        ANYON_EGRESS_ALLOW_INTERNAL=f"{api.url.removeprefix('http://')},localhost:80,{index}",
    )
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from playwright.sync_api import sync_playwright

    from shared.egress import EgressClient
    from tests.fixtures.browser import CHROMIUM, CHROMIUM_ARGS, login
    from tests.fixtures.processes import start_process
    from tests.fixtures.waiting import wait_for

    stack = LiveStack("screens")
    egress = start_process("screens-egress", [sys.executable, "manage.py", "egress_proxy"], dict(os.environ))
    wait_for(lambda: _answers(EgressClient(settings.ANYON_EGRESS_CONTROL, timeout=2)), 30, what="the egress proxy")
    User.objects.create_user("ada", email="ada@example.com", password="ada password 123")
    User.objects.create_superuser("ops", "ops@example.com", "ops password 123")
    github.device_script = ["pending", "success"]
    github.device_login = "ada-lovelace"
    repo = github.add_repo("ada-lovelace", "analytical-engine", {"README.md": "# Analytical Engine\n"})
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 780})
        page.set_default_timeout(30_000)

        texts: dict[str, str] = {}

        # The network record names the hosts the run reached; the fakes stand in for these two.
        production_hosts = {
            urlsplit(api.url).netloc: "api.anthropic.com:443",
            urlsplit(github.url).netloc or "localhost": "github.com:443",
            "localhost:80": "github.com:443",
        }

        # The package index stands in for PyPI wherever the page names it (the blocked line, the agent's command,
        # the log's lines, the network record).
        index_host = {index: "pypi.org:80"}

        def shot(name: str, full: bool = False, element: str = "") -> None:
            page.evaluate(
                """names => document.querySelectorAll('[data-testid="network-record"] code').forEach(code => {
                    if (names[code.textContent]) code.textContent = names[code.textContent];
                })""",
                production_hosts,
            )
            page.evaluate(
                """names => {
                    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
                    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                        for (const [from, to] of Object.entries(names)) {
                            if (node.nodeValue.includes(from)) node.nodeValue = node.nodeValue.split(from).join(to);
                        }
                    }
                }""",
                index_host,
            )
            shown = TEST_ADDRESS.findall(page.content())
            if shown:
                sys.exit(f"docs/screenshots/{name}.png would show test addresses: {sorted(set(shown))}")
            if element:
                page.get_by_test_id(element).screenshot(path=str(OUT / f"{name}.png"))
                texts[name] = page.get_by_test_id(element).inner_text()
            else:
                page.screenshot(path=str(OUT / f"{name}.png"), full_page=full)
                texts[name] = page.inner_text("body")
            print(f"saved docs/screenshots/{name}.png")

        page.goto(f"{stack.url}/login/")
        shot("login")
        login(page, stack.url, "ada", "ada password 123")
        page.goto(f"{stack.url}/settings/")
        shot("settings-not-connected")
        page.get_by_role("button", name="Sign in with GitHub").click()
        page.get_by_test_id("user-code").wait_for()
        shot("github-device-code")
        page.wait_for_selector('[data-testid="github-card"][data-state="connected"]')
        shot("github-connected")
        page.get_by_test_id("claude-connect").click()
        page.get_by_test_id("claude-login-modal").wait_for()
        shot("claude-choose-method")
        page.get_by_test_id("method-subscription").click()
        page.get_by_test_id("code-form").wait_for(state="visible")
        shot("claude-paste-code")
        url = page.get_by_test_id("login-url").get_attribute("href")
        page.fill("#login-code", f"code-from-claude#{parse_qs(urlsplit(url).query)['state'][0]}")
        page.get_by_role("button", name="Submit code").click()
        page.wait_for_selector('[data-testid="claude-card"][data-state="connected"]')
        page.wait_for_timeout(1500)  # the window closes itself
        shot("claude-connected")

        api.enqueue(
            ToolUseReply("Write", {"file_path": "/workspace/notes.md", "content": "# Notes\n\nBernoulli numbers.\n"}),
            ToolUseReply("Bash", {"command": "for i in 1 2 3; do echo step $i; sleep 1; done", "description": "work"}),
            TextReply("Added notes.md with the Bernoulli numbers note."),
        )
        page.goto(f"{stack.url}/tasks/new/")
        page.fill("#id_title", "Write the notes")
        page.fill("#id_repo_url", repo)
        page.fill("#id_prompt", "Add notes.md about Bernoulli numbers.")
        shot("task-new")
        page.get_by_role("button", name="Create task").click()
        page.get_by_role("button", name="Start attempt").click()
        page.wait_for_url(re.compile(r".*/attempts/\d+/$"))
        page.wait_for_function(
            "() => document.getElementById('log').textContent.includes('[tool] Bash')", timeout=90_000
        )
        shot("attempt-running", full=True)
        page.wait_for_selector('[data-testid="diff-file"]', timeout=90_000)
        shot("attempt-finished-diff", full=True)
        from execution.models import Attempt
        from execution.sweeps.log_retention import do_drop_attempt_log

        page.wait_for_function("() => document.getElementById('live-state').textContent === 'complete'")
        finished = Attempt.objects.get(pk=int(re.search(r"/attempts/(\d+)/", page.url).group(1)))
        do_drop_attempt_log(attempt=finished, days=30)  # what the retention sweep does 30 days later
        page.reload()
        page.get_by_test_id("log-tail").first.wait_for()
        shot("attempt-log-removed", full=True)

        from execution.environments.actions import PhaseNetwork, do_save_environment

        # The agent's network: the repository's own policy, which names no package index yet.
        do_save_environment(
            owner=User.objects.get(username="ada"),
            repository="ada-lovelace/analytical-engine",
            setup_script="",
            agent_network=PhaseNetwork(mode="rules"),
        )
        api.enqueue(
            ToolUseReply("Bash", {"command": fetching_script(index), "description": "fetch the package index"}),
            TextReply("Fetched the package index."),
        )
        page.goto(f"{stack.url}/tasks/new/")
        page.fill("#id_title", "Fetch the package index")
        page.fill("#id_repo_url", repo)
        page.fill("#id_prompt", "Check that the demo package is on the index.")
        page.get_by_role("button", name="Create task").click()
        page.get_by_role("button", name="Start attempt").click()
        page.wait_for_url(re.compile(r".*/attempts/\d+/$"))
        line = page.get_by_test_id("blocked-line").filter(has_text="/simple/demo/")  # shot() renames the host
        line.get_by_role("button", name="Allow for this attempt").wait_for(timeout=120_000)
        page.wait_for_timeout(2500)  # the agent tries again: the line counts it
        shot("attempt-network-blocked", element="network")
        line.get_by_role("button", name="Allow for this attempt").click()
        page.get_by_test_id("blocked-line").filter(has_text="allowed for this attempt by ada").wait_for(timeout=30_000)
        page.wait_for_selector('[data-testid="attempt-status"][data-status="succeeded"]', timeout=120_000)
        page.get_by_test_id("network-record").filter(has_text=index).wait_for(timeout=30_000)
        shot("attempt-network-allowed", element="network")

        page.goto(f"{stack.url}/environments/ada-lovelace/analytical-engine/")
        page.fill("#id_setup_script", "pip install -r requirements.txt\npython -m engine.build --cards punched\n")
        page.fill("#id_variables", "ENGINE_MODE=difference\n")
        page.select_option("#id_setup_network_mode", "rules")
        page.check("input[name=setup_network_presets][value=package-registries]")
        page.get_by_test_id("environment-save").click()
        page.fill("#id_name", "PRIVATE_INDEX_TOKEN")
        page.fill("#id_value", "an example value, never shown")
        page.get_by_test_id("setup-secret-save").click()
        page.get_by_test_id("setup-secret").wait_for()
        page.wait_for_function("() => document.getElementById('live-state').textContent === 'live'")
        shot("environment", full=True)

        page.get_by_test_id("current-user").wait_for()
        page.context.clear_cookies()
        login(page, stack.url, "ops", "ops password 123")
        page.goto(f"{stack.url}/admin/")
        shot("admin-dashboard")
        browser.close()
    (OUT / "pages.txt").write_text(
        "".join(f"== {name}.png ==\n{text.strip()}\n\n" for name, text in sorted(texts.items()))
    )
    (OUT / "SOURCE.sha256").write_text(ui_source_hash() + "\n")
    stack.stop()
    egress.stop()
    github.__exit__(None, None, None)
    api.__exit__(None, None, None)
    index_server.shutdown()
    import docker

    client = docker.from_env()
    label = f"anyon.instance={settings.ANYON_INSTANCE}"
    for container in client.containers.list(all=True, filters={"label": label}):
        container.remove(force=True)
    for volume in client.volumes.list(filters={"label": label}):
        volume.remove(force=True)


def _answers(client) -> bool:
    try:
        return client.ping()
    except Exception:
        return False


if __name__ == "__main__":
    main()
