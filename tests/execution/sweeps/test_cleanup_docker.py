"""Cleanup sweeps against the real engine: orphan secret dirs and containers, stale attempts, idle workspaces.
Unlabelled containers and other installations' containers are never touched."""

from __future__ import annotations

import os
from datetime import timedelta

import docker
import pytest
from django.core.management import call_command
from django.utils import timezone

from execution.attempts import secret_dir
from execution.attempts.actions import do_transition
from execution.hosts.container_removal import wait_for_removals
from execution.models import Attempt, AttemptStatus
from execution.sweeps.cleanup import run_scheduled_cleanup, sweep_containers, sweep_idle_workspaces, sweep_secret_dirs
from shared.models import Alert
from tests.execution.conftest import custom

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def labelled(docker_client, base_image, settings, **labels):
    defaults = {"anyon.managed": "1", "anyon.instance": settings.ANYON_INSTANCE, "anyon.expires": "9999999999"}
    return docker_client.containers.run(
        base_image, ["sleep", "infinity"], detach=True, network_mode="none", labels={**defaults, **labels}
    )


def test_orphan_secret_dirs_are_removed_active_ones_kept(world, settings, capsys):
    finished = world.attempt(plan=[custom("true")])
    do_transition(attempt=finished, to=AttemptStatus.PROVISIONING)
    do_transition(attempt=finished, to=AttemptStatus.FAILED)
    running = world.attempt(plan=[custom("true")])
    do_transition(attempt=running, to=AttemptStatus.PROVISIONING)
    for attempt in (finished, running):
        secret_dir.write_secret_dir(attempt.pk, {"github_token": world.github_token})
    (secret_dir.secrets_root() / "999999").mkdir()  # attempt that does not exist
    call_command("cleanup", "--only", "secret-dirs")
    out = capsys.readouterr().out
    assert not secret_dir.secret_dir_path(finished.pk).exists()
    assert not secret_dir.secret_dir_path(999999).exists()
    assert secret_dir.secret_dir_path(running.pk).exists()
    assert "[1/1] secret-dirs" in out and "removed 2" in out
    # too old, even though its attempt looks active
    settings.ANYON_SECRET_DIR_MAX_AGE = 0
    os.utime(secret_dir.secret_dir_path(running.pk), (0, 0))
    assert len(sweep_secret_dirs().removed) == 1
    assert Alert.objects.filter(kind="orphan_removed").exists()


def test_orphan_containers_only_ours(world, docker_client, base_image, settings):
    active = world.attempt(plan=[custom("true")])
    do_transition(attempt=active, to=AttemptStatus.PROVISIONING)
    keep_active = labelled(docker_client, base_image, settings, **{"anyon.attempt": str(active.pk)})
    unknown = labelled(docker_client, base_image, settings, **{"anyon.attempt": "424242"})
    expired = labelled(docker_client, base_image, settings, **{"anyon.attempt": str(active.pk), "anyon.expires": "1"})
    foreign = labelled(docker_client, base_image, settings, **{"anyon.instance": "someone-else", "anyon.attempt": "1"})
    unlabelled = docker_client.containers.run(base_image, ["sleep", "infinity"], detach=True, network_mode="none")
    try:
        report = sweep_containers()
        names = set(report.removed)
        assert unknown.name in names and expired.name in names
        assert keep_active.name not in names and foreign.name not in names
        for survivor in (keep_active, foreign, unlabelled):
            survivor.reload()
            assert survivor.status == "running"
        for gone in (unknown, expired):
            with pytest.raises(docker.errors.NotFound):
                gone.reload()
    finally:
        for c in (keep_active, foreign, unlabelled):
            c.remove(force=True)


def test_stale_attempt_is_failed_and_cleaned(world, docker_client, base_image, settings):
    attempt = world.attempt(plan=[custom("true")])
    do_transition(attempt=attempt, to=AttemptStatus.PROVISIONING, worker="gone-host:123")
    container = labelled(docker_client, base_image, settings, **{"anyon.attempt": str(attempt.pk)})
    Attempt.objects.filter(pk=attempt.pk).update(
        status=AttemptStatus.RUNNING, container_id=container.id, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    secret_dir.write_secret_dir(attempt.pk, {"github_token": world.github_token})
    summary = run_scheduled_cleanup()
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.FAILED and "gone-host:123 stopped sending heartbeats" in attempt.error
    assert not secret_dir.secret_dir_path(attempt.pk).exists()
    with pytest.raises(docker.errors.NotFound):
        container.reload()
    assert "stale attempts: examined 1, removed 1" in summary
    assert Alert.objects.filter(kind="stale_attempt", attempt_id=attempt.pk).exists()


def test_idle_workspace_is_removed_after_ttl(world, docker_client, settings):
    attempt = world.attempt(plan=[custom("sh", "-c", "echo data > /workspace/file")])
    from execution.runner import run_attempt

    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED
    assert wait_for_removals(30)  # its container, removed right after the attempt (a volume in use stays)
    attempt.refresh_from_db()
    volume = attempt.workspace_volume
    assert sweep_idle_workspaces().removed == []  # fresh: kept
    settings.ANYON_ATTEMPT_IDLE_TTL = 0
    assert sweep_idle_workspaces().removed == [volume]
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(volume)
    attempt.refresh_from_db()
    assert attempt.workspace_volume == "" and attempt.status == AttemptStatus.SUCCEEDED


def test_a_container_named_before_names_carried_the_installation_is_still_cleaned_up(
    world, docker_client, base_image, settings, container_factory
):
    from execution.attempts.actions import do_clean_up_attempt

    attempt = world.attempt(plan=[custom("true")])
    do_transition(attempt=attempt, to=AttemptStatus.FAILED, error="test")
    old = container_factory(
        base_image,
        name=f"anyon-attempt-{attempt.pk}-{settings.ANYON_INSTANCE}",  # the old name, kept unique for this run
        labels={"anyon.managed": "1", "anyon.instance": settings.ANYON_INSTANCE, "anyon.attempt": str(attempt.pk)},
    )
    Attempt.objects.filter(pk=attempt.pk).update(container_id=old.id)
    attempt.refresh_from_db()
    assert do_clean_up_attempt(attempt=attempt)
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(old.id)
