"""Every delete the admin offers goes through the delete actions: a working attempt is refused as on its page,
an engine that cannot be reached leaves everything in place (nothing orphaned), and only staff get there."""

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import User

from execution.attempts.actions import do_create_task, do_start_attempt, do_transition
from execution.models import Attempt, AttemptStatus, Task
from tests.fixtures.queueing import held_from_workers

ATTEMPTS = "/admin/execution/attempt/"
TASKS = "/admin/execution/task/"


@pytest.fixture
def staff_client(client, db, settings):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    staff = User.objects.create_user("ops", password="ops password 123", is_staff=True, is_superuser=True)
    client.force_login(staff)
    return client


def new_attempt(owner, *, finished: bool = False) -> Attempt:
    task = do_create_task(owner=owner, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p")
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    if finished:
        do_transition(attempt=attempt, to=AttemptStatus.FAILED, error="test")
    return attempt


def page(response) -> str:
    return response.content.decode()


def test_the_confirmation_pages_say_what_goes_and_which_attempt_is_working(staff_client, alice):
    working = new_attempt(alice)
    html = page(staff_client.get(f"{ATTEMPTS}{working.pk}/delete/"))
    assert "containers, workspace volumes and secret dir" in html
    assert f"attempt #{working.pk}" in html and 'data-testid="delete-refused"' in html
    html = page(staff_client.post(ATTEMPTS, {"action": "delete_selected", "_selected_action": [working.pk]}))
    assert 'data-testid="delete-note"' in html and f"attempt #{working.pk}" in html
    html = page(staff_client.get(f"{TASKS}{working.task_id}/delete/"))
    assert "then the task" in html and f"attempt #{working.pk}" in html
    assert Attempt.objects.filter(pk=working.pk).exists()  # looking deletes nothing


def test_a_working_attempt_is_refused_on_every_path(staff_client, alice):
    working = new_attempt(alice)
    response = staff_client.post(f"{ATTEMPTS}{working.pk}/delete/", {"post": "yes"}, follow=True)
    assert "still working: cancel it first" in page(response)
    response = staff_client.post(
        ATTEMPTS, {"action": "delete_selected", "_selected_action": [working.pk], "post": "yes"}, follow=True
    )
    assert "Deleted 0 attempts" in page(response) and "still working" in page(response)
    response = staff_client.post(f"{TASKS}{working.task_id}/delete/", {"post": "yes"}, follow=True)
    assert f"#{working.pk} of this task are still working" in page(response)
    response = staff_client.post(
        TASKS, {"action": "delete_selected", "_selected_action": [working.task_id], "post": "yes"}, follow=True
    )
    assert "Deleted 0 tasks" in page(response)
    assert Attempt.objects.filter(pk=working.pk).exists() and Task.objects.filter(pk=working.task_id).exists()
    assert not LogEntry.objects.filter(action_flag=DELETION).exists()


def test_without_an_engine_nothing_is_deleted(staff_client, alice):
    """The action removes containers and volumes before the row: no engine, no deletion (nothing orphaned)."""
    finished = new_attempt(alice, finished=True)
    response = staff_client.post(f"{ATTEMPTS}{finished.pk}/delete/", {"post": "yes"}, follow=True)
    assert "Not deleted" in page(response) and "not reachable" in page(response)
    response = staff_client.post(
        TASKS, {"action": "delete_selected", "_selected_action": [finished.task_id], "post": "yes"}, follow=True
    )
    assert "Not deleted" in page(response)
    assert Attempt.objects.filter(pk=finished.pk).exists()


def test_a_task_without_attempts_is_deleted_and_logged(staff_client, alice):
    task = do_create_task(owner=alice, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p")
    response = staff_client.post(f"{TASKS}{task.pk}/delete/", {"post": "yes"}, follow=True)
    assert "deleted with its containers" in page(response)
    assert not Task.objects.filter(pk=task.pk).exists()
    entry = LogEntry.objects.get(action_flag=DELETION)
    assert entry.object_id == str(task.pk) and entry.user.username == "ops"


@pytest.mark.hostile
def test_non_staff_cannot_delete_anything(alice_client, alice):
    finished = new_attempt(alice, finished=True)
    posts = [
        (f"{ATTEMPTS}{finished.pk}/delete/", {"post": "yes"}),
        (ATTEMPTS, {"action": "delete_selected", "_selected_action": [finished.pk], "post": "yes"}),
        (f"{TASKS}{finished.task_id}/delete/", {"post": "yes"}),
        (TASKS, {"action": "delete_selected", "_selected_action": [finished.task_id], "post": "yes"}),
    ]
    for url, data in posts:
        for response in (alice_client.get(url), alice_client.post(url, data)):
            assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert Attempt.objects.filter(pk=finished.pk).exists()


@pytest.mark.hostile
def test_staff_without_the_delete_permission_cannot_delete(client, alice, settings):
    from django.contrib.auth.models import Permission

    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    viewer = User.objects.create_user("viewer", password="viewer password 123", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_attempt", "view_task"]))
    client.force_login(viewer)
    finished = new_attempt(alice, finished=True)
    assert client.post(f"{ATTEMPTS}{finished.pk}/delete/", {"post": "yes"}).status_code == 403
    assert "delete_selected" not in page(client.get(ATTEMPTS))
    client.post(ATTEMPTS, {"action": "delete_selected", "_selected_action": [finished.pk], "post": "yes"})
    assert Attempt.objects.filter(pk=finished.pk).exists()


def test_an_attempt_on_another_host_is_queued_there_and_the_task_waits_for_it(staff_client, alice, monkeypatch):
    queued = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kwargs: queued.append((func, args, kwargs)))
    elsewhere = new_attempt(alice, finished=True)
    Attempt.objects.filter(pk=elsewhere.pk).update(queue="host-z")
    response = staff_client.post(f"{TASKS}{elsewhere.task_id}/delete/", {"post": "yes"}, follow=True)
    assert "queued for deletion" in page(response)
    assert queued == [
        (
            "execution.attempts.actions.delete_attempt_task",
            (elsewhere.pk, "staff:ops", True),
            {"cluster": "host-z", "group": "maintenance"},
        )
    ]
    assert Task.objects.filter(pk=elsewhere.task_id).exists()  # its worker deletes it after the attempt
