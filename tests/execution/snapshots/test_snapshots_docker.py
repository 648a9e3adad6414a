"""Snapshots of an environment's setup in the real image and engine (docs/ARCHITECTURE.md, "Snapshots"): the second
attempt starts from the snapshot without its setup, a changed lockfile or setup script makes a new one, another user
never gets one, and drop and sweep remove the image and volumes."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from datetime import timedelta
from pathlib import Path

import docker
import pytest
import time_machine
from django.utils import timezone

from execution.attempts.actions import do_create_task, do_start_attempt, do_start_follow_up
from execution.attempts.steps import Step
from execution.environments.actions import do_save_environment
from execution.models import Attempt, AttemptStatus, JobStatus, RunKind, Snapshot
from execution.runner import run_attempt, run_job
from execution.snapshots.actions import CREATING_GRACE_SECONDS, do_drop_snapshot
from execution.sweeps.snapshots import sweep_snapshots
from secrets_app.secret_store import do_store_secret
from shared.docker import labels as label
from shared.docker.engine import DockerEngine
from tests.execution.conftest import logs, oauth_token
from tests.execution.runner.test_sealed_docker import sealed  # noqa: F401 (a fixture)
from tests.fakes.anthropic_api import FakeAnthropicAPI, TextReply, ToolUseReply
from tests.fakes.github import FakeGitHub, classic_token
from tests.fixtures.leaks import search_and_remove_snapshot_images
from tests.fixtures.queueing import held_from_workers

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

SETUP = (
    "echo outside > /var/tmp/setup-marker && mkdir -p node_modules/dep ~/.cache/dep && "
    "echo installed > node_modules/dep/index.js && echo cached > ~/.cache/dep/blob && echo setup-done"
)
#: A step after setup (or the start from a snapshot) that fails unless everything the setup made is there.
CHECK = Step(
    RunKind.CUSTOM,
    ["sh", "-c", "test -f /var/tmp/setup-marker && test -f node_modules/dep/index.js && test -f ~/.cache/dep/blob "
     "&& cat NEWS.md 2>/dev/null; echo prepared-files-present"],
    "Check prepared files",
)  # fmt: skip
MAINTENANCE = "echo maintenance-ran > /var/tmp/maintenance-marker && echo maintenance-ran"


def _git(*args: str, cwd: Path) -> None:
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@anyon.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@anyon.invalid",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def push_commit(bare: Path, files: dict[str, str]) -> None:
    """A new commit on the fake repository's main with ``files`` changed."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "w"
        _git("clone", "--quiet", str(bare), str(work), cwd=Path(tmp))
        for name, content in files.items():
            (work / name).write_text(content)
        _git("add", "-A", cwd=work)
        _git("commit", "--quiet", "-m", "change", cwd=work)
        _git("push", "--quiet", "origin", "HEAD:main", cwd=work)


@pytest.fixture(autouse=True)
def _no_snapshot_images_left(docker_client, settings):
    """The database is emptied after each test: the snapshot images it named are searched for leaks and removed."""
    yield
    search_and_remove_snapshot_images(docker_client, label=f"{label.INSTANCE}={settings.ANYON_INSTANCE}")


@pytest.fixture
def repo(world, github: FakeGitHub) -> str:
    github.add_token(world.github_token, login="alice-gh")
    return github.add_repo("acme", "widgets", {"README.md": "# widgets\n", "requirements.txt": "requests==2.32\n"})


def run_with_setup(world, repo: str, *, setup: str = SETUP, maintenance: str = "", user=None, api=None) -> Attempt:
    """An attempt on a repository whose environment has ``setup`` (and ``maintenance``): clone → setup → branch →
    check → agent, run to its end."""
    user = user or world.user
    do_save_environment(owner=user, repository="acme/widgets", setup_script=setup, maintenance_script=maintenance)
    (api or world.api).enqueue(TextReply("done"))
    task = do_create_task(owner=user, title="demo", repo_url=repo, base_branch="main", prompt="Say pong")
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    attempt.plan = [*attempt.plan[:-1], CHECK.to_plan(), attempt.plan[-1]]
    attempt.save(update_fields=["plan"])
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    attempt.refresh_from_db()
    return attempt


def kinds(attempt: Attempt) -> list[str]:
    return list(attempt.runs.order_by("id").values_list("kind", flat=True))


def gone(docker_client, snapshot: Snapshot) -> bool:
    """Neither its image nor a volume labelled with its key is left on the engine."""
    try:
        docker_client.images.get(snapshot.image_id)
        return False
    except docker.errors.ImageNotFound:
        pass
    return not docker_client.volumes.list(filters={"label": f"{label.SNAPSHOT}={snapshot.key}"})


def test_the_second_attempt_starts_from_the_snapshot_runs_maintenance_and_skips_setup(
    world, repo, github, docker_client
):
    first = run_with_setup(world, repo, maintenance=MAINTENANCE)
    assert RunKind.SETUP in kinds(first) and RunKind.MAINTENANCE not in kinds(first)
    assert first.snapshot_saved and first.setup_seconds is not None and first.from_snapshot_of is None
    assert "snapshot saved" in logs(first)
    snapshot = Snapshot.objects.get()
    assert snapshot.owner == world.user and snapshot.lockfiles == [["requirements.txt", snapshot.lockfiles[0][1]]]
    image = docker_client.images.get(snapshot.image_id)
    assert image.labels[label.SNAPSHOT] == snapshot.key and image.labels[label.OWNER] == str(world.user.pk)
    assert image.labels[label.ATTEMPT] == "" and image.labels[label.POOL] == ""
    assert image.tags == [snapshot.image] and snapshot.size_bytes > 0

    push_commit(github.repo_path("acme", "widgets"), {"NEWS.md": "fresh base\n"})
    second = run_with_setup(world, repo, maintenance=MAINTENANCE)
    assert RunKind.SETUP not in kinds(second), logs(second)
    assert RunKind.MAINTENANCE in kinds(second)
    text = logs(second)
    assert "setup-done" not in text and "maintenance-ran" in text and "prepared-files-present" in text
    assert "fresh base" in text  # the fetch checked out the new base
    assert second.base_commit != first.base_commit
    assert second.from_snapshot_of == snapshot.created_at and not second.snapshot_saved
    snapshot.refresh_from_db()
    assert snapshot.hits == 1 and Snapshot.objects.count() == 1
    assert second.workspace_volume != first.workspace_volume


#: The follow-up's agent looks for what the setup left outside the volumes and in them.
LOOK = "cat /var/tmp/setup-marker || echo no-'marker'; cat node_modules/dep/index.js"


def test_a_follow_up_starts_from_the_snapshot_its_attempt_made_or_the_runtime_image_once_it_is_gone(
    world, repo, docker_client
):
    first = run_with_setup(world, repo)
    snapshot = Snapshot.objects.get()
    world.api.enqueue(ToolUseReply("Bash", {"command": LOOK, "description": "look"}), TextReply("Looked."))
    with held_from_workers():
        job = do_start_follow_up(attempt=first, prompt="Look at the setup's files")
    assert run_job(job.pk) == JobStatus.SUCCEEDED, logs(first)
    seen = json.dumps(world.api.requests[-1].json)
    assert "outside" in seen and "installed" in seen and "no-marker" not in seen  # /var/tmp is the snapshot's
    assert f"made from the snapshot of {snapshot.created_at:%Y-%m-%d %H:%M} UTC" in logs(first)

    second = run_with_setup(world, repo)  # started from the snapshot: its follow-up is made from it as well
    assert second.from_snapshot_of == snapshot.created_at
    world.api.enqueue(ToolUseReply("Bash", {"command": LOOK, "description": "look"}), TextReply("Looked."))
    with held_from_workers():
        job = do_start_follow_up(attempt=second, prompt="Look again")
    assert run_job(job.pk) == JobStatus.SUCCEEDED, logs(second)
    assert "outside" in json.dumps(world.api.requests[-1].json)

    do_drop_snapshot(snapshot=snapshot, engine=DockerEngine())
    world.api.enqueue(ToolUseReply("Bash", {"command": LOOK, "description": "look"}), TextReply("Looked."))
    with held_from_workers():
        job = do_start_follow_up(attempt=first, prompt="And once more")
    assert run_job(job.pk) == JobStatus.SUCCEEDED, logs(first)
    seen = json.dumps(world.api.requests[-1].json)
    assert "no-marker" in seen and "installed" in seen  # the volumes are the attempt's; /var/tmp is the image's
    assert "The snapshot this attempt's setup prepared is gone: the container is made from the runtime image" in logs(
        first
    )


def test_a_changed_lockfile_or_setup_script_makes_a_new_snapshot(world, repo, github):
    run_with_setup(world, repo)
    push_commit(github.repo_path("acme", "widgets"), {"requirements.txt": "requests==2.33\n"})
    changed_lock = run_with_setup(world, repo)
    assert RunKind.SETUP in kinds(changed_lock)
    assert "lockfiles changed" in logs(changed_lock) and changed_lock.snapshot_saved
    assert changed_lock.from_snapshot_of is None
    changed_setup = run_with_setup(world, repo, setup=SETUP + " && echo v2")
    assert RunKind.SETUP in kinds(changed_setup) and "Started from the snapshot" not in logs(changed_setup)
    assert Snapshot.objects.count() == 3 and set(Snapshot.objects.values_list("hits", flat=True)) == {0}
    again = run_with_setup(world, repo, setup=SETUP + " && echo v2")
    assert RunKind.SETUP not in kinds(again)


def test_another_user_with_the_same_repository_and_setup_gets_no_snapshot(world, repo, github, bob):
    run_with_setup(world, repo)
    alices = Snapshot.objects.get()
    token = classic_token()
    github.add_token(token, login="bob-gh")
    claude = oauth_token()
    do_store_secret(owner=bob, provider="github", kind="pat", value=token, account_login="bob")
    do_store_secret(owner=bob, provider="claude", kind="oauth_token", value=claude)
    with FakeAnthropicAPI(expected_token=claude) as api:
        from django.conf import settings

        settings.ANYON_ANTHROPIC_API_URL = api.url
        bobs = run_with_setup(world, repo, user=bob, api=api)
    assert RunKind.SETUP in kinds(bobs) and bobs.from_snapshot_of is None
    alices.refresh_from_db()
    assert alices.hits == 0
    assert Snapshot.objects.filter(owner=bob).count() == 1


def test_drop_and_sweep_remove_the_image_and_volumes(world, repo, docker_client, settings):
    run_with_setup(world, repo)
    dropped = Snapshot.objects.get()
    do_drop_snapshot(snapshot=dropped, engine=DockerEngine())
    assert gone(docker_client, dropped) and not Snapshot.objects.exists()

    run_with_setup(world, repo)
    old = Snapshot.objects.get()
    Snapshot.objects.filter(pk=old.pk).update(last_used_at=timezone.now() - timedelta(days=30))
    run_with_setup(world, repo, setup=SETUP + " && echo orphan")
    orphan = Snapshot.objects.exclude(pk=old.pk).get()
    Snapshot.objects.filter(pk=orphan.pk).delete()  # its image has no row now: an orphan, older than the grace
    with time_machine.travel(timezone.now() + timedelta(seconds=CREATING_GRACE_SECONDS + 60)):
        settings.ANYON_SNAPSHOT_MAX_AGE_DAYS = 14
        report = sweep_snapshots()
    assert gone(docker_client, old) and gone(docker_client, orphan) and not Snapshot.objects.exists()
    assert len(report.removed) == 2, report.removed


def test_the_size_caps_drop_the_least_recently_used_first(world, repo, docker_client, settings):
    run_with_setup(world, repo)
    run_with_setup(world, repo, setup=SETUP + " && echo v2")
    older, newer = Snapshot.objects.order_by("created_at")
    Snapshot.objects.filter(pk=older.pk).update(last_used_at=timezone.now() - timedelta(hours=1))
    settings.ANYON_SNAPSHOT_MAX_BYTES_PER_USER = newer.size_bytes + 1
    sweep_snapshots()
    assert list(Snapshot.objects.values_list("pk", flat=True)) == [newer.pk]
    assert gone(docker_client, older)


@pytest.mark.usefixtures("sealed")
def test_a_sealed_run_fetches_its_base_through_the_proxy_on_a_start_from_a_snapshot(world, repo, github):
    first = run_with_setup(world, repo)
    assert first.snapshot_saved, logs(first)
    push_commit(github.repo_path("acme", "widgets"), {"NEWS.md": "fresh base\n"})
    second = run_with_setup(world, repo)
    assert RunKind.SETUP not in kinds(second) and "fresh base" in logs(second)
    assert second.from_snapshot_of is not None
