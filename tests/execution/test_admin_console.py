"""The admin as the ops console: dashboard, attempt log and actions, alert acknowledgement; staff only."""

import pytest
from django.contrib.auth.models import User

from execution.attempts.actions import do_create_task, do_start_attempt, do_transition
from execution.models import AttemptStatus, LogRecord
from shared.alerts import do_raise_alert
from shared.models import Alert
from tests.fixtures.queueing import held_from_workers


@pytest.fixture
def staff_client(client, db, settings):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    staff = User.objects.create_user("ops", password="ops password 123", is_staff=True, is_superuser=True)
    client.force_login(staff)
    return client


@pytest.fixture
def attempt(alice):
    task = do_create_task(owner=alice, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p")
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    LogRecord.objects.create(attempt=attempt, seq=1, stream="stdout", text="token is ***\n")
    return attempt


def test_dashboard_counts_and_engine_status(staff_client, attempt):
    do_raise_alert(kind="orphan_removed", message="removed 2", dedupe_key="o1")
    html = staff_client.get("/admin/").content.decode()
    assert 'data-testid="ops-active"' in html and ">1</a>" in html
    assert "✗ not reachable" in html and "systemctl start docker" in html
    assert 'data-testid="ops-alerts"' in html


def test_attempt_page_shows_masked_log_and_actions(staff_client, attempt):
    html = staff_client.get(f"/admin/execution/attempt/{attempt.pk}/change/").content.decode()
    assert "token is ***" in html
    changelist = staff_client.get("/admin/execution/attempt/?status__exact=queued").content.decode()
    assert "cancel_selected" in changelist and "delete_selected" in changelist  # through the action
    staff_client.post("/admin/execution/attempt/", {"action": "cancel_selected", "_selected_action": [attempt.pk]})
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.CANCELLED


def test_acknowledge_alerts(staff_client):
    alert = do_raise_alert(kind="exec_nonzero_exit", message="x")
    open_list = staff_client.get("/admin/shared/alert/?acknowledged=no").content.decode()
    assert "exec_nonzero_exit" in open_list
    staff_client.post("/admin/shared/alert/", {"action": "acknowledge", "_selected_action": [alert.pk]})
    alert = Alert.objects.get(pk=alert.pk)
    assert alert.acknowledged_by.username == "ops" and alert.acknowledged_at


@pytest.mark.hostile
def test_non_staff_cannot_use_the_console(alice_client, attempt):
    for url in ("/admin/", f"/admin/execution/attempt/{attempt.pk}/change/", "/admin/shared/alert/"):
        response = alice_client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    do_transition(attempt=attempt, to=AttemptStatus.PROVISIONING)


def test_cleanup_action_says_so_when_the_engine_is_down(staff_client, attempt):
    do_transition(attempt=attempt, to=AttemptStatus.FAILED, error="test")
    response = staff_client.post(
        "/admin/execution/attempt/", {"action": "cleanup_selected", "_selected_action": [attempt.pk]}, follow=True
    )
    assert response.status_code == 200
    assert "Stopped after 0 attempt(s): Docker engine not reachable" in response.content.decode()


def test_a_task_prompt_is_shown_not_edited(staff_client, attempt):
    """What the attempts ran stays as it was: an admin save would also turn a NUL into U+FFFD."""
    from execution.models import Task

    Task.objects.filter(pk=attempt.task_id).update(prompt="fix\x00it")
    url = f"/admin/execution/task/{attempt.task_id}/change/"
    html = staff_client.get(url).content.decode()
    assert "fix\u2400it" in html and 'name="prompt"' not in html
    staff_client.post(url, {"title": "renamed", "repo_url": "https://github.com/a/b", "base_branch": "main"})
    task = Task.objects.get(pk=attempt.task_id)
    assert (task.title, task.prompt) == ("renamed", "fix\x00it")
    assert staff_client.get("/admin/execution/task/add/").status_code == 403  # tasks are made on the task page
    assert staff_client.get("/admin/execution/attemptjob/add/").status_code == 403
