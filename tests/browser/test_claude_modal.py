"""The Connect Claude modal in real Chromium against the live server: each method, wrong code, cancel, disconnect.
The card changes without a reload (pushed over the settings websocket)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User

from secrets_app.models import Secret
from tests.fixtures.browser import login
from tests.fixtures.leaks import track_secret
from tests.fixtures.processes import ARTIFACTS

pytestmark = pytest.mark.browser
CARD = '[data-testid="claude-card"]'


def open_modal(page, asgi_server, username: str):
    User.objects.create_user(username, password=f"{username} password 123")
    login(page, asgi_server.url, username, f"{username} password 123")
    page.goto(f"{asgi_server.url}/settings/")
    page.wait_for_function("() => true")
    assert page.locator(CARD).get_attribute("data-state") == "not_connected"
    page.get_by_test_id("claude-connect").click()
    modal = page.get_by_test_id("claude-login-modal")
    modal.wait_for()
    return modal


def test_subscription_login_turns_the_card_connected_without_reload(page, asgi_server, transactional_db):
    open_modal(page, asgi_server, "sub")
    page.evaluate("window.__marker = 'same page'")  # a reload would lose it
    page.screenshot(path=str(ARTIFACTS / "claude-modal-choose.png"))
    page.get_by_test_id("method-subscription").click()
    link = page.get_by_test_id("login-url")
    link.wait_for(state="visible")
    url = link.get_attribute("href")
    assert url.startswith("https://claude.ai/oauth/authorize?") and link.get_attribute("target") == "_blank"
    page.get_by_test_id("code-form").wait_for(state="visible")
    page.screenshot(path=str(ARTIFACTS / "claude-modal-code.png"))
    state = parse_qs(urlsplit(url).query)["state"][0]
    page.fill("#login-code", f"browsercode#{state}")
    page.get_by_role("button", name="Submit code").click()
    page.wait_for_selector(f'{CARD}[data-state="connected"]', timeout=20_000)
    assert page.evaluate("window.__marker") == "same page"
    assert "Claude subscription token" in page.get_by_test_id("claude-method").inner_text()
    page.screenshot(path=str(ARTIFACTS / "claude-card-connected.png"))
    secret = Secret.objects.get(owner__username="sub", provider="claude")
    assert secret.kind == "oauth_token" and secret.state == "active"


def test_wrong_code_shows_the_error(page, asgi_server, transactional_db):
    open_modal(page, asgi_server, "wrong")
    page.get_by_test_id("method-subscription").click()
    page.get_by_test_id("code-form").wait_for(state="visible")
    page.fill("#login-code", "guess#not-it")
    page.get_by_role("button", name="Submit code").click()
    error = page.get_by_test_id("login-error")
    error.wait_for(state="visible")
    assert "Invalid code" in error.inner_text()
    page.screenshot(path=str(ARTIFACTS / "claude-modal-error.png"))
    assert not Secret.objects.filter(owner__username="wrong").exists()


def test_cancel_stops_the_login(page, asgi_server, transactional_db):
    open_modal(page, asgi_server, "cancel")
    page.get_by_test_id("method-subscription").click()
    page.get_by_test_id("code-form").wait_for(state="visible")
    page.wait_for_selector(f'{CARD}[data-state="in_progress"]')
    page.get_by_test_id("login-cancel").click()
    error = page.get_by_test_id("login-error")
    error.wait_for(state="visible")
    assert "cancelled" in error.inner_text().lower()
    page.wait_for_selector(f'{CARD}[data-state="not_connected"]')


def test_api_key_path_and_disconnect(page, asgi_server, session_anthropic, transactional_db):
    key = track_secret("sk-ant-api03-" + "B" * 40 + "rowser")
    session_anthropic.expected_token = key
    try:
        open_modal(page, asgi_server, "keyuser")
        page.get_by_test_id("method-api-key").click()
        page.fill("#login-secret", "sk-ant-api03-" + "N" * 40)
        page.get_by_role("button", name="Check and save").click()
        error = page.get_by_test_id("login-error")
        error.wait_for(state="visible")
        assert "rejected" in error.inner_text()
        page.fill("#login-secret", key)
        page.get_by_role("button", name="Check and save").click()
        page.wait_for_selector(f'{CARD}[data-state="connected"]', timeout=15_000)
        assert "Anthropic API key" in page.get_by_test_id("claude-method").inner_text()
        assert key not in page.content()
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_test_id("claude-disconnect").click()
        page.wait_for_selector(f'{CARD}[data-state="not_connected"]')
        assert Secret.objects.get(owner__username="keyuser").state == "revoked"
    finally:
        session_anthropic.expected_token = None


def test_card_follows_changes_made_elsewhere(page, asgi_server, transactional_db):
    """Staff revoke in the admin (another request, another process path): the open page's card updates."""
    from secrets_app.secret_store import do_revoke_secret, do_store_secret

    user = User.objects.create_user("watch", password="watch password 123")
    secret = do_store_secret(
        owner=user, provider="claude", kind="api_key", value=track_secret("sk-ant-api03-" + "W" * 44)
    )
    login(page, asgi_server.url, "watch", "watch password 123")
    page.goto(f"{asgi_server.url}/settings/")
    assert page.locator(CARD).get_attribute("data-state") == "connected"
    do_revoke_secret(secret=secret, actor="staff:ops")  # in the test process: the server learns it from the DB
    page.wait_for_selector(f'{CARD}[data-state="not_connected"]', timeout=10_000)
