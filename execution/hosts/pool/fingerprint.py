"""What a warm container is made from and how it is labelled (docs/ARCHITECTURE.md, "Warm pool")."""

from __future__ import annotations

import hashlib
import json
import time

from django.conf import settings

from execution.attempts import secret_dir
from execution.attempts.containers import seccomp_profile
from execution.hosts import egress
from shared.docker import labels as label
from shared.docker.engine import DockerEngine

#: Workspace volumes of warm containers (an attempt that claims one keeps the name).
POOL_VOLUME_PREFIX = "anyon-workspace-pool-"

POOL_LABEL = label.POOL
#: A warm container younger than this may not have its row yet: the sweeps leave it alone.
CREATING_GRACE_SECONDS = 120


def pool_labels() -> dict[str, str]:
    return {
        label.MANAGED: "1",
        label.INSTANCE: settings.ANYON_INSTANCE,
        label.QUEUE: settings.ANYON_WORKER_QUEUE,
        POOL_LABEL: "1",
        label.CREATED: str(int(time.time())),
    }


def fingerprint(engine: DockerEngine) -> str:
    """What a warm container was made from: the image's id (a tag moved to a new build changes it) and every
    setting that shapes the container. A container with another fingerprint is never claimed, and is replaced."""
    parts = [
        engine.image_id(settings.ANYON_CLOUD_IMAGE),
        settings.ANYON_CREDENTIAL_MODE,
        settings.ANYON_CLOUD_NETWORK,
        settings.ANYON_CONTAINER_MEMORY,
        settings.ANYON_CONTAINER_CPUS,
        settings.ANYON_CONTAINER_PIDS,
        seccomp_profile() or "engine default",
        settings.ANYON_CONTAINER_UID,
        settings.ANYON_CONTAINER_GID,
        sorted(settings.ANYON_CONTAINER_ENV.items()),
        settings.ANYON_ANTHROPIC_API_URL,
        settings.ANYON_GITHUB_URL,
        str(secret_dir.secrets_root()),
    ]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:40]


def sealed_base_environment() -> dict[str, str] | None:
    """A sealed warm container knows the bridge's ports but not which Claude credential kind its attempt uses:
    those variables travel with each exec (the step runner's ``_exec_environment``)."""
    return egress.container_environment(claude_kind=None) if egress.sealed() else None
