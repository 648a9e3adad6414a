"""General Settings in a real browser: the device flow's page polls the server until GitHub says yes."""

import re

import pytest
from django.contrib.auth.models import User

from tests.fixtures.browser import login
from tests.fixtures.processes import ARTIFACTS


@pytest.mark.browser
def test_device_flow_connects_without_reload_by_hand(page, asgi_server, session_github, transactional_db):
    User.objects.create_user("dora", password="dora password 123")
    session_github.device_script = ["pending", "success"]
    session_github.device_login = "dora-gh"
    polled_before = len(session_github.requests_to("/login/oauth/access_token"))  # the fake is the session's
    login(page, asgi_server.url, "dora", "dora password 123")
    page.goto(f"{asgi_server.url}/settings/")
    card = page.get_by_test_id("github-card")
    assert card.get_attribute("data-state") == "not_connected"
    page.get_by_role("button", name="Sign in with GitHub").click()
    code = page.get_by_test_id("user-code").inner_text()
    assert re.fullmatch(r"\d{4}-\d{4}", code)
    page.screenshot(path=str(ARTIFACTS / "settings-device-flow.png"), full_page=True)
    # The page's script polls; the server asks the fake GitHub once per interval; on success the page reloads.
    page.wait_for_selector('[data-testid="github-card"][data-state="connected"]', timeout=20_000)
    assert page.get_by_test_id("github-login").inner_text() == "@dora-gh"
    assert len(session_github.requests_to("/login/oauth/access_token")) - polled_before == 2
    page.screenshot(path=str(ARTIFACTS / "settings-github-connected.png"), full_page=True)
