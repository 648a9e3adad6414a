"""Fixtures shared by the whole suite: real Docker engine, real images, live ASGI server, real Chromium."""

from __future__ import annotations

import contextlib

import docker
import pytest
from django.conf import settings
from django.contrib.auth.models import User

from tests.requirements import require_docker

pytest_plugins = [
    "tests.fixtures.processes",
    "tests.fixtures.browser",
    "tests.fixtures.leaks",
    "tests.fixtures.services",
    "tests.fixtures.engines",
]


@pytest.fixture(scope="session")
def docker_client():
    """A client of the real Docker engine; skips (or fails under ANYON_REQUIRE_DOCKER) when none answers."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        require_docker(f"no Docker engine reachable ({type(exc).__name__}); start dockerd or set DOCKER_HOST")
    from tests.fixtures.leaks import EngineRecorder, search_and_clear_engine

    recorder = EngineRecorder(client)
    yield client
    recorder.stop()
    # Whatever this session's attempts left on the engine (workspace volumes outlive containers by design): searched
    # for leaked secrets, then removed.
    search_and_clear_engine(client, label=f"anyon.instance={settings.ANYON_INSTANCE}", image=settings.ANYON_BASE_IMAGE)
    client.close()


def _image(docker_client, ref: str, how: str) -> str:
    try:
        docker_client.images.get(ref)
    except docker.errors.ImageNotFound:
        require_docker(f"image {ref} is absent; build it with {how}")
    return ref


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    """The offline Debian base image made by runtime-image/bootstrap-base.sh."""
    return _image(docker_client, settings.ANYON_BASE_IMAGE, "runtime-image/bootstrap-base.sh")


@pytest.fixture(scope="session")
def runtime_image(docker_client) -> str:
    """The claude-runtime image (ANYON_CLOUD_IMAGE) made by runtime-image/build.sh (make image)."""
    return _image(docker_client, settings.ANYON_CLOUD_IMAGE, "make image")


@pytest.fixture
def container_factory(docker_client):
    """Create labelled, auto-removed containers; every one is force-removed at teardown."""
    created = []

    def make(image: str, **kwargs):
        kwargs.setdefault("command", ["sleep", "infinity"])
        kwargs.setdefault("network_mode", "none")
        kwargs.setdefault("init", True)
        labels = {"anyon.test": "1", **kwargs.pop("labels", {})}
        container = docker_client.containers.run(image, detach=True, labels=labels, **kwargs)
        created.append(container)
        return container

    yield make
    for container in created:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


@pytest.fixture(autouse=True)
def _fresh_per_user_counters(monkeypatch):
    """The per-process limits (open websockets, Claude login starts) and the Claude logins count per user id: ids
    come back in the next test's database, so each test starts with none counted and no login registered."""
    from secrets_app.claude_login import sessions

    monkeypatch.setattr(sessions, "_sessions", {})
    monkeypatch.setattr(sessions, "_starts", {})
    yield
    from shared.live import consumer

    consumer._open_sockets.clear()


@pytest.fixture
def alice(db):
    return User.objects.create_user("alice", password="alice password 123")


@pytest.fixture
def bob(db):
    return User.objects.create_user("bob", password="bob password 123")


@pytest.fixture
def alice_client(client, alice, settings):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"  # no engine ping per page in these tests
    client.force_login(alice)
    return client


@pytest.fixture
def github(settings):
    """A fake GitHub (device flow, API, git) on 127.0.0.1, configured as this server's GitHub."""
    from tests.fakes.github import CLIENT_ID, FakeGitHub

    with FakeGitHub() as fake:
        settings.ANYON_GITHUB_URL = fake.url
        settings.ANYON_GITHUB_API_URL = fake.api_url
        settings.ANYON_GITHUB_CLIENT_ID = CLIENT_ID
        yield fake


@pytest.fixture
def slack(settings):
    """A fake Slack webhook on 127.0.0.1 and an alert e-mail address: where alerts are delivered."""
    from tests.fakes.slack import FakeSlack

    with FakeSlack() as fake:
        settings.ANYON_SLACK_WEBHOOK_URL = fake.webhook_url
        settings.ANYON_ALERT_EMAILS = ["ops@example.com"]
        yield fake
