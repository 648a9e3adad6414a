"""Every error path of the General Settings forms in real Chromium, with the live settings socket connected and
pushing: the personal access token form, the device flow, and the Connect Claude modal's pasted keys.

A live card update must never throw away what the user is doing or what the server just told them: the error of
a refused token, an opened form, typed input and focus all survive the pushes (the first push,
about 0.2 s after the 400 page loaded, once replaced the card and took the message with it).
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from secrets_app.models import GitHubDeviceFlow, Secret
from tests.fakes.github import classic_token, expiration_header
from tests.fakes.http_server import Reply
from tests.fixtures.browser import login
from tests.fixtures.leaks import track_secret

pytestmark = pytest.mark.browser
GITHUB = '[data-testid="github-card"]'
CLAUDE = '[data-testid="claude-card"]'
PAT_SUMMARY = f"{GITHUB} details summary"


class Pushes:
    """The card pushes the page's settings socket receives, counted from the frames Playwright sees, and a way to
    make the server push: a device flow of *another* browser session changes the server's version of the user's
    cards but nothing this page shows, so within its poll (2 s) the server pushes both cards again."""

    def __init__(self, page, user: User) -> None:
        self.page, self.user, self.cards = page, user, 0
        page.on("websocket", self._socket)

    def _socket(self, ws) -> None:
        if ws.url.endswith("/ws/settings/"):
            ws.on("framereceived", self._frame)

    def _frame(self, payload) -> None:
        if isinstance(payload, str) and json.loads(payload).get("type") == "card":
            self.cards += 1

    def wait(self, count: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.cards < count:
            assert time.monotonic() < deadline, f"{self.cards} card pushes, expected {count}"
            self.page.wait_for_timeout(100)
        self.page.wait_for_timeout(150)  # the page's handler applies them

    def push(self) -> None:
        """One more push, after whatever the page's socket pushed before (one socket sends in order)."""
        before = self.cards
        now = timezone.now()
        GitHubDeviceFlow.objects.create(
            owner=self.user,
            session_key=f"another-browser-{secrets.token_hex(4)}",
            device_code="not-a-secret",
            user_code="0000-0000",
            verification_uri="https://github.invalid/login/device",
            status="cancelled",
            expires_at=now + timedelta(minutes=5),
            next_poll_at=now,
        )
        self.wait(before + 2)


def signed_in(page, asgi_server, name: str) -> tuple[User, Pushes]:
    user = User.objects.create_user(name, password=f"{name} password 123")
    pushes = Pushes(page, user)
    login(page, asgi_server.url, name, f"{name} password 123")
    page.goto(f"{asgi_server.url}/settings/")
    pushes.wait(2)  # the socket's first push (whatever changed since the page was rendered)
    return user, pushes


def submit_pat(page, value: str) -> None:
    page.locator(PAT_SUMMARY).click()
    page.fill("#id_token", value)
    page.get_by_role("button", name="Save token").click()
    page.wait_for_load_state("load")


def wrong_token(github) -> str:
    return classic_token()  # well formed, unknown to GitHub: 401


def under_scoped_token(github) -> str:
    return github.add_token(classic_token(), login="scoped", scopes=["read:user", "gist"])


EXPIRED_DAYS_AGO = 400


def expired_token(github) -> str:
    expired = timezone.now() - timedelta(days=EXPIRED_DAYS_AGO)
    return github.add_token(classic_token(), login="late", expiration=expiration_header(expired))


PAT_ERRORS = {
    "wrong": (wrong_token, "GitHub rejected the token (401)"),
    "under-scoped": (under_scoped_token, "lacks the 'repo' scope (it has read:user, gist)"),
    "malformed": (lambda github: "not-a-token", "does not look like a GitHub token"),
    "blank": (lambda github: "    ", "the field is empty"),
    "too long": (lambda github: "ghp_" + "a" * 400, "404 characters long"),
    "not ASCII": (lambda github: "ghp_" + "é" * 36, "only letters, digits and underscores"),
    "expired": (
        expired_token,
        lambda: f"This token expired on {timezone.now() - timedelta(days=EXPIRED_DAYS_AGO):%Y-%m-%d}",
    ),
}


@pytest.mark.parametrize("case", PAT_ERRORS)
def test_a_refused_token_keeps_its_message_the_open_form_and_new_input_through_pushes(
    page, asgi_server, session_github, transactional_db, case
):
    make, message = PAT_ERRORS[case]
    user, pushes = signed_in(page, asgi_server, f"pat{list(PAT_ERRORS).index(case)}")
    submit_pat(page, make(session_github))
    message = message() if callable(message) else message
    error = page.get_by_test_id("pat-error")
    pushes.push()  # after the 400 page's first push, about 0.2 s after it loaded: where the message used to vanish
    assert error.is_visible() and message in error.inner_text()
    assert page.locator(f"{GITHUB} details").evaluate("d => d.open")
    # The user starts over: what they type and where the caret is survive the next push.
    page.fill("#id_token", "ghp_typing")
    pushes.push()
    assert page.input_value("#id_token") == "ghp_typing"
    assert page.evaluate("document.activeElement.id") == "id_token"
    assert error.is_visible() and message in error.inner_text()
    assert page.locator(GITHUB).get_attribute("data-state") == "not_connected"
    assert not Secret.objects.filter(owner=user).exists()


def test_a_form_opened_right_after_load_stays_open_and_typed_input_stays(page, asgi_server, transactional_db):
    user = User.objects.create_user("opener", password="opener password 123")
    pushes = Pushes(page, user)
    login(page, asgi_server.url, "opener", "opener password 123")
    page.goto(f"{asgi_server.url}/settings/")
    page.locator(PAT_SUMMARY).click()  # before the socket's first push arrives (or right after)
    page.locator("#id_token").type("ghp_half")
    pushes.wait(2)
    pushes.push()
    assert page.locator(f"{GITHUB} details").evaluate("d => d.open")
    assert page.input_value("#id_token") == "ghp_half"
    assert page.evaluate("document.activeElement.id") == "id_token"


def test_a_live_update_still_changes_the_card_but_not_the_users_form(page, asgi_server, transactional_db):
    """What did change arrives (connected elsewhere: account, badge, summary); the open form and input stay."""
    from secrets_app.secret_store import do_store_secret

    user, _ = signed_in(page, asgi_server, "elsewhere")
    page.locator(PAT_SUMMARY).click()
    page.fill("#id_token", "ghp_mine")
    do_store_secret(owner=user, provider="github", kind="pat", value=classic_token(), account_login="far-away")
    page.wait_for_selector(f'{GITHUB}[data-state="connected"]', timeout=10_000)
    assert page.get_by_test_id("github-login").inner_text() == "@far-away"
    assert page.locator(PAT_SUMMARY).inner_text() == "Replace with a personal access token"
    assert page.locator(f"{GITHUB} details").evaluate("d => d.open")
    assert page.input_value("#id_token") == "ghp_mine"


# --- the device flow ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (["denied"], "Access was denied on GitHub"),
        (["pending", "expired"], "The code expired before it was approved"),
    ],
)
def test_device_flow_refusals_are_shown_and_stay(page, asgi_server, session_github, transactional_db, script, message):
    session_github.device_script = script
    try:
        _, pushes = signed_in(page, asgi_server, f"flow-{script[-1]}")
        page.get_by_role("button", name="Sign in with GitHub").click()
        page.get_by_test_id("user-code").wait_for()
        shown = page.get_by_test_id("device-flow-message")
        shown.wait_for(timeout=20_000)  # the page polls; the server asks GitHub; the page reloads when it ended
        pushes.push()
        assert message in shown.inner_text() and "error" in shown.get_attribute("class")
        assert page.get_by_role("button", name="Sign in with GitHub").is_visible()  # start again from here
    finally:
        session_github.device_script = ["pending", "success"]


DEVICE_START_ERRORS = {
    # ANYON_GITHUB_URL pointing at something that is not GitHub's web address (an API URL, a proxy's login page)
    "wrong URL": (
        Reply(401, "<html><body>Unauthorized</body></html>", {"Content-Type": "text/html"}),
        "ANYON_GITHUB_URL",
    ),
    "moved": (Reply(404, "Not Found", {"Content-Type": "text/plain"}), "ANYON_GITHUB_URL"),
    "wrong client id": (
        Reply(200, {"error": "unauthorized_client", "error_description": "unknown client_id"}),
        "ANYON_GITHUB_CLIENT_ID",
    ),
    "GitHub down": (Reply(503, "Service Unavailable"), "GitHub answered 503"),
}


@pytest.mark.parametrize("case", DEVICE_START_ERRORS)
def test_device_flow_start_errors_name_what_to_check(page, asgi_server, session_github, transactional_db, case):
    reply, hint = DEVICE_START_ERRORS[case]
    session_github.replies[("POST", "/login/device/code")] = reply
    try:
        _, pushes = signed_in(page, asgi_server, f"start{list(DEVICE_START_ERRORS).index(case)}")
        page.get_by_role("button", name="Sign in with GitHub").click()
        page.wait_for_load_state("load")
        shown = page.locator(".message-error")
        pushes.push()
        assert shown.is_visible() and hint in shown.inner_text(), shown.inner_text()
        assert page.locator(GITHUB).get_attribute("data-state") == "not_connected"
    finally:
        session_github.replies.clear()


def test_device_flow_poll_against_a_wrong_url_says_which_setting(page, asgi_server, session_github, transactional_db):
    """The code was issued, then polling meets something that is not GitHub: the flow stays pending (it may be a
    passing hiccup) and the page says what answered and which setting to check."""
    session_github.device_script = ["pending"]
    try:
        signed_in(page, asgi_server, "pollwrong")
        page.get_by_role("button", name="Sign in with GitHub").click()
        page.get_by_test_id("user-code").wait_for()
        session_github.replies[("POST", "/login/oauth/access_token")] = Reply(401, "<html>no</html>")
        page.wait_for_function(
            "() => document.getElementById('device-flow-status').textContent.includes('ANYON_GITHUB_URL')",
            timeout=20_000,
        )
        assert "HTTP 401" in page.locator("#device-flow-status").inner_text()
    finally:
        session_github.replies.clear()
        session_github.device_script = ["pending", "success"]


# --- the Connect Claude modal: pasted keys and tokens ---------------------------------------------------------


CLAUDE_ERRORS = {
    "wrong key": ("method-api-key", "sk-ant-api03-" + "N" * 40, "Anthropic rejected it (401)"),
    "not a key": ("method-api-key", "hello", "An Anthropic API key starts with sk-ant-api03-"),
    "empty": ("method-api-key", "", "the field is empty"),
    "two lines": ("method-api-key", "sk-ant-api03-abc def", "keys are one line"),
    "a key as a token": ("method-token", "sk-ant-api03-" + "K" * 40, "starts with sk-ant-oat01-"),
    "wrong token": ("method-token", "sk-ant-oat01-" + "T" * 40, "Anthropic rejected it (401)"),
}


@pytest.mark.parametrize("case", CLAUDE_ERRORS)
def test_claude_key_errors_replace_the_progress_line(page, asgi_server, session_anthropic, transactional_db, case):
    method, value, message = CLAUDE_ERRORS[case]
    session_anthropic.expected_token = track_secret("sk-ant-api03-" + "R" * 40 + "ightOne")
    try:
        _, pushes = signed_in(page, asgi_server, f"claude{list(CLAUDE_ERRORS).index(case)}")
        page.get_by_test_id("claude-connect").click()
        page.get_by_test_id(method).click()
        page.fill("#login-secret", value)
        page.get_by_role("button", name="Check and save").click()
        error = page.get_by_test_id("login-error")
        error.wait_for(state="visible")
        pushes.push()
        assert message in error.inner_text(), error.inner_text()
        # The check is over: no "Checking with Anthropic…" left under the error.
        assert page.get_by_test_id("paste-status").inner_text() == ""
        assert page.get_by_test_id("claude-login-modal").is_visible()
        assert page.locator(CLAUDE).get_attribute("data-state") == "not_connected"
    finally:
        session_anthropic.expected_token = None
