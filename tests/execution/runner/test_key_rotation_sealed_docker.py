"""Rotating the secret key under sealed mode: the real egress proxy process keeps running through the rotation and
decrypts with the new key by itself (it re-reads the services' settings file when a value does not decrypt); the
next sealed attempt succeeds with the real image, CLI and engine. A proxy whose key does not decrypt the store
refuses the request, says so in the attempt's log and raises ``secret_lookup_failed``: the run fails clearly instead
of git asking for a user name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from execution.models import AttemptStatus
from execution.runner import run_attempt
from secrets_app.key_rotation import use_secret_key
from shared.alerts import AlertKind
from shared.env_file import read_env_file
from shared.models import Alert
from tests.execution.conftest import logs, sealed_mode
from tests.fakes.anthropic_api import TextReply
from tests.fakes.git_http import basic_credentials
from tests.fakes.github import FakeGitHub
from tests.fixtures import processes
from tests.fixtures.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

NEW_KEY = "rotated-under-a-running-proxy-" + "p" * 40
UNRELATED_KEY = "a-key-the-store-never-saw-" + "u" * 40


@pytest.fixture(autouse=True)
def this_process_keeps_its_key(transactional_db):
    """Back to the suite's key before the database is emptied: the emptying writes a new key canary."""
    yield
    use_secret_key(os.environ["ANYON_SECRET_KEY"])


@pytest.fixture
def repo(world, github: FakeGitHub) -> str:
    github.add_token(world.github_token, login="alice-gh")
    return github.add_repo("acme", "widgets", {"README.md": "# widgets\n"})


@pytest.fixture
def start_proxy(world, github: FakeGitHub, settings):
    """Sealed mode with this test's own egress proxy process, started with extra environment."""
    temp, control = sealed_mode(settings, world, github.url, prefix="ak-")
    started = []

    def start(**extra: str) -> processes.LiveProcess:
        env = processes.subprocess_env(ANYON_EGRESS_CONTROL=str(control), ANYON_TEMP_DIR=str(temp), **extra)
        proxy = processes.start_egress_proxy("egress-proxy-rotation", control, env)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def services_file(tmp_path: Path) -> Path:
    path = tmp_path / "env"
    path.write_text(
        f"DATABASE_URL={processes.test_database_url()}\nANYON_SECRET_KEY={os.environ['ANYON_SECRET_KEY']}\n"
        f"ANYON_TEMP_DIR={tmp_path / 'tmp'}\nANYON_DATA_DIR={tmp_path / 'data'}\n"
    )
    path.chmod(0o640)
    return path


def test_a_rotation_reaches_the_running_proxy_and_the_next_sealed_attempt_succeeds(
    world, repo, github, start_proxy, tmp_path
):
    env_file = services_file(tmp_path)
    proxy = start_proxy(ANYON_ENV_FILE=str(env_file))  # as systemd starts it: the file's key, in its environment
    bare = processes.subprocess_env(ANYON_ENV_FILE=str(env_file))
    for name in ("DATABASE_URL", "ANYON_SECRET_KEY"):
        bare.pop(name)
    done = subprocess.run(
        [sys.executable, "manage.py", "rotate_secret_key", "--new-key-file", "-"],
        cwd=processes.ROOT, env=bare, input=NEW_KEY, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert read_env_file(env_file)["ANYON_SECRET_KEY"] == NEW_KEY
    use_secret_key(NEW_KEY)  # the worker, restarted with the settings file

    world.api.enqueue(TextReply("Nothing to change."))
    attempt = world.attempt(repo_url=repo, prompt="Look at the README")
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt) + proxy.output()[-3000:]
    assert world.api.credentials() == {world.claude_token}  # the proxy decrypted the rotated credentials
    clones = github.git_requests()
    assert clones and all(basic_credentials(r.headers.get("authorization"))[1] == world.github_token for r in clones)
    assert "secret key reloaded" in proxy.output()
    assert not Alert.objects.filter(kind=AlertKind.SECRET_LOOKUP_FAILED).exists()


def test_a_proxy_that_cannot_decrypt_fails_the_run_clearly_and_alerts(world, repo, github, start_proxy, tmp_path):
    proxy = start_proxy(ANYON_SECRET_KEY=UNRELATED_KEY)  # no settings file with another key to turn to
    wait_for(
        lambda: Alert.objects.filter(kind=AlertKind.SECRET_LOOKUP_FAILED, message__contains="egress proxy").exists(),
        timeout=30,
        what="the proxy's alert at its start (the key canary)",
    )
    attempt = world.attempt(repo_url=repo, prompt="Look at the README")
    assert run_attempt(attempt.pk) == AttemptStatus.FAILED
    text = logs(attempt)
    assert "cannot decrypt your stored GitHub credential" in text, text + proxy.output()[-3000:]
    assert "Username" not in text  # git went out with no credential and asked for one: not anymore
    alert = Alert.objects.get(kind=AlertKind.SECRET_LOOKUP_FAILED, attempt_id=attempt.pk)
    assert "egress proxy" in alert.message and alert.user == world.user
    assert not github.git_requests()  # nothing went out anonymously
