"""One container per attempt, provisioned from ``ANYON_CLOUD_IMAGE`` with the hardening and labels the cleanup
relies on. The workspace is a named volume, so it outlives the container (follow-ups recreate the container)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import docker
from django.conf import settings
from django.utils import timezone

from execution.attempts.runs import do_set_workspace_volume
from execution.attempts.steps import WORKSPACE
from shared.docker import labels as label
from shared.docker import seccomp
from shared.docker.engine import ContainerSpec, DockerEngine

HOME = "/home/anyon"
SECRET_MOUNT = "/run/anyon-secrets"


def container_name(attempt_id: int) -> str:
    """Attempt ids repeat across installations on one engine: the name carries the installation's."""
    return f"anyon-{settings.ANYON_INSTANCE}-attempt-{attempt_id}"


def new_workspace_volume(attempt_id: int) -> str:
    """A fresh name: attempt ids repeat across databases (a restore, a second installation on the same engine)."""
    return f"anyon-workspace-{attempt_id}-{secrets.token_hex(4)}"


def home_volume(workspace_volume: str) -> str:
    """The container user's home (Claude's sessions for --resume live in ~/.claude) outlives containers too."""
    return f"{workspace_volume}-home"


def labels_for(attempt) -> dict[str, str]:
    expires = timezone.now() + timedelta(seconds=settings.RUN_TIMEOUT + 600)
    return {
        label.MANAGED: "1",
        label.INSTANCE: settings.ANYON_INSTANCE,
        label.QUEUE: attempt.queue or settings.ANYON_WORKER_QUEUE,
        label.ATTEMPT: str(attempt.pk),
        label.OWNER: str(attempt.task.owner_id),
        label.EXPIRES: str(int(expires.timestamp())),
    }


def mounted_environment() -> dict[str, str]:
    """One setting for one thing: the Anthropic API that checks pasted keys is the one runs talk to."""
    return {"ANTHROPIC_BASE_URL": settings.ANYON_ANTHROPIC_API_URL}


def seccomp_profile() -> str | None:
    """The profile attempt containers get (``ANYON_CONTAINER_SECCOMP``); None: the engine's default."""
    return seccomp.profile_json() if settings.ANYON_CONTAINER_SECCOMP == "anyon" else None


def container_spec(
    *,
    name: str,
    labels: dict[str, str],
    volume: str,
    secret_dir: Path,
    sealed_environment: dict[str, str] | None,
    image: str = "",
) -> ContainerSpec:
    """Every container that runs an attempt, made for it or warm in the pool: the same image, user, limits and
    hardening. A sealed container (``sealed_environment`` given) has no network at all: it reaches out only through
    the egress sockets in ``secret_dir``. ``image``: a snapshot's (execution/snapshots.py) instead of the runtime
    image."""
    spec = ContainerSpec(
        name=name,
        image=image or settings.ANYON_CLOUD_IMAGE,
        labels=labels,
        mounts=[
            docker.types.Mount(WORKSPACE, volume, type="volume"),
            docker.types.Mount(HOME, home_volume(volume), type="volume"),
            docker.types.Mount(SECRET_MOUNT, str(secret_dir), type="bind", read_only=True),
        ],
        user=str(settings.ANYON_CONTAINER_UID),
        working_dir=WORKSPACE,
        environment={**mounted_environment(), **settings.ANYON_CONTAINER_ENV}
        if sealed_environment is None
        else {**settings.ANYON_CONTAINER_ENV, **sealed_environment},
        network_mode="none" if sealed_environment is not None else settings.ANYON_CLOUD_NETWORK,
        mem_limit=settings.ANYON_CONTAINER_MEMORY,
        nano_cpus=int(settings.ANYON_CONTAINER_CPUS * 1e9),
        pids_limit=settings.ANYON_CONTAINER_PIDS,
        seccomp_profile=seccomp_profile(),
    )
    if sealed_environment is not None:  # the bridge comes up while the worker gets ready for the first step
        spec.command = ["anyon-egress-bridge", "--no-wait", "sleep", "infinity"]
    return spec


class AttemptContainers:
    def __init__(self, engine: DockerEngine | None = None) -> None:
        self.engine = engine or DockerEngine()

    def provision(
        self, attempt, *, secret_dir: Path, sealed_environment: dict[str, str] | None = None, image: str = ""
    ) -> str:
        """Create and start the attempt's container; return its id. A sealed container (``sealed_environment``
        given) has no network at all: it reaches out only through the egress sockets in ``secret_dir``. ``image``:
        a snapshot's, whose volume copies are the attempt's workspace already."""
        self.engine.ensure_image(image or settings.ANYON_CLOUD_IMAGE)
        labels = labels_for(attempt)
        if not attempt.workspace_volume:
            do_set_workspace_volume(attempt=attempt, volume=new_workspace_volume(attempt.pk))
        volume = attempt.workspace_volume
        volume_labels = {k: v for k, v in labels.items() if k != label.EXPIRES}
        self.engine.ensure_volume(volume, volume_labels)
        self.engine.ensure_volume(home_volume(volume), volume_labels)
        name = container_name(attempt.pk)
        stale = self.engine.inspect(name)
        if stale:  # a container of a crashed earlier session of this attempt (or of a restored database)
            self.engine.stop_and_remove(stale["Id"], timeout=1)
        spec = container_spec(
            name=name,
            labels=labels,
            volume=volume,
            secret_dir=secret_dir,
            sealed_environment=sealed_environment,
            image=image,
        )
        return self.engine.create_container(spec)
