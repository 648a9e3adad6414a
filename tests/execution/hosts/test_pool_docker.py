"""The warm pool against the real engine and the real runtime image: a claimed container is clean, serves one
attempt and goes; credentials are bound at claim time in both modes; stale containers are replaced; the pool
refills; the sweeps know warm containers."""

from __future__ import annotations

import docker
import pytest
from django.core.management import call_command

from execution.attempts import secret_dir, selectors
from execution.attempts.actions import do_start_follow_up, do_transition
from execution.hosts.container_removal import wait_for_removals
from execution.hosts.pool import actions as pool_actions
from execution.hosts.pool import fingerprint as pool_fingerprint
from execution.hosts.pool import refill
from execution.models import Attempt, AttemptStatus, JobStatus, PoolContainer
from execution.runner import run_attempt, run_job
from execution.sweeps.cleanup import sweep_containers, sweep_pool, sweep_secret_dirs
from shared.docker import seccomp
from shared.docker.engine import DockerEngine
from tests.execution.conftest import custom, logs
from tests.execution.runner.test_sealed_docker import repo, sealed  # noqa: F401  (fixtures)
from tests.fakes.anthropic_api import TextReply
from tests.fixtures.queueing import held_from_workers

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def warm_pool(world, settings):
    """A pool of two on this test's queue; emptied (containers, volumes, dirs) afterwards."""
    settings.ANYON_POOL_SIZE = 2
    yield settings
    settings.ANYON_POOL_SIZE = 0
    refill.refill_pool()


def warm_rows() -> list[PoolContainer]:
    return list(PoolContainer.objects.all())


def gone(docker_client, container_id: str) -> bool:
    assert wait_for_removals(30)  # an attempt's container goes right after its end, in the background
    try:
        docker_client.containers.get(container_id)
    except docker.errors.NotFound:
        return True
    return False


def volume_exists(docker_client, name: str) -> bool:
    try:
        docker_client.volumes.get(name)
    except docker.errors.NotFound:
        return False
    return True


def test_a_claimed_container_is_hardened_clean_used_once_and_removed(world, warm_pool, docker_client, settings):
    assert "made 2" in refill.refill_pool()
    rows = warm_rows()
    assert len(rows) == 2
    info = docker_client.api.inspect_container(rows[0].container_id)
    assert info["State"]["Running"]
    assert info["HostConfig"]["CapDrop"] == ["ALL"] and "no-new-privileges" in info["HostConfig"]["SecurityOpt"]
    assert f"seccomp={seccomp.profile_json()}" in info["HostConfig"]["SecurityOpt"]
    assert info["Config"]["User"] == str(settings.ANYON_CONTAINER_UID)
    assert info["Config"]["Image"] == settings.ANYON_CLOUD_IMAGE
    assert "anyon.attempt" not in info["Config"]["Labels"] and "anyon.owner" not in info["Config"]["Labels"]
    assert all(list(secret_dir.secret_dir_path(row.secret_dir).iterdir()) == [] for row in rows)  # nobody's yet

    leave = 'echo mine > /workspace/leftover; echo mine > /home/anyon/leftover; test -n "$GH_TOKEN" && echo has-token'
    first = world.attempt(plan=[custom("sh", "-c", leave)])
    assert run_attempt(first.pk) == AttemptStatus.SUCCEEDED, logs(first)
    first.refresh_from_db()
    claimed = next(row for row in rows if row.container_id == first.container_id)
    assert first.secret_dir == claimed.secret_dir and first.workspace_volume == claimed.workspace_volume
    assert "warm from the pool" in logs(first)
    assert "has-token" in logs(first, "stdout")  # the GitHub credential was bound at claim time
    assert gone(docker_client, first.container_id)  # used for exactly one attempt, then removed
    assert not secret_dir.secret_dir_path(first.secret_dir).exists()
    assert volume_exists(docker_client, first.workspace_volume)  # the attempt's workspace, for follow-ups
    assert [row.pk for row in warm_rows()] == [r.pk for r in rows if r.pk != claimed.pk]

    assert "made 1" in refill.refill_pool()
    look = "ls -A /workspace /home/anyon; test ! -e /workspace/leftover && test ! -e /home/anyon/leftover && echo clean"
    others = [world.attempt(plan=[custom("sh", "-c", look)]) for _ in range(2)]
    for attempt in others:
        assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
        attempt.refresh_from_db()
        assert "clean" in logs(attempt, "stdout") and "leftover" not in logs(attempt, "stdout")
        assert attempt.container_id != first.container_id and attempt.workspace_volume != first.workspace_volume
    assert len({a.container_id for a in others}) == 2
    # The pool is empty now: the next attempt gets a container of its own, as without a pool.
    fallback = world.attempt(plan=[custom("true")])
    assert run_attempt(fallback.pk) == AttemptStatus.SUCCEEDED
    fallback.refresh_from_db()
    assert fallback.secret_dir == "" and "Container" in logs(fallback) and "warm from the pool" not in logs(fallback)


def test_stale_containers_are_replaced_and_the_pool_refills(world, warm_pool, docker_client, settings, base_image):
    settings.ANYON_POOL_SIZE = 1
    runtime = settings.ANYON_CLOUD_IMAGE
    settings.ANYON_CLOUD_IMAGE = base_image
    refill.refill_pool()
    (old,) = warm_rows()
    assert docker_client.api.inspect_container(old.container_id)["Config"]["Image"] == base_image
    # A new image: the old warm container is never claimed, and the refill replaces it with everything it had.
    settings.ANYON_CLOUD_IMAGE = runtime
    attempt = world.attempt(plan=[custom("true")])
    assert do_transition(attempt=attempt, to=AttemptStatus.PROVISIONING)  # picked up: claims as a worker would
    assert pool_actions.do_claim_warm_container(attempt=attempt, engine=DockerEngine()) is None
    assert do_transition(attempt=attempt, to=AttemptStatus.RUNNING)  # provisioned without one: the refill may go
    assert "made 1, retired 1" in refill.refill_pool()
    (new,) = warm_rows()
    assert gone(docker_client, old.container_id) and not volume_exists(docker_client, old.workspace_volume)
    assert not secret_dir.secret_dir_path(old.secret_dir).exists()
    assert docker_client.api.inspect_container(new.container_id)["Config"]["Image"] == runtime
    # Too old: replaced too.
    settings.ANYON_POOL_MAX_AGE = 0
    assert "made 1, retired 1" in refill.refill_pool()
    settings.ANYON_POOL_MAX_AGE = 3600
    (newer,) = warm_rows()
    assert newer.container_id != new.container_id and gone(docker_client, new.container_id)
    # A container that died is dropped from the pool and replaced.
    docker_client.api.kill(newer.container_id)
    assert "made 1, retired 1" in refill.refill_pool()
    assert warm_rows()[0].container_id != newer.container_id
    # Claimed: the refill makes a new one; the claimed container is the attempt's, untouched.
    claimed = pool_actions.do_claim_warm_container(attempt=attempt, engine=DockerEngine())
    assert claimed is not None and warm_rows() == []
    assert "made 1" in refill.refill_pool()
    assert len(warm_rows()) == 1 and not gone(docker_client, claimed.container_id)
    # Size 0: the pool empties (today's behaviour).
    settings.ANYON_POOL_SIZE = 0
    last = warm_rows()[0]
    assert "retired 1" in refill.refill_pool()
    assert warm_rows() == [] and gone(docker_client, last.container_id)
    docker_client.api.remove_container(claimed.container_id, force=True)


def test_a_refill_yields_to_attempts_starting(world, warm_pool, docker_client, monkeypatch, settings):
    """Filling the pool while attempts start would only delay them: the refill makes nothing while one waits for a
    worker or provisions, and the claim of that attempt, even from an empty pool, queues the next refill."""
    waiting = world.attempt(plan=[custom("true")])  # queued with its task, not picked up yet
    assert selectors.attempts_starting(queue=settings.ANYON_WORKER_QUEUE)
    assert refill.refill_pool().endswith("made 0, retired 0; yielded to attempts starting")
    assert warm_rows() == []
    assert do_transition(attempt=waiting, to=AttemptStatus.PROVISIONING)
    queued: list[tuple[str, str]] = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *a, **kw: queued.append((func, kw["cluster"])))
    assert pool_actions.do_claim_warm_container(attempt=waiting, engine=DockerEngine()) is None
    assert queued == [("execution.hosts.pool.refill.refill_pool", settings.ANYON_WORKER_QUEUE)]
    assert refill.refill_pool().endswith("made 0, retired 0; yielded to attempts starting")  # it provisions
    assert do_transition(attempt=waiting, to=AttemptStatus.RUNNING)
    assert refill.refill_pool().endswith("made 2, retired 0")
    assert len(warm_rows()) == 2


def test_the_sweeps_know_warm_containers(world, warm_pool, docker_client, monkeypatch, capsys):
    engine = DockerEngine()
    refill.refill_pool()
    busy = world.attempt(plan=[custom("true")])
    finished = world.attempt(plan=[custom("true")])
    assert pool_actions.do_claim_warm_container(attempt=busy, engine=engine) is not None
    assert pool_actions.do_claim_warm_container(attempt=finished, engine=engine) is not None
    do_transition(attempt=busy, to=AttemptStatus.PROVISIONING)
    do_transition(attempt=busy, to=AttemptStatus.RUNNING)
    do_transition(attempt=finished, to=AttemptStatus.PROVISIONING)
    do_transition(attempt=finished, to=AttemptStatus.FAILED)
    assert refill.refill_pool().endswith("made 2, retired 0")
    kept, unowned = warm_rows()
    PoolContainer.objects.filter(pk=unowned.pk).delete()  # its row lost: nobody owns it
    warm = [kept]
    monkeypatch.setattr(pool_fingerprint, "CREATING_GRACE_SECONDS", 0)

    call_command("cleanup_containers")
    out = capsys.readouterr().out
    assert "a warm container nobody owns" in out and "attempt finished" in out
    assert gone(docker_client, unowned.container_id) and gone(docker_client, finished.container_id)
    assert not volume_exists(docker_client, unowned.workspace_volume)
    assert not secret_dir.secret_dir_path(unowned.secret_dir).exists()
    assert volume_exists(docker_client, finished.workspace_volume)  # an attempt's workspace: the idle sweep's
    assert not gone(docker_client, busy.container_id)
    assert all(not gone(docker_client, row.container_id) for row in warm)

    stray = secret_dir.write_secret_dir(secret_dir.new_pool_dir_name(), {})
    secret_dir.write_secret_dir(finished.secret_dir, {})  # left behind by a crash
    report = sweep_secret_dirs()
    assert str(stray) in report.removed and str(secret_dir.secret_dir_path(finished.secret_dir)) in report.removed
    assert secret_dir.secret_dir_path(busy.secret_dir).exists()
    assert all(secret_dir.secret_dir_path(row.secret_dir).exists() for row in warm)

    orphan_volume = docker_client.volumes.create(
        "anyon-workspace-pool-0123456789abcdef",
        labels={**pool_fingerprint.pool_labels(), "anyon.created": "1"},
    )
    report = sweep_pool()
    assert orphan_volume.name in report.removed
    assert not volume_exists(docker_client, orphan_volume.name)
    assert all(volume_exists(docker_client, row.workspace_volume) for row in warm)
    assert volume_exists(docker_client, busy.workspace_volume)
    assert sweep_containers().removed == []
    docker_client.api.remove_container(busy.container_id, force=True)
    assert Attempt.objects.filter(pk=busy.pk, secret_dir__startswith="pool-").exists()


def test_a_mounted_agent_run_in_a_warm_container(world, warm_pool, repo, github):  # noqa: F811
    settings = warm_pool
    settings.ANYON_POOL_SIZE = 1
    refill.refill_pool()
    world.api.enqueue(TextReply("Done."))
    attempt = world.attempt(repo_url=repo, prompt="Say done")
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    attempt.refresh_from_db()
    assert attempt.secret_dir.startswith("pool-") and "warm from the pool" in logs(attempt)
    assert world.api.credentials() == {world.claude_token}  # the Claude token, written at claim time
    assert not secret_dir.secret_dir_path(attempt.secret_dir).exists()
    # A follow-up runs in a container of its own on the claimed workspace (the recorded names), never a warm one.
    refill.refill_pool()
    warm_left = {row.container_id for row in warm_rows()}
    assert len(warm_left) == 1
    world.api.enqueue(TextReply("Again."))
    with held_from_workers():
        job = do_start_follow_up(attempt=attempt, prompt="Once more")
    assert run_job(job.pk) == JobStatus.SUCCEEDED, logs(attempt)
    after = Attempt.objects.get(pk=attempt.pk)
    assert after.workspace_volume == attempt.workspace_volume and after.container_id not in warm_left
    assert {row.container_id for row in warm_rows()} == warm_left
    assert not secret_dir.secret_dir_path(attempt.secret_dir).exists()


def test_a_sealed_agent_run_in_a_warm_container(world, warm_pool, repo, sealed, github):  # noqa: F811
    settings = warm_pool
    settings.ANYON_POOL_SIZE = 1
    refill.refill_pool()
    (row,) = warm_rows()
    env = DockerEngine().inspect(row.container_id)["Config"]["Env"]
    assert not any(e.startswith(("ANTHROPIC_API_KEY=", "CLAUDE_CODE_OAUTH_TOKEN=")) for e in env)
    world.api.enqueue(TextReply("Done."))
    attempt = world.attempt(repo_url=repo, prompt="Say done")
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    attempt.refresh_from_db()
    assert attempt.container_id == row.container_id and "Sealed run" in logs(attempt)
    # The proxy added both credentials; the container only ever had the placeholder.
    assert world.api.credentials() == {world.claude_token}
    assert all(value not in logs(attempt) for value in world.values)
    assert not secret_dir.secret_dir_path(attempt.secret_dir).exists()


def test_a_claimed_container_is_removed_when_the_session_fails_before_its_first_step(
    world,
    warm_pool,
    repo,  # noqa: F811
    docker_client,
):
    settings = warm_pool
    settings.ANYON_CREDENTIAL_MODE = "sealed"
    settings.ANYON_EGRESS_CONTROL = str(settings.ANYON_TEMP_DIR / "no-proxy.sock")  # nobody answers there
    settings.ANYON_POOL_SIZE = 1
    refill.refill_pool()
    (row,) = warm_rows()
    attempt = world.attempt(plan=[custom("true")], repo_url=repo)
    assert run_attempt(attempt.pk) == AttemptStatus.FAILED
    attempt.refresh_from_db()
    assert attempt.container_id == row.container_id and "egress proxy" in attempt.error
    assert gone(docker_client, row.container_id)
    assert not secret_dir.secret_dir_path(row.secret_dir).exists()
