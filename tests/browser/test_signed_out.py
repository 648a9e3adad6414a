"""Signed out in another tab: the live pages say so and stop knocking (the server closes their sockets with 4401),
keeping what they showed."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from execution.attempts.actions import do_create_task, do_start_attempt
from tests.fixtures.browser import login
from tests.fixtures.queueing import held_from_workers

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sockets_opened(page) -> list[str]:
    opened: list[str] = []
    page.on("websocket", lambda ws: opened.append(ws.url))
    return opened


def log_out_in_another_tab(page, url: str) -> None:
    """What the Log out button posts, from the same browser session (its cookies) but not from this page."""
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    answer = page.context.request.post(
        f"{url}/logout/", headers={"X-CSRFToken": csrf, "Referer": f"{url}/"}, max_redirects=0, timeout=15_000
    )
    assert answer.status == 302, answer.status


def test_a_live_attempt_page_says_signed_out_and_does_not_reconnect(page, asgi_server):
    user = User.objects.create_user("fran", password="fran password 123")
    task = do_create_task(owner=user, title="t", repo_url="https://github.com/fran/x", base_branch="main", prompt="p")
    with held_from_workers():
        attempt = do_start_attempt(task=task)  # stays queued: its page keeps a live socket open
    login(page, asgi_server.url, "fran", "fran password 123")
    opened = sockets_opened(page)
    page.goto(f"{asgi_server.url}/attempts/{attempt.pk}/")
    state = page.get_by_test_id("live-state")
    expect(state).to_have_text("live")
    shown = page.get_by_test_id("log").inner_text()
    log_out_in_another_tab(page, asgi_server.url)
    expect(state).to_have_text("not live: you were signed out; sign in again, then reload", timeout=15_000)
    page.wait_for_timeout(3000)  # a reconnect would have come after 0.5 s
    assert len(opened) == 1, opened
    assert page.get_by_test_id("log").inner_text() == shown  # what the page showed stays


def test_the_settings_page_says_signed_out_and_does_not_reconnect(page, asgi_server):
    User.objects.create_user("gail", password="gail password 123")
    login(page, asgi_server.url, "gail", "gail password 123")
    opened = sockets_opened(page)
    page.goto(f"{asgi_server.url}/settings/")
    expect(page.get_by_test_id("signed-out")).to_be_hidden()
    for _ in range(50):  # the cards' socket is open
        if opened:
            break
        page.wait_for_timeout(100)
    page.wait_for_timeout(300)
    log_out_in_another_tab(page, asgi_server.url)
    expect(page.get_by_test_id("signed-out")).to_be_visible(timeout=15_000)
    page.wait_for_timeout(3000)  # a reconnect would have come after 2 s
    assert len(opened) == 1, opened
    assert page.get_by_role("link", name="Sign in again").get_attribute("href").startswith("/login/?next=")
