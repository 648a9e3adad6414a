"""The environment page's live runs and snapshots in real Chromium against a live server with real websockets: while
its owner types in the forms, the repository's runs move through their setup and a snapshot appears, gets a hit and
is dropped from another tab; the sections follow without a reload and every typed character stays. Another user and
a staff account looking at the same repository's page see none of it. When the server goes away the page says
"reconnecting…", and once it is back it is live again with what changed meanwhile."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from execution.attempts.actions import do_create_task, do_start_attempt, do_transition
from execution.attempts.runs import do_finish_run, do_start_run
from execution.attempts.steps import Step
from execution.environments.actions import do_save_environment
from execution.models import AttemptStatus, RunKind, RunStatus, Snapshot
from execution.snapshots.actions import do_drop_snapshot, do_use_snapshot
from tests.execution.snapshots.test_snapshots import make_snapshot
from tests.fixtures.browser import login
from tests.fixtures.processes import github_env, start_process, subprocess_env, wait_for_port
from tests.fixtures.queueing import held_from_workers

pytestmark = pytest.mark.browser

TYPED = {
    "#id_setup_script": "pip install -r requirements.txt\nmake deps  # typed, not saved\n",
    "#id_variables": "MODE=typed\n",
    "#id_setup_network_rules": "mirror.example.org\n",
    "#id_name": "HALF_TYPED",
}


def type_into_the_forms(page) -> None:
    page.select_option("#id_setup_network_mode", "rules")
    for selector, text in TYPED.items():
        page.fill(selector, text)
    page.focus("#id_setup_script")


def assert_typed_text_kept(page) -> None:
    for selector, text in TYPED.items():
        assert page.input_value(selector) == text, selector
    assert page.input_value("#id_setup_network_mode") == "rules"
    assert page.evaluate("document.activeElement.id") == "id_setup_script"


def run_row(page, attempt_id: int):
    return page.locator(f'[data-testid="environment-run"][data-attempt="{attempt_id}"]')


def test_runs_and_snapshots_follow_live_and_typed_text_stays(page, browser, asgi_server, transactional_db):
    ann = User.objects.create_user("ann", password="ann password 123")
    User.objects.create_user("oz", password="oz password 123")
    User.objects.create_user("root", password="root password 123", is_staff=True, is_superuser=True)
    do_save_environment(owner=ann, repository="acme/widgets", setup_script="make\n")
    login(page, asgi_server.url, "ann", "ann password 123")
    page.goto(f"{asgi_server.url}/environments/acme/widgets/")
    expect(page.get_by_test_id("live-state")).to_have_text("live")
    expect(page.get_by_test_id("no-environment-runs")).to_be_visible()
    type_into_the_forms(page)

    task = do_create_task(
        owner=ann, title="Widgets", repo_url="https://github.com/acme/widgets", base_branch="main", prompt="p"
    )
    with held_from_workers():
        first = do_start_attempt(task=task)
    expect(run_row(page, first.pk)).to_have_attribute("data-setup", "queued")
    do_transition(attempt=first, to=AttemptStatus.PROVISIONING)
    setup = do_start_run(attempt=first, job=None, step=Step(kind=RunKind.SETUP, title="Setup script", argv=[]), argv=[])
    expect(run_row(page, first.pk).get_by_test_id("run-setup")).to_have_text("setup running…")
    do_finish_run(run=setup, status=RunStatus.FAILED, exit_code=2, error="", session_id="")
    do_transition(attempt=first, to=AttemptStatus.FAILED, error="The setup script failed.")
    failed = run_row(page, first.pk).get_by_role("link", name="setup failed: see the attempt")
    expect(failed).to_have_attribute("href", f"/attempts/{first.pk}/")
    expect(run_row(page, first.pk).get_by_test_id("run-status")).to_have_text("finished: failed")

    snapshot = make_snapshot(ann)
    row = page.locator(f'[data-snapshot="{snapshot.pk}"]')
    expect(row).to_be_visible()
    with held_from_workers():
        second = do_start_attempt(task=task)
    do_transition(attempt=second, to=AttemptStatus.PROVISIONING)
    do_use_snapshot(snapshot=snapshot, attempt=second)
    do_transition(attempt=second, to=AttemptStatus.RUNNING)
    do_start_run(attempt=second, job=None, step=Step(kind=RunKind.AGENT, title="Agent", argv=[]), argv=[])
    expect(run_row(page, second.pk).get_by_test_id("run-setup")).to_contain_text("cached start")
    expect(run_row(page, second.pk).get_by_test_id("run-status")).to_have_text("agent running…")
    expect(row.locator("td").nth(4)).to_have_text("1")  # one hit
    assert_typed_text_kept(page)

    for name in ("oz", "root"):  # their own page of the same repository: nothing of ann's
        other = browser.new_context()
        theirs = other.new_page()
        login(theirs, asgi_server.url, name, f"{name} password 123")
        theirs.goto(f"{asgi_server.url}/environments/acme/widgets/")
        expect(theirs.get_by_test_id("live-state")).to_have_text("live")
        theirs.wait_for_timeout(1000)
        assert theirs.get_by_test_id("environment-run").count() == 0
        assert theirs.locator("[data-snapshot]").count() == 0
        other.close()

    tab = page.context.new_page()  # dropped in another tab: gone here too
    tab.goto(f"{asgi_server.url}/snapshots/")
    tab.get_by_test_id("snapshot-drop").click()
    tab.wait_for_selector("text=dropped")
    tab.close()
    expect(row).to_have_count(0)
    expect(page.get_by_test_id("no-snapshots")).to_be_visible()
    assert not Snapshot.objects.exists()
    assert_typed_text_kept(page)


def test_the_page_says_reconnecting_and_comes_back_live(page, transactional_db, session_github):
    from anyon.management.commands.serve import web_argv
    from tests.fixtures.processes import free_port

    ann = User.objects.create_user("ann", password="ann password 123")
    snapshot = make_snapshot(ann)
    env = subprocess_env(**github_env(session_github))
    port = free_port()

    def serve(name: str):
        server = start_process(name, web_argv("127.0.0.1", port), env)
        wait_for_port(port, server.proc, server.log)
        return server

    server = serve("asgi-env-live")
    try:
        url = f"http://127.0.0.1:{port}"
        login(page, url, "ann", "ann password 123")
        page.goto(f"{url}/environments/acme/widgets/")
        state = page.get_by_test_id("live-state")
        expect(state).to_have_text("live")
        type_into_the_forms(page)
        server.stop()
        expect(state).to_have_text("reconnecting…")
        do_drop_snapshot(snapshot=snapshot, engine=None)  # meanwhile, the sweep drops it
        server = serve("asgi-env-live-again")
        expect(state).to_have_text("live", timeout=30_000)
        assert state.get_attribute("data-connects") == "2"
        expect(page.locator(f'[data-snapshot="{snapshot.pk}"]')).to_have_count(0)
        assert_typed_text_kept(page)

        page.context.new_page().goto(f"{url}/tasks/")  # signed out in another tab: the page says so and stops
        other = page.context.pages[-1]
        other.get_by_role("button", name="Log out").click()
        expect(state).to_have_text("not live: you were signed out; sign in again, then reload", timeout=15_000)
        assert_typed_text_kept(page)
    finally:
        server.stop()
