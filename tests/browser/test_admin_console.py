"""The attempt's admin page in real Chromium (the admin's own scripts run): no way to add a run by hand."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from execution.attempts.actions import do_create_task, do_start_attempt
from execution.models import Run, RunKind
from tests.fixtures.queueing import held_from_workers

pytestmark = pytest.mark.browser


def test_the_attempt_page_offers_no_add_another_run(page, asgi_server, transactional_db):
    User.objects.create_superuser("console", "console@example.com", "console password 123")
    owner = User.objects.create_user("someone", password="someone password 123")
    task = do_create_task(owner=owner, title="t", repo_url="https://github.com/acme/a", base_branch="main", prompt="p")
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    Run.objects.create(attempt=attempt, kind=RunKind.CLONE, title="Clone repository", argv=["git"])
    page.goto(f"{asgi_server.url}/admin/login/?next=/admin/execution/attempt/{attempt.pk}/change/")
    page.fill("#id_username", "console")
    page.fill("#id_password", "console password 123")
    page.locator("input[type=submit]").click()
    page.get_by_text("Clone repository").wait_for()
    page.wait_for_load_state("load")  # the inline script has run
    # Django's script draws the link, hidden when the formset may not grow.
    assert not page.get_by_text("Add another Run").is_visible()
    page.goto(f"{asgi_server.url}/admin/")
    assert page.get_by_role("link", name="GitHub device flows").is_visible()


@pytest.fixture
def own_server(transactional_db):
    """A web process of its own: the session's server caches content type ids, which the flush between
    transactional tests changes, and the admin's deletion log entry names its model by that id."""
    from tests.fixtures.processes import start_asgi, subprocess_env

    server = start_asgi("asgi-admin-delete", subprocess_env())
    yield server
    server.stop()


@pytest.mark.docker
def test_bulk_delete_from_the_attempt_list_removes_containers_and_volumes(
    page, own_server, docker_client, runtime_image, settings
):
    """Django's own "Delete selected" and its confirmation page, in Chromium; the engine is asked afterwards."""
    from execution.attempts.actions import do_transition
    from execution.models import AttemptStatus
    from tests.execution.test_admin_deletes_docker import assert_gone, attempt_on_the_engine

    settings.ANYON_CLOUD_NETWORK = "none"
    User.objects.create_superuser("console", "console@example.com", "console password 123")
    owner = User.objects.create_user("someone", password="someone password 123")
    finished = [attempt_on_the_engine(owner) for _ in range(2)]
    working = attempt_on_the_engine(owner, status=AttemptStatus.PROVISIONING)
    page.goto(f"{own_server.url}/admin/login/?next=/admin/execution/attempt/")
    page.fill("#id_username", "console")
    page.fill("#id_password", "console password 123")
    page.locator("input[type=submit]").click()
    for attempt in (*finished, working):
        page.locator(f"input[name=_selected_action][value='{attempt.pk}']").check()
    page.select_option("select[name=action]", "delete_selected")
    page.get_by_role("button", name="Go").click()
    page.get_by_test_id("delete-note").wait_for()
    assert f"attempt #{working.pk}" in page.get_by_test_id("delete-refused").inner_text()
    page.get_by_role("button", name="Yes, I’m sure").click()
    page.get_by_text("Deleted 2 attempts with their containers, volumes and secret dirs.").wait_for()
    assert "still working: cancel it first" in page.locator("ul.messagelist").inner_text()
    for attempt in finished:
        assert_gone(docker_client, attempt)
    assert docker_client.containers.get(working.container_id).status == "running"
    do_transition(attempt=working, to=AttemptStatus.FAILED, error="test")
    from execution.attempts.actions import do_delete_attempt

    do_delete_attempt(attempt=working, by="test")
