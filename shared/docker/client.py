"""One way to get a Docker SDK client, so every caller honours DOCKER_HOST and the same timeout."""

from __future__ import annotations

import os
import threading

import docker
from django.conf import settings

_shared: dict[tuple[int, str, int], docker.DockerClient] = {}
_shared_lock = threading.Lock()


def get_docker_client(*, timeout: int | None = None) -> docker.DockerClient:
    """A client for the engine named by DOCKER_HOST (default: the local socket).

    Raises ``docker.errors.DockerException`` when no engine answers.
    """
    kwargs: dict = {"timeout": timeout or settings.ANYON_DOCKER_TIMEOUT}
    if settings.DOCKER_HOST:
        kwargs["base_url"] = settings.DOCKER_HOST
        client = docker.DockerClient(**kwargs)
    else:
        client = docker.from_env(**kwargs)
    if client.api.base_url.startswith("http+docker://"):
        # A UNIX socket: no proxy or .netrc applies, and requests would scan the environment for them at every call
        # (about 1 ms of a worker's CPU per Docker API call, a dozen of them per attempt).
        client.api.trust_env = False
    return client


def shared_docker_client() -> docker.DockerClient:
    """This process's client for the runner: creating one asks the engine for its API version (an HTTP round trip),
    which every attempt paid. One per process (worker processes are forked) and per engine address."""
    key = (os.getpid(), settings.DOCKER_HOST, settings.ANYON_DOCKER_TIMEOUT)
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            client = _shared[key] = get_docker_client()
        return client
