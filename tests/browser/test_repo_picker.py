"""The task form's repository picker in real Chromium against the fake GitHub: picking by typing and the keyboard,
the typed URL (with and without JavaScript), and every error shown with what the user typed kept."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management import call_command

from execution.attempts.actions import do_create_task, do_start_attempt
from execution.models import Task
from secrets_app.secret_store import do_store_secret
from tests.fakes.github import classic_token
from tests.fakes.http_server import Reply
from tests.fixtures.browser import login
from tests.fixtures.queueing import held_from_workers

pytestmark = pytest.mark.browser

RESET_AT = (datetime.now(UTC) + timedelta(hours=1)).replace(second=0, microsecond=0)  # from the clock it runs under
RESET = int(RESET_AT.timestamp())


@pytest.fixture
def github(session_github, transactional_db, settings):
    """The live server's fake GitHub, its fixed answers and the repository list cache cleared after each test."""
    settings.ANYON_GITHUB_URL = session_github.url  # as the live server has it (tasks made here are checked)
    settings.ANYON_GITHUB_API_URL = session_github.api_url
    call_command("createcachetable", verbosity=0)
    cache.clear()
    yield session_github
    session_github.replies.clear()
    cache.clear()


def user_with_github(github, name: str, *, connected: bool = True):
    user = User.objects.create_user(name, password=f"{name} password 123")
    if connected:
        token = github.add_token(classic_token(), login=f"{name}-gh")
        do_store_secret(owner=user, provider="github", kind="pat", value=token, account_login=f"{name}-gh")
    return user


def sign_in(page, server, user) -> None:
    login(page, server.url, user.username, f"{user.username} password 123")
    page.goto(f"{server.url}/tasks/new/")


def options(page) -> list[str]:
    return page.get_by_test_id("repo-option").locator(".repo-name").all_inner_texts()


def test_a_repository_is_picked_by_typing_and_the_keyboard(page, asgi_server, github):
    user = user_with_github(github, "picker")
    github.list_repo("picker-gh", "picker-gh/zeta", pushed_at="2026-03-01T10:00:00Z")
    github.list_repo("picker-gh", "picker-gh/alpha-tool", private=True, default_branch="develop")
    github.list_repo("picker-gh", "acme/widgets", pushed_at="2025-01-01T00:00:00Z", affiliation="organization_member")
    task = do_create_task(owner=user, title="t", repo_url=f"{github.url}/acme/widgets", base_branch="main", prompt="p")
    with held_from_workers():
        do_start_attempt(task=task)
    sign_in(page, asgi_server, user)
    page.get_by_test_id("repo-option").first.wait_for()
    assert options(page) == ["acme/widgets", "picker-gh/zeta", "picker-gh/alpha-tool"]  # used before, then pushes
    first = page.get_by_test_id("repo-option").first.inner_text()
    assert "public" in first and "used before" in first and "default branch main" in first
    zeta = page.get_by_test_id("repo-option").nth(1).inner_text()
    assert "last push 2026-03-01 10:00" in zeta
    page.fill("#id_title", "Fix the README")
    page.fill("#id_prompt", "Fix the typo")
    page.click("#repo-search")
    page.keyboard.type("alpha")
    page.wait_for_function("document.querySelectorAll('[data-testid=repo-option]').length === 1")
    assert "private" in page.get_by_test_id("repo-option").inner_text()
    page.keyboard.press("ArrowDown")
    assert page.get_attribute("#repo-search", "aria-activedescendant") == "repo-option-0"
    page.keyboard.press("Enter")
    assert page.input_value("#id_repo_url") == f"{github.url}/picker-gh/alpha-tool"
    assert page.input_value("#id_base_branch") == "develop"
    assert page.url.endswith("/tasks/new/")  # Enter in the search box picked; it did not submit
    assert page.input_value("#id_title") == "Fix the README" and page.input_value("#id_prompt") == "Fix the typo"
    page.get_by_role("button", name="Create task").click()
    page.wait_for_url(re.compile(r".*/tasks/\d+/$"))
    created = Task.objects.exclude(pk=task.pk).get()
    assert created.repo_url == f"{github.url}/picker-gh/alpha-tool.git" and created.base_branch == "develop"


def test_a_branch_the_user_typed_is_not_replaced_by_a_pick(page, asgi_server, github):
    user = user_with_github(github, "brancher")
    github.list_repo("brancher-gh", "brancher-gh/tool", default_branch="develop")
    sign_in(page, asgi_server, user)
    page.fill("#id_base_branch", "release/2")
    page.get_by_test_id("repo-option").click()
    assert page.input_value("#id_repo_url") == f"{github.url}/brancher-gh/tool"
    assert page.input_value("#id_base_branch") == "release/2"


@pytest.mark.parametrize("javascript", [True, False], ids=["with-js", "without-js"])
def test_a_typed_url_still_works(browser, asgi_server, github, javascript):
    user = user_with_github(github, f"typist{int(javascript)}")
    github.list_repo(f"{user.username}-gh", f"{user.username}-gh/listed")
    context = browser.new_context(java_script_enabled=javascript)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        sign_in(page, asgi_server, user)
        if javascript:
            page.get_by_test_id("repo-option").wait_for()
        else:
            assert page.get_by_test_id("repo-picker").is_hidden()
        page.fill("#id_title", "Typed")
        page.fill("#id_repo_url", f"{github.url}/acme/widgets")
        page.fill("#id_prompt", "Do it")
        page.get_by_role("button", name="Create task").click()
        page.wait_for_url(re.compile(r".*/tasks/\d+/$"))
    finally:
        context.close()
    assert Task.objects.get().repo_url == f"{github.url}/acme/widgets.git"


SAYS_ERROR = "m => document.querySelector('[data-testid=repo-error]').textContent.includes(m)"
ERRORS = {
    "not connected": ("No GitHub account is connected", True),
    "token rejected": ("GitHub rejected your token: reconnect", True),
    "rate limited": (f"rate limit for your token is used up. It resets at {RESET_AT:%Y-%m-%d %H:%M}", False),
    "GitHub unreachable": ("GitHub answered 502", False),
}


@pytest.mark.parametrize("case", ERRORS)
def test_each_error_is_shown_with_what_the_user_typed_kept(page, asgi_server, github, case):
    message, settings_link = ERRORS[case]
    name = f"err{list(ERRORS).index(case)}"
    user = user_with_github(github, name, connected=case != "not connected")
    github.list_repo(f"{name}-gh", f"{name}-gh/listed")
    sign_in(page, asgi_server, user)
    if case != "not connected":
        page.get_by_test_id("repo-option").wait_for()
    typed = {"#id_title": "Keep me", "#id_repo_url": f"{github.url}/acme/typed", "#id_prompt": "Line one\nline two"}
    for selector, text in typed.items():
        page.fill(selector, text)
    page.fill("#repo-search", "list")
    if case == "token rejected":
        github.accounts = {t: a for t, a in github.accounts.items() if a.login != f"{name}-gh"}
    elif case == "rate limited":
        github.replies["GET", "/api/user/repos"] = Reply(
            403, {"message": "API rate limit exceeded"}, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(RESET)}
        )
    elif case == "GitHub unreachable":
        github.replies["GET", "/api/user/repos"] = Reply(502, b"Bad Gateway")
    page.get_by_test_id("repo-reload").click()
    error = page.get_by_test_id("repo-error")
    page.wait_for_function(SAYS_ERROR, arg=message)
    assert error.is_visible()
    if settings_link:
        assert page.get_by_test_id("repo-settings-link").get_attribute("href") == "/settings/"
    else:
        assert "You can still type the URL" in error.inner_text()
        assert options(page) == [f"{name}-gh/listed"]  # the list already shown stays usable
    for selector, text in typed.items():
        assert page.input_value(selector).replace("\r\n", "\n") == text
    assert page.input_value("#repo-search") == "list"
    assert page.url.endswith("/tasks/new/") and not Task.objects.exists()


def test_a_rejected_token_turns_the_settings_card_invalid_live_and_stays_rejected(page, asgi_server, github):
    """The token is revoked on GitHub while the settings page is open in another tab: the picker's reload gets 401,
    says reconnect with a link, and the other tab's GitHub card turns invalid without a reload."""
    user = user_with_github(github, "revoked")
    github.list_repo("revoked-gh", "revoked-gh/listed")
    sign_in(page, asgi_server, user)
    page.get_by_test_id("repo-option").wait_for()
    settings_tab = page.context.new_page()
    settings_tab.goto(f"{asgi_server.url}/settings/")
    settings_tab.wait_for_selector('[data-testid="github-card"][data-state="connected"]')
    github.accounts = {t: a for t, a in github.accounts.items() if a.login != "revoked-gh"}
    page.get_by_test_id("repo-reload").click()
    page.wait_for_function(SAYS_ERROR, arg="GitHub rejected your token: reconnect")
    assert page.get_by_test_id("repo-settings-link").get_attribute("href") == "/settings/"
    settings_tab.wait_for_selector('[data-testid="github-card"][data-state="invalid"]', timeout=15_000)
    asked = len(github.requests_to("/api/user/repos", "GET"))
    page.reload()
    page.wait_for_function(SAYS_ERROR, arg="GitHub rejected your token: reconnect")
    assert len(github.requests_to("/api/user/repos", "GET")) == asked  # known rejected: GitHub is not asked again
    page.get_by_test_id("repo-settings-link").click()
    page.wait_for_selector('[data-testid="github-card"][data-state="invalid"]')


def test_a_huge_account_says_it_shows_the_first_ones_and_searches_for_the_rest(page, asgi_server, github):
    user = user_with_github(github, "huge")
    for i in range(510):  # more than the five pages of 100 listed
        github.list_repo("huge-gh", f"huge-gh/repo-{i:03}", pushed_at=f"2026-01-01T{i // 60 % 24:02}:{i % 60:02}:00Z")
    github.list_repo("huge-gh", "huge-gh/hidden-gem", pushed_at="2020-01-01T00:00:00Z")
    sign_in(page, asgi_server, user)
    status = page.get_by_test_id("repo-status")
    page.wait_for_function("document.querySelector('[data-testid=repo-status]').textContent.includes('first 500')")
    assert "type to search" in status.inner_text()
    page.click("#repo-search")
    page.keyboard.type("hidden")
    page.get_by_test_id("repo-option").wait_for()
    assert options(page) == ["huge-gh/hidden-gem"]
    page.keyboard.press("Enter")  # the only match: Enter picks it
    assert page.input_value("#id_repo_url") == f"{github.url}/huge-gh/hidden-gem"


@pytest.mark.hostile
def test_a_hostile_repository_name_is_shown_as_text(page, asgi_server, github):
    user = user_with_github(github, "hostile")
    github.list_repo("hostile-gh", 'hostile-gh/<img src=x onerror="window.__pwned=1">', private=True)
    sign_in(page, asgi_server, user)
    option = page.get_by_test_id("repo-option")
    option.wait_for()
    assert option.locator(".repo-name").inner_text() == 'hostile-gh/<img src=x onerror="window.__pwned=1">'
    assert page.locator("[data-testid=repo-options] img").count() == 0
    assert page.evaluate("window.__pwned") is None
