"""Snapshots of an environment's setup (docs/ARCHITECTURE.md, "Snapshots"): the key, taking one after a setup,
starting from one, dropping one. The sweep is ``execution.sweeps.snapshots``.

A snapshot is one image: the attempt's container committed after its setup and the restart that follows it (what
the setup installed outside the volumes; a commit holds files, and no process of the setup is left anyway), with
copies of its workspace and home volumes put into /workspace and the home directory by a helper container of Anyon's
(never by a command in the attempt's container). An attempt started from it gets new, empty volumes there, which the
engine fills from the image as it creates the container. The image carries the labels ``anyon.snapshot`` (the key),
``anyon.owner`` and ``anyon.environment`` (the repository), so the sweep finds it. A snapshot is its owner's alone:
the lookup is by owner first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import secrets
import time

import docker
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from execution.attempts.containers import HOME, home_volume, labels_for, new_workspace_volume, seccomp_profile
from execution.attempts.runs import do_set_workspace_volume
from execution.attempts.steps import WORKSPACE
from execution.git import anyon_git
from execution.live import wake_environment_pages
from execution.models import Attempt, Snapshot
from shared.docker import labels as label
from shared.docker.engine import DockerEngine, EngineError

logger = logging.getLogger(__name__)

IMAGE_REPOSITORY = "anyon-snapshot"
#: Images younger than this may not have their row yet (a snapshot being taken): the sweep leaves them.
CREATING_GRACE_SECONDS = 900
_SOURCE_WORKSPACE, _SOURCE_HOME = "/anyon-source/workspace", "/anyon-source/home"
_LOCKFILE_LINE = re.compile(r"^[0-7]{6} blob ([0-9a-f]{40,64})\t(.+)$")

#: Run in a helper container made from the committed setup state, with the attempt's volumes mounted read-only:
#: copies them into the container's own /workspace and home (its root is writable; the helper is then committed as
#: the snapshot's image), then prints the lockfiles of the base commit (``$1`` git dir, ``$2`` commit).
BAKE_SCRIPT = anyon_git.SAFE + (
    f"set -e; cp -a {_SOURCE_WORKSPACE}/. {WORKSPACE}/; cp -a {_SOURCE_HOME}/. {HOME}/; " + anyon_git.LOCKFILES_SCRIPT
)


class SnapshotError(Exception):
    """A snapshot could not be taken or restored; the message says why."""


def setup_hash(setup: str) -> str:
    """``setup``: what of the environment shapes the setup's result (its script and variables)."""
    return hashlib.sha256(setup.encode()).hexdigest()


def parse_lockfiles(listing: str) -> list[list[str]]:
    """``ls-tree`` lines of lockfiles → sorted ``[path, blob id]`` (other lines are ignored)."""
    found = [m.groups()[::-1] for line in listing.splitlines() if (m := _LOCKFILE_LINE.match(line))]
    return sorted([path, blob] for path, blob in found)


def snapshot_key(
    *, repo_url: str, setup_hash: str, runtime_image_id: str, sealed: bool, lockfiles: list[list[str]]
) -> str:
    """What a prepared state depends on: the repository, the setup script, the runtime image, the credential mode
    (the environment a container was made with goes into its image) and every dependency lockfile at the base."""
    fields = [repo_url, setup_hash, runtime_image_id, "sealed" if sealed else "mounted", lockfiles]
    return hashlib.sha256(json.dumps(fields, separators=(",", ":")).encode()).hexdigest()


def snapshot_labels(*, owner_id: int, repo_url: str, key: str) -> dict[str, str]:
    return {
        label.MANAGED: "1",
        label.INSTANCE: settings.ANYON_INSTANCE,
        label.QUEUE: settings.ANYON_WORKER_QUEUE,
        label.OWNER: str(owner_id),
        label.ENVIRONMENT: repo_url,
        label.SNAPSHOT: key,
        label.CREATED: str(int(time.time())),
    }


def _helper(engine: DockerEngine, argv: list[str], mounts: list, labels: dict[str, str]) -> str:
    code, out = engine.run_once(
        settings.ANYON_CLOUD_IMAGE,
        argv,
        mounts=mounts,
        user=str(settings.ANYON_CONTAINER_UID),
        labels=labels,
        stdin=b"",
        timeout=3600,
        seccomp_profile=seccomp_profile(),
    )
    if code != 0:
        raise SnapshotError(f"the helper container ({argv[0]}) exited with {code}: {out[-300:]}")
    return out


def read_lockfiles(engine: DockerEngine, *, workspace_volume: str, commit: str, labels: dict[str, str]) -> list:
    """The lockfiles of ``commit``, read by Anyon's git in a helper container on the workspace (read-only).
    ``labels``: the helper's, those of the attempt it works for (the containers sweep keeps it while that works)."""
    mount = docker.types.Mount(_SOURCE_WORKSPACE, workspace_volume, type="volume", read_only=True)
    argv = anyon_git.lockfiles_argv(git_dir=f"{_SOURCE_WORKSPACE}/.git", commit=commit)
    return parse_lockfiles(_helper(engine, argv, [mount], labels))


def find_snapshot(*, owner, environment_id: int, setup: str, runtime_image_id: str) -> Snapshot | None:
    """The owner's newest snapshot on this host for this environment, setup and image (its lockfiles are checked
    once the base is fetched). Another user's is never a candidate, whatever its repository."""
    return (
        Snapshot.objects.filter(
            owner=owner,
            environment_id=environment_id,
            queue=settings.ANYON_WORKER_QUEUE,
            setup_hash=setup_hash(setup),
            runtime_image_id=runtime_image_id,
        )
        .order_by("-created_at", "-id")
        .first()
    )


def do_take_snapshot(
    *, attempt: Attempt, engine: DockerEngine, container_id: str, environment_id: int, setup: str, sealed: bool
) -> Snapshot:
    """Keep the attempt's prepared state. The container was restarted after the setup: no process of it is left
    (a commit holds files only, never a process), and it stays idle while this runs.

    The base commit's lockfiles are read by a helper container (the key). The container's filesystem is committed
    (what the setup changed outside the volumes); a helper container made from that image copies the workspace and
    home volumes into its own filesystem and is committed as the snapshot's image. An attempt started from it gets
    fresh volumes, which the engine fills from the image as it creates the container."""
    owner_id, repo_url = attempt.task.owner_id, attempt.task.repo_url
    runtime = engine.image_config(settings.ANYON_CLOUD_IMAGE)
    env = list((runtime.get("Config") or {}).get("Env") or [])
    lockfiles = read_lockfiles(
        engine, workspace_volume=attempt.workspace_volume, commit=attempt.base_commit, labels=labels_for(attempt)
    )
    shash = setup_hash(setup)
    key = snapshot_key(
        repo_url=repo_url, setup_hash=shash, runtime_image_id=runtime["Id"], sealed=sealed, lockfiles=lockfiles
    )
    # Every label key an attempt's container has is named, so none of its values (its attempt, the pool's mark)
    # passes into an image, and from there into the containers made from it.
    cleared = {label.ATTEMPT: "", label.EXPIRES: "", label.POOL: "", label.OWNER: str(owner_id)}
    setup_state = engine.commit(container_id, repository="", tag="", labels=cleared, env=env)
    token = secrets.token_hex(8)
    image = f"{IMAGE_REPOSITORY}:{settings.ANYON_INSTANCE.lower()}-{token}"
    mounts = [
        docker.types.Mount(_SOURCE_WORKSPACE, attempt.workspace_volume, type="volume", read_only=True),
        docker.types.Mount(_SOURCE_HOME, home_volume(attempt.workspace_volume), type="volume", read_only=True),
    ]
    labels = snapshot_labels(owner_id=owner_id, repo_url=repo_url, key=key)
    try:
        image_id, _ = engine.run_and_commit(
            setup_state,
            [anyon_git.SH, "-c", BAKE_SCRIPT],
            mounts=mounts,
            user=str(settings.ANYON_CONTAINER_UID),
            labels=labels_for(attempt),  # the containers sweep leaves it alone while the attempt works
            commit={
                "repository": IMAGE_REPOSITORY,
                "tag": image.split(":", 1)[1],
                "conf": {
                    "Labels": {**cleared, **labels},
                    "Env": env,
                    "Cmd": ["sleep", "infinity"],
                    "WorkingDir": WORKSPACE,
                },
            },
            seccomp_profile=seccomp_profile(),
        )
    finally:
        with contextlib.suppress(EngineError):  # only the layers the snapshot's image builds on stay
            engine.remove_image(setup_state)
    size = max(0, int(engine.image_config(image_id).get("Size") or 0) - int(runtime.get("Size") or 0))
    now = timezone.now()
    with transaction.atomic():
        snapshot = Snapshot.objects.create(
            owner_id=owner_id,
            environment_id=environment_id,
            repo_url=repo_url,
            queue=settings.ANYON_WORKER_QUEUE,
            key=key,
            setup_hash=shash,
            runtime_image_id=runtime["Id"],
            lockfiles=lockfiles,
            base_commit=attempt.base_commit,
            image=image,
            image_id=image_id,
            size_bytes=size,
            attempt_id=attempt.pk,
            created_at=now,
            last_used_at=now,
        )
        Attempt.objects.filter(pk=attempt.pk).update(snapshot_saved=True)
        wake_environment_pages(owner_id)
    logger.info("snapshot %s of %s taken (%s bytes)", snapshot.pk, repo_url, snapshot.size_bytes)
    return snapshot


def new_volumes(*, attempt: Attempt) -> None:
    """The attempt's workspace and home get fresh names: empty volumes, which the engine fills from the snapshot's
    image as it creates the container (the image's /workspace and home)."""
    do_set_workspace_volume(attempt=attempt, volume=new_workspace_volume(attempt.pk))


def lockfiles_match(*, engine: DockerEngine, snapshot: Snapshot, attempt: Attempt, container_id: str) -> bool:
    """Whether the lockfiles at the attempt's fetched base are those the snapshot was made with.

    Read by Anyon's own git (objects by id, none of the workspace's configuration) in the attempt's new container
    right after the fetch, before any untrusted step ran in it: the same objects a helper container would read,
    without the ~0.3 s of making one (docs/PERFORMANCE.md, "Snapshots")."""
    argv = anyon_git.lockfiles_argv(git_dir=anyon_git.REPOSITORY, commit=attempt.base_commit)
    code, out, complete = engine.exec_capture(
        container_id, argv, user=str(settings.ANYON_CONTAINER_UID), environment=anyon_git.own_environment()
    )
    if code != 0 or not complete:
        raise SnapshotError(f"the lockfiles of {attempt.base_commit[:12]} could not be read (exit code {code})")
    return parse_lockfiles(out) == snapshot.lockfiles


def do_use_snapshot(*, snapshot: Snapshot, attempt: Attempt) -> None:
    """The attempt started from the snapshot (its setup did not run)."""
    with transaction.atomic():
        Snapshot.objects.filter(pk=snapshot.pk).update(hits=F("hits") + 1, last_used_at=timezone.now())
        Attempt.objects.filter(pk=attempt.pk).update(from_snapshot_of=snapshot.created_at)
        attempt.from_snapshot_of = snapshot.created_at
        wake_environment_pages(snapshot.owner_id)


def engine_if_reachable() -> DockerEngine | None:
    """The local engine, None when this process has none (a web server away from the Docker hosts)."""
    try:
        return DockerEngine()
    except EngineError:
        return None


def do_drop_snapshot(*, snapshot: Snapshot, engine: DockerEngine | None) -> None:
    """Remove the snapshot's image, then its row. The image stays when it cannot be removed here (no engine in this
    process, a snapshot of another host, a container still using it): the sweep of its host then removes it as an
    image no row names."""
    if engine is not None and snapshot.queue == settings.ANYON_WORKER_QUEUE:
        try:
            engine.remove_image(snapshot.image_id or snapshot.image)
        except EngineError as exc:
            logger.warning("snapshot %s: image left for the sweep: %s", snapshot.pk, exc)
    with transaction.atomic():
        Snapshot.objects.filter(pk=snapshot.pk).delete()
        wake_environment_pages(snapshot.owner_id)
