"""Fixtures for attempts in real containers: a user with credentials, fakes for Anthropic's API and GitHub."""

from __future__ import annotations

import secrets
import string
import threading
import time
from dataclasses import dataclass

import docker
import pytest

from execution.attempts import do_create_task, do_start_attempt
from execution.containers import container_name
from secrets_app.secret_store import do_store_secret
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.fakes.github import classic_token
from tests.fixtures.leaks import track_secret


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
        return do_start_attempt(task=self.task(**task_kwargs), plan=plan, enqueue=False)

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
        settings.ANYON_CONTAINER_ENV = {"ANTHROPIC_BASE_URL": api.url}
        yield World(alice, github_token, claude_token, api)


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


def when_step_runs(docker_client, attempt_id: int, command: str, action, timeout: float = 60) -> threading.Thread:
    """Run ``action()`` in the background once the step running ``command`` has started in the container: a
    cancel, kill or inspection then meets a running step, not a container that is still starting."""

    def wait_then_act() -> None:
        deadline = time.monotonic() + timeout
        while not step_exec_running(docker_client, attempt_id, command):
            if time.monotonic() > deadline:
                raise AssertionError(f"no exec running {command!r} in attempt {attempt_id}'s container")
            time.sleep(0.1)
        action()

    return in_background(0, wait_then_act)


def in_background(delay: float, action) -> threading.Thread:
    """Run ``action`` after ``delay`` seconds in a thread (to act on a run while it is going)."""

    def go():
        time.sleep(delay)
        action()

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread
