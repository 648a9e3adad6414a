"""Several Docker hosts: one worker queue per host. New attempts are spread over the queues; everything later for
an attempt runs on a worker of its queue; one host's sweep never removes another host's containers.
(Both "hosts" share this machine's engine here, so the separation shown is by queue and label.)"""

from __future__ import annotations

import time

import docker
import pytest

from execution.attempts.actions import do_request_delete_attempt, do_start_attempt, do_transition
from execution.models import Attempt, AttemptStatus
from execution.sweeps.cleanup import sweep_containers
from tests.execution.conftest import custom

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def wait_until(predicate, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def test_attempts_spread_over_host_queues_and_stay_there(world, worker_factory, settings, docker_client):
    settings.ANYON_WORKER_QUEUES = ["host-a", "host-b"]
    settings.ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER = 4  # all four start at once (the per-user limit is tested elsewhere)
    common = {"ANYON_TEMP_DIR": str(settings.ANYON_TEMP_DIR), "ANYON_CLOUD_NETWORK": "none"}
    workers = {q: worker_factory(ANYON_WORKER_QUEUE=q, **common) for q in ("host-a", "host-b")}
    attempts = [
        do_start_attempt(task=world.task(), plan=[custom("sh", "-c", "echo hi > /workspace/f")]) for _ in range(4)
    ]
    assert sorted(a.queue for a in attempts) == ["host-a", "host-a", "host-b", "host-b"]
    ok = wait_until(lambda: all(Attempt.objects.get(pk=a.pk).status == "succeeded" for a in attempts))
    assert ok, {q: w.output()[-1500:] for q, w in workers.items()}
    from django_q.models import Task

    # django-q2 records a task after the function returned, which is after the attempt's final status.
    names = [f"attempt-{a.pk}" for a in attempts]
    assert wait_until(lambda: Task.objects.filter(name__in=names).count() == len(names), timeout=30)
    for attempt in attempts:
        executed = Task.objects.get(name=f"attempt-{attempt.pk}")
        assert executed.cluster == attempt.queue  # ran on a worker of its own queue
    # Deleting from here (a web process of neither host) is queued to the attempt's host and done there.
    target = next(a for a in attempts if a.queue == "host-b")
    target.refresh_from_db()
    volume = target.workspace_volume
    assert do_request_delete_attempt(attempt=target, by="alice") is False
    assert wait_until(lambda: not Attempt.objects.filter(pk=target.pk).exists(), timeout=30)
    deletion = Task.objects.filter(func="execution.attempts.actions.delete_attempt_task")
    assert wait_until(deletion.exists, timeout=30)
    assert deletion.get().cluster == "host-b"
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(volume)


def test_a_hosts_sweep_leaves_other_hosts_containers(world, docker_client, base_image, settings):
    done = world.attempt(plan=[custom("true")])
    do_transition(attempt=done, to=AttemptStatus.CANCELLED)
    labels = {
        "anyon.managed": "1",
        "anyon.instance": settings.ANYON_INSTANCE,
        "anyon.attempt": str(done.pk),
        "anyon.expires": "9999999999",
    }
    theirs = docker_client.containers.run(
        base_image, ["sleep", "infinity"], detach=True, network_mode="none", labels={**labels, "anyon.queue": "host-b"}
    )
    ours = docker_client.containers.run(
        base_image, ["sleep", "infinity"], detach=True, network_mode="none", labels={**labels, "anyon.queue": "host-a"}
    )
    try:
        settings.ANYON_WORKER_QUEUE = "host-a"
        assert sweep_containers().removed == [ours.name]
        theirs.reload()
        assert theirs.status == "running"
    finally:
        theirs.remove(force=True)
