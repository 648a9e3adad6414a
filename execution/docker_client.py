"""One way to get a Docker SDK client, so every caller honours DOCKER_HOST and the same timeout."""

from __future__ import annotations

import docker
from django.conf import settings


def get_docker_client(*, timeout: int | None = None) -> docker.DockerClient:
    """A client for the engine named by DOCKER_HOST (default: the local socket).

    Raises ``docker.errors.DockerException`` when no engine answers.
    """
    kwargs: dict = {"timeout": timeout or settings.ANYON_DOCKER_TIMEOUT}
    if settings.DOCKER_HOST:
        kwargs["base_url"] = settings.DOCKER_HOST
        return docker.DockerClient(**kwargs)
    return docker.from_env(**kwargs)
