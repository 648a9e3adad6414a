"""Fixtures for attempts in real containers: a user with credentials, fakes for Anthropic's API and GitHub."""

from __future__ import annotations

import functools
import secrets
import string
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from django.contrib.auth.models import User

from execution.attempts.actions import do_create_task, do_start_attempt
from execution.attempts.containers import container_name
from execution.models import LogRecord
from secrets_app.secret_store import do_store_secret
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.fakes.github import classic_token
from tests.fixtures.leaks import track_secret
from tests.fixtures.queueing import held_from_workers
from tests.fixtures.waiting import wait_for


def oauth_token() -> str:
    alphabet = string.ascii_letters + string.digits
    return track_secret("sk-ant-oat01-" + "".join(secrets.choice(alphabet) for _ in range(60)) + "AA")


@dataclass
class World:
    user: object
    github_token: str
    claude_token: str
    api: FakeAnthropicAPI

    def task(self, repo_url: str = "https://github.com/acme/widgets", prompt: str = "Say pong"):
        return do_create_task(owner=self.user, title="demo", repo_url=repo_url, base_branch="main", prompt=prompt)

    def attempt(self, plan: list[dict] | None = None, **task_kwargs):
        with held_from_workers():
            return do_start_attempt(task=self.task(**task_kwargs), plan=plan)

    @property
    def values(self) -> list[str]:
        return [self.github_token, self.claude_token]


@pytest.fixture
def world(alice, settings, runtime_image, tmp_path):
    """Alice with a GitHub PAT and a Claude token; containers on the host network reach the fake Anthropic API."""
    settings.ANYON_TEMP_DIR = tmp_path / "anyon-tmp"
    github_token = classic_token()
    claude_token = oauth_token()
    do_store_secret(owner=alice, provider="github", kind="pat", value=github_token, account_login="alice")
    do_store_secret(owner=alice, provider="claude", kind="oauth_token", value=claude_token)
    with FakeAnthropicAPI(expected_token=claude_token) as api:
        settings.ANYON_CLOUD_NETWORK = "host"
        settings.ANYON_ANTHROPIC_API_URL = api.url
        yield World(alice, github_token, claude_token, api)


def sealed_mode(settings, world: World, github_url: str, *, prefix: str) -> tuple[Path, Path]:
    """Sealed mode in a short temp dir of its own (UNIX socket paths are at most 107 bytes), the fake Anthropic API
    and GitHub reachable through the egress proxy: that dir and the proxy's control socket path in it."""
    from shared.egress import HostPort

    temp = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    control = temp / "egress" / "control.sock"
    settings.ANYON_TEMP_DIR = temp
    settings.ANYON_CREDENTIAL_MODE = "sealed"
    settings.ANYON_EGRESS_CONTROL = str(control)
    settings.ANYON_CONTAINER_ENV = {}
    settings.ANYON_EGRESS_ALLOW_INTERNAL = [str(HostPort.of_url(world.api.url)), str(HostPort.of_url(github_url))]
    return temp, control


def custom(*argv: str, title: str = "step") -> dict:
    return {"kind": "custom", "title": title, "argv": list(argv)}


def step_exec_running(docker_client, attempt_id: int, command: str) -> bool:
    """Whether the attempt's container runs an exec whose command line contains ``command`` (a step under way)."""
    try:
        container = docker_client.containers.get(container_name(attempt_id))
    except docker.errors.NotFound:
        return False
    for exec_id in container.attrs.get("ExecIDs") or []:
        try:
            info = docker_client.api.exec_inspect(exec_id)
        except docker.errors.NotFound:
            continue
        process = info.get("ProcessConfig") or {}
        if info.get("Running") and command in " ".join([process.get("entrypoint", ""), *process.get("arguments", [])]):
            return True
    return False


def when(predicate, action, timeout: float = 60, what: str = "condition") -> threading.Thread:
    """Run ``action()`` in the background once ``predicate()`` holds (to act on a run while it is going)."""

    def wait_then_act() -> None:
        wait_for(predicate, timeout=timeout, what=what)
        action()

    return in_background(0, wait_then_act)


def when_step_runs(docker_client, attempt_id: int, command: str, action, timeout: float = 60) -> threading.Thread:
    """Run ``action()`` in the background once the step running ``command`` has started in the container: a
    cancel, kill or inspection then meets a running step, not a container that is still starting."""
    running = functools.partial(step_exec_running, docker_client, attempt_id, command)
    return when(running, action, timeout, what=f"an exec running {command!r} in attempt {attempt_id}'s container")


def in_background(delay: float, action) -> threading.Thread:
    """Run ``action`` after ``delay`` seconds in a thread."""

    def go():
        time.sleep(delay)
        action()

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


def logs(attempt, stream: str | None = None) -> str:
    """The attempt's stored log (an attempt or its id), of one stream if given."""
    records = LogRecord.objects.filter(attempt_id=getattr(attempt, "pk", attempt)).order_by("seq")
    if stream:
        records = records.filter(stream=stream)
    return "".join(records.values_list("text", flat=True))


def make_attempt(username: str = "writer"):
    """A queued attempt of a new user's task (not run)."""
    user = User.objects.create_user(username, password="pw long enough 1")
    task = do_create_task(owner=user, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p")
    with held_from_workers():
        return do_start_attempt(task=task)
