"""Deleting from the admin removes what the attempt had on the engine, as the attempt page's delete does: its
container, its workspace and home volumes and its secret dir, asked of the real engine afterwards."""

from __future__ import annotations

import docker
import pytest
from django.contrib.auth.models import User

from execution.attempts import secret_dir
from execution.attempts.actions import do_create_task, do_start_attempt, do_transition
from execution.attempts.containers import AttemptContainers, home_volume
from execution.attempts.runs import do_set_container
from execution.models import Attempt, AttemptStatus, Task
from tests.fixtures.queueing import held_from_workers

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ops_client(client, alice, settings, runtime_image, tmp_path):
    settings.ANYON_TEMP_DIR = tmp_path / "anyon-tmp"
    settings.ANYON_CLOUD_NETWORK = "none"
    ops = User.objects.create_superuser("ops", "ops@example.com", "ops password 123")
    client.force_login(ops)
    return client


def attempt_on_the_engine(owner, *, task: Task | None = None, status: str = AttemptStatus.FAILED) -> Attempt:
    """An attempt with what a session leaves: a running container, two volumes and a secret dir."""
    task = task or do_create_task(
        owner=owner, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p"
    )
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    path = secret_dir.write_secret_dir(attempt.pk, {})
    do_set_container(attempt=attempt, container_id=AttemptContainers().provision(attempt, secret_dir=path))
    do_transition(attempt=attempt, to=AttemptStatus.PROVISIONING)
    if status != AttemptStatus.PROVISIONING:
        do_transition(attempt=attempt, to=status, error="test")
    attempt.refresh_from_db()
    return attempt


def assert_gone(docker_client, attempt: Attempt) -> None:
    for name in (attempt.workspace_volume, home_volume(attempt.workspace_volume)):
        with pytest.raises(docker.errors.NotFound):
            docker_client.volumes.get(name)
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(attempt.container_id)
    assert not secret_dir.secret_dir_path(attempt.pk).exists()
    assert not Attempt.objects.filter(pk=attempt.pk).exists()


def test_the_attempt_delete_page_removes_container_volumes_and_secret_dir(ops_client, alice, docker_client):
    attempt = attempt_on_the_engine(alice)
    assert docker_client.containers.get(attempt.container_id).status == "running"
    response = ops_client.post(f"/admin/execution/attempt/{attempt.pk}/delete/", {"post": "yes"}, follow=True)
    assert "deleted with its containers, volumes and secret dirs" in response.content.decode()
    assert_gone(docker_client, attempt)


def test_deleting_a_task_deletes_each_attempt_through_the_action(ops_client, alice, docker_client):
    first = attempt_on_the_engine(alice)
    second = attempt_on_the_engine(alice, task=first.task, status=AttemptStatus.CANCELLED)
    response = ops_client.post(
        "/admin/execution/task/",
        {"action": "delete_selected", "_selected_action": [first.task_id], "post": "yes"},
        follow=True,
    )
    assert "Deleted 1 tasks" in response.content.decode()
    for attempt in (first, second):
        assert_gone(docker_client, attempt)
    assert not Task.objects.filter(pk=first.task_id).exists()


def test_a_working_attempt_keeps_its_container_and_its_task(ops_client, alice, docker_client):
    working = attempt_on_the_engine(alice, status=AttemptStatus.PROVISIONING)
    response = ops_client.post(f"/admin/execution/task/{working.task_id}/delete/", {"post": "yes"}, follow=True)
    assert "still working" in response.content.decode()
    assert docker_client.containers.get(working.container_id).status == "running"
    assert docker_client.volumes.get(working.workspace_volume)
    assert Attempt.objects.filter(pk=working.pk).exists()
    do_transition(attempt=working, to=AttemptStatus.FAILED, error="test")
    ops_client.post(f"/admin/execution/attempt/{working.pk}/delete/", {"post": "yes"})
    assert_gone(docker_client, working)


def test_the_worker_of_another_host_deletes_the_task_after_its_last_attempt(ops_client, alice, docker_client):
    """What the queued deletion does on that host's worker: the attempt with its resources, then the task."""
    from execution.attempts.actions import delete_attempt_task

    attempt = attempt_on_the_engine(alice)
    assert delete_attempt_task(attempt.pk, "staff:ops", True) == "deleted with its task"
    assert_gone(docker_client, attempt)
    assert not Task.objects.filter(pk=attempt.task_id).exists()
