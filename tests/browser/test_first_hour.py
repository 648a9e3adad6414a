"""A new user's first pages in real Chromium: each says one thing about the server and the attempt, and offers only
what can be done now, by this user."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from execution.attempts.actions import do_create_task, do_start_attempt
from execution.logs.writer import LogWriter
from execution.models import Attempt, AttemptJob, AttemptStatus, JobKind, JobStatus, Run, RunKind, RunStatus
from tests.fakes.github import classic_token
from tests.fixtures.browser import login
from tests.fixtures.processes import github_env, start_asgi, subprocess_env
from tests.fixtures.queueing import held_from_workers

pytestmark = pytest.mark.browser

MOUNTED_INTRO = "given to a run's container only while it needs them"


@pytest.fixture(scope="module")
def sealed_server(django_db_setup, django_db_blocker, session_github):
    """A web server in sealed mode (the production default) whose GitHub sign-in (device flow) is not set up."""
    with django_db_blocker.unblock():
        setup = {**github_env(session_github), "ANYON_CREDENTIAL_MODE": "sealed", "ANYON_GITHUB_CLIENT_ID": ""}
        env = subprocess_env(**setup)
    server = start_asgi("asgi-sealed-no-device-flow", env)
    yield server
    server.stop()


def _sign_in(page, server, name: str, *, staff: bool = False) -> User:
    user = User.objects.create_user(name, password=f"{name} password 123", is_staff=staff)
    login(page, server.url, name, f"{name} password 123")
    return user


def _intro(page) -> str:
    return " ".join(page.get_by_test_id("settings-intro").inner_text().split())


def test_a_refused_token_keeps_the_sealed_description(page, sealed_server, transactional_db):
    _sign_in(page, sealed_server, "refused")
    page.goto(f"{sealed_server.url}/settings/")
    assert "never enter a run's container" in _intro(page)
    page.fill("#id_token", classic_token())  # well formed, unknown to GitHub: refused
    page.get_by_role("button", name="Save token").click()
    page.get_by_test_id("pat-error").wait_for()
    intro = _intro(page)
    assert "never enter a run's container" in intro and MOUNTED_INTRO not in intro, intro


def test_no_sign_in_button_without_the_device_flow_and_a_note_for_staff(page, sealed_server, transactional_db):
    _sign_in(page, sealed_server, "plainuser")
    page.goto(f"{sealed_server.url}/settings/")
    card = page.get_by_test_id("github-card")
    expect(card.get_by_role("button", name="Save token")).to_be_visible()  # the token form is open: the only way
    assert card.get_by_role("button", name="Sign in with GitHub").count() == 0
    assert page.get_by_test_id("device-flow-off").count() == 0
    page.context.clear_cookies()
    _sign_in(page, sealed_server, "staffer", staff=True)
    page.goto(f"{sealed_server.url}/settings/")
    assert page.get_by_test_id("github-card").get_by_role("button", name="Sign in with GitHub").count() == 0
    expect(page.get_by_test_id("device-flow-off")).to_contain_text("ANYON_GITHUB_CLIENT_ID")


def _finished_attempt(owner: User) -> Attempt:
    task = do_create_task(owner=owner, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p")
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    clone = Run.objects.create(attempt=attempt, kind=RunKind.CLONE, title="Clone repository", exit_code=0)
    Run.objects.filter(pk=clone.pk).update(status=RunStatus.SUCCEEDED)
    Attempt.objects.filter(pk=attempt.pk).update(
        status=AttemptStatus.SUCCEEDED, base_commit="a" * 40, head_commit="b" * 40, branch=f"anyon/attempt-{attempt.pk}"
    )
    attempt.refresh_from_db()
    return attempt


def test_git_progress_on_stderr_is_not_shown_in_the_error_colour(page, asgi_server, transactional_db):
    owner = _sign_in(page, asgi_server, "progress")
    attempt = _finished_attempt(owner)
    writer = LogWriter(attempt.pk)
    writer.write(None, "stderr", "Cloning into '/workspace'...\nremote: Counting objects: 100% (3/3), done.\n")
    writer.close()
    Attempt.objects.filter(pk=attempt.pk).update(error="shown in the error colour")
    page.goto(f"{asgi_server.url}/attempts/{attempt.pk}/")
    line = page.locator("#log .stderr").first
    expect(line).to_contain_text("Cloning into")
    colour = line.evaluate("e => getComputedStyle(e).color")
    error_colour = page.get_by_test_id("attempt-error").evaluate("e => getComputedStyle(e).color")
    assert colour not in (error_colour, "rgb(255, 180, 168)"), colour


def test_during_a_follow_up_the_badge_and_buttons_follow_it(page, asgi_server, transactional_db):
    owner = _sign_in(page, asgi_server, "follower")
    attempt = _finished_attempt(owner)
    page.goto(f"{asgi_server.url}/attempts/{attempt.pk}/")
    expect(page.get_by_test_id("follow-up-form")).to_be_visible()
    expect(page.get_by_role("button", name="Create pull request")).to_be_visible()
    job = AttemptJob.objects.create(attempt=attempt, kind=JobKind.FOLLOW_UP, prompt="more", status=JobStatus.RUNNING)
    page.goto(f"{asgi_server.url}/attempts/{attempt.pk}/")
    badge = page.get_by_test_id("attempt-status")
    expect(badge).to_have_text("Follow-up running")
    assert badge.get_attribute("data-status") == "running"
    expect(page.locator("#cancel-form")).to_be_visible()
    assert page.get_by_test_id("follow-up-form").count() == 0
    assert page.get_by_role("button", name="Create pull request").count() == 0
    assert page.get_by_role("button", name="Delete attempt").count() == 0
    page.wait_for_function("() => document.getElementById('live-state').textContent === 'live'")
    # The live status says the same while the follow-up runs.
    writer = LogWriter(attempt.pk)
    writer.write(None, "system", "still following up\n")
    writer.close()
    page.wait_for_function("() => document.getElementById('log').textContent.includes('still following up')")
    expect(badge).to_have_text("Follow-up running")
    # Cancel on the page stops the follow-up (the attempt itself has ended).
    page.locator("#cancel-form button").click()
    page.wait_for_load_state("load")
    job.refresh_from_db()
    assert job.cancel_requested or job.status == JobStatus.CANCELLED
    # It ends: the page reloads with the buttons back.
    AttemptJob.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
    expect(page.get_by_test_id("follow-up-form")).to_be_visible(timeout=20_000)
    expect(badge).to_have_text("Succeeded")


def test_staff_see_another_users_attempt_without_the_owners_buttons(page, asgi_server, transactional_db):
    owner = User.objects.create_user("theowner", password="theowner password 123")
    attempt = _finished_attempt(owner)
    _sign_in(page, asgi_server, "lookingstaff", staff=True)
    page.goto(f"{asgi_server.url}/attempts/{attempt.pk}/")
    expect(page.get_by_test_id("attempt-status")).to_have_text("Succeeded")
    assert page.get_by_test_id("follow-up-form").count() == 0
    assert page.get_by_role("button", name="Create pull request").count() == 0
    assert page.get_by_role("button", name="Delete attempt").count() == 0
    page.context.clear_cookies()
    login(page, asgi_server.url, "theowner", "theowner password 123")
    page.goto(f"{asgi_server.url}/attempts/{attempt.pk}/")
    expect(page.get_by_test_id("follow-up-form")).to_be_visible()  # the owner still has them


def _admin_login(page, server, next_path: str) -> None:
    User.objects.create_superuser("opsadmin", "ops@example.com", "opsadmin password 123")
    page.goto(f"{server.url}/admin/login/?next={next_path}")
    page.fill("#id_username", "opsadmin")
    page.fill("#id_password", "opsadmin password 123")
    page.locator("input[type=submit]").click()
    page.wait_for_load_state("load")


def test_the_admin_names_a_follow_ups_attempt_plainly_and_its_table_fits_a_laptop(page, asgi_server, transactional_db):
    owner = User.objects.create_user("numbered", password="numbered password 123")
    attempt = _finished_attempt(owner)
    AttemptJob.objects.create(attempt=attempt, kind=JobKind.FOLLOW_UP, prompt="more", status=JobStatus.SUCCEEDED)
    _admin_login(page, asgi_server, "/admin/execution/attemptjob/")
    text = page.locator("#result_list").inner_text()
    assert f"attempt {attempt.pk} of {attempt.task_id}" not in text
    assert f"attempt {attempt.pk} (task {attempt.task_id}" in text
    page.goto(f"{asgi_server.url}/admin/execution/attempt/")
    table = page.locator("#result_list")
    table.wait_for()
    assert page.viewport_size["width"] == 1280
    right = table.evaluate("e => e.getBoundingClientRect().right")
    assert right <= 1280, right
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280
