"""Operations against real processes and the real engine: orphans pre-seeded and swept (dry run first), cleanup
when a worker starts, and a worker killed with SIGKILL in the middle of a run."""

from __future__ import annotations

import os
import signal
import time

import docker
import pytest
from django.core.management import call_command

from execution.attempts import secret_dir
from execution.attempts.actions import do_start_attempt, do_transition
from execution.attempts.containers import container_name
from execution.hosts.workers import pid_exists
from execution.models import Attempt, AttemptStatus, WorkerProcess
from shared.models import Alert
from tests.execution.conftest import custom

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def wait_until(predicate, timeout=60.0, every=0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def test_preseeded_orphans_dry_run_then_exactly_the_orphans(world, docker_client, base_image, settings, capsys):
    running = world.attempt(plan=[custom("true")])
    do_transition(attempt=running, to=AttemptStatus.PROVISIONING)
    done = world.attempt(plan=[custom("true")])
    do_transition(attempt=done, to=AttemptStatus.CANCELLED)
    settings.ANYON_SECRET_DIR_MAX_AGE = 3600
    for attempt in (running, done):
        secret_dir.write_secret_dir(attempt.pk, {"github_token": world.github_token})
    old_active = world.attempt(plan=[custom("true")])
    do_transition(attempt=old_active, to=AttemptStatus.PROVISIONING)
    secret_dir.write_secret_dir(old_active.pk, {"github_token": world.github_token})
    os.utime(secret_dir.secret_dir_path(old_active.pk), (time.time() - 7200, time.time() - 7200))
    labels = {"anyon.managed": "1", "anyon.instance": settings.ANYON_INSTANCE, "anyon.expires": "9999999999"}

    def container(**extra):
        return docker_client.containers.run(
            base_image, ["sleep", "infinity"], detach=True, network_mode="none", labels={**labels, **extra}
        )

    finished_c = container(**{"anyon.attempt": str(done.pk)})
    running_c = container(**{"anyon.attempt": str(running.pk)})
    plain = docker_client.containers.run(base_image, ["sleep", "infinity"], detach=True, network_mode="none")
    try:
        expected_dirs = {str(secret_dir.secret_dir_path(a.pk)) for a in (done, old_active)}
        call_command("cleanup_secrets", "--dry-run")
        call_command("cleanup_containers", "--dry-run")
        dry = capsys.readouterr().out
        assert "would remove 2" in dry and "would remove 1" in dry
        assert all(f"would remove secret dir {d}" in dry for d in expected_dirs)
        assert f"would remove container {finished_c.name}" in dry
        assert all(secret_dir.secret_dir_path(a.pk).exists() for a in (running, done, old_active))
        finished_c.reload()  # still there after the dry run
        call_command("cleanup_secrets")
        call_command("cleanup_containers")
        real = capsys.readouterr().out
        assert "removed 2" in real and "removed 1" in real
        assert {str(p) for p in secret_dir.secrets_root().iterdir()} == {str(secret_dir.secret_dir_path(running.pk))}
        with pytest.raises(docker.errors.NotFound):
            finished_c.reload()
        running_c.reload()
        plain.reload()
        assert running_c.status == plain.status == "running"
    finally:
        for c in (running_c, plain):
            c.remove(force=True)


def test_worker_start_runs_cleanup(world, worker_factory, settings):
    settings_env = {"ANYON_TEMP_DIR": str(settings.ANYON_TEMP_DIR)}
    orphan = secret_dir.secrets_root() / "31337"
    orphan.mkdir(parents=True)
    worker = worker_factory(**settings_env)
    assert wait_until(lambda: not orphan.exists(), timeout=40), worker.output()[-3000:]


def test_sigkilled_worker_mid_run_is_cleaned_by_one_sweep(world, worker_factory, settings, docker_client):
    env = {
        "ANYON_TEMP_DIR": str(settings.ANYON_TEMP_DIR),
        "ANYON_CLOUD_NETWORK": "host",
        "ANYON_ANTHROPIC_API_URL": world.api.url,
    }
    worker = worker_factory(**env)
    attempt = do_start_attempt(task=world.task(), plan=[custom("sleep", "120")])
    assert wait_until(lambda: Attempt.objects.get(pk=attempt.pk).status == "running", timeout=60), worker.output()
    assert wait_until(lambda: secret_dir.secret_dir_path(attempt.pk).exists(), timeout=10)
    # A worker that beat at least once (one that never did is the stale sweep's): under load its first beat may come
    # after the attempt started.
    worker_name = Attempt.objects.get(pk=attempt.pk).worker
    assert wait_until(lambda: WorkerProcess.objects.filter(name=worker_name).exists(), timeout=60), worker.output()
    attempt_process = WorkerProcess.objects.get(name=worker_name).pid
    os.killpg(worker.proc.pid, signal.SIGKILL)  # the whole cluster, no chance to clean up
    worker.proc.wait()
    # The group's processes die one by one (one busy in the kernel exits when it leaves it): the sweep's precondition
    # is that the process that ran the attempt is gone, not only the cluster's parent.
    assert wait_until(lambda: not pid_exists(attempt_process), timeout=30)
    assert secret_dir.secret_dir_path(attempt.pk).exists()  # the crash left it behind
    call_command("cleanup")  # its lost-workers sweep: the worker process of the attempt no longer exists here
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.FAILED and "it was killed or its machine went away" in attempt.error
    assert not secret_dir.secret_dir_path(attempt.pk).exists()
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(container_name(attempt.pk))
    assert Alert.objects.filter(kind="worker_lost", attempt_id=attempt.pk).exists()


def test_admin_cleanup_removes_only_this_installations_leftovers(
    world, docker_client, base_image, admin_client, settings, container_factory
):
    ours, theirs = (world.attempt(plan=[custom("true")]) for _ in range(2))
    for attempt in (ours, theirs):
        do_transition(attempt=attempt, to=AttemptStatus.FAILED, error="test")
        secret_dir.write_secret_dir(attempt.pk, {"github_token": world.github_token})

    def named_for(attempt, instance: str):
        labels = {"anyon.managed": "1", "anyon.attempt": str(attempt.pk), "anyon.instance": instance}
        return container_factory(base_image, name=container_name(attempt.pk), labels=labels)

    mine = named_for(ours, settings.ANYON_INSTANCE)
    foreign = named_for(theirs, "another-installation")  # another installation whose attempt ids collide with ours
    response = admin_client.post(
        "/admin/execution/attempt/",
        {"action": "cleanup_selected", "_selected_action": [ours.pk, theirs.pk]},
        follow=True,
    )
    assert "Cleaned 2 finished attempt(s)." in response.content.decode()
    assert not secret_dir.secret_dir_path(ours.pk).exists() and not secret_dir.secret_dir_path(theirs.pk).exists()
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(mine.id)
    assert docker_client.containers.get(foreign.id).status == "running"
