"""The login command's process: its argv and limits, and its container gone before the login is announced ended
(with the fake CLI on the host and a recording engine, and with the real runtime image: `-m docker`)."""

from __future__ import annotations

import json
import shutil

import pytest
from channels.db import database_sync_to_async

from secrets_app.claude_login import State
from secrets_app.claude_login.process import LoginProcess, login_argv
from secrets_app.models import Secret
from tests.fixtures.processes import FAKE_LOGIN_CLI
from tests.secrets_app.claude_login.conftest import (
    communicator,
    eventually,
    login_of,
    make_user,
    run_subscription_login,
    state_of,
    until,
)


def test_a_docker_login_gets_memory_and_process_limits(settings):
    argv = login_argv("abc123")
    assert argv[:8] == ["docker", "run", "--memory", "512m", "--memory-swap", "512m", "--pids-limit", "128"]
    assert "anyon-login-abc123" in argv and argv.count("--memory") == 1
    settings.ANYON_CLAUDE_LOGIN_MEMORY, settings.ANYON_CLAUDE_LOGIN_PIDS = "300m", 64
    settings.ANYON_CLAUDE_LOGIN_COMMAND = "docker run --memory 1g --pids-limit={pids} -i img claude setup-token"
    argv = login_argv("x")
    assert argv == ["docker", "run", "--memory", "1g", "--pids-limit=64", "-i", "img", "claude", "setup-token"]
    settings.ANYON_CLAUDE_LOGIN_COMMAND = "bash fake.sh"  # not a container: nothing to add
    assert login_argv("x") == ["bash", "fake.sh"]


def test_a_command_that_cannot_start_is_reported_and_has_nothing_to_stop(settings):
    from secrets_app.claude_login.process import StartFailed

    settings.ANYON_CLAUDE_LOGIN_COMMAND = "/nonexistent/claude-login setup-token"
    process = LoginProcess("nope")
    with pytest.raises(StartFailed):
        process.start()
    assert not process.alive()
    process.stop()  # names no container: nothing to remove, no error


class _RecordingEngine:
    """Stands in for shared.docker.engine.DockerEngine: records what the login removes, and when."""

    removed: list[str] = []

    def inspect(self, name):
        return {"Id": name}

    def stop_and_remove(self, container_id, *, timeout=5):
        assert timeout == 0  # a login container holds nothing: no grace
        self.removed.append(container_id)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("end", ["saved", "error", "cancelled", "timed_out"])
async def test_the_login_container_is_removed_before_the_login_is_announced_ended(
    login_command, settings, monkeypatch, end
):
    """Whatever ends the login, its container (found by its name) is removed before the final state is sent: never
    left for the cleanup sweep. The fake CLI runs on the host; the engine is a recorder."""
    from shared.docker import engine

    settings.ANYON_CLAUDE_LOGIN_COMMAND = f"bash {FAKE_LOGIN_CLI} {{name}}"  # names a container, as docker run does
    monkeypatch.setattr(engine, "DockerEngine", _RecordingEngine)
    monkeypatch.setattr(_RecordingEngine, "removed", [])
    user = await database_sync_to_async(make_user)()
    comm = communicator(user)
    await comm.connect()
    if end == "timed_out":
        settings.ANYON_CLAUDE_LOGIN_TIMEOUT = 0
    await comm.send_to(text_data=json.dumps({"type": "start", "method": "subscription"}))
    if end != "timed_out":
        url = (await until(comm, lambda m: m["type"] == "url"))["url"]
        await until(comm, lambda m: m["type"] == "need_code")
    if end == "saved":
        await comm.send_to(text_data=json.dumps({"type": "code", "code": f"thecode123#{state_of(url)}"}))
    elif end == "error":
        await comm.send_to(text_data=json.dumps({"type": "code", "code": "abcd#not-the-state"}))
    elif end == "cancelled":
        await comm.send_to(text_data=json.dumps({"type": "cancel"}))
    final = await until(comm, lambda m: m["type"] == "status" and m["state"] in State.FINAL)
    assert final["state"] == end
    session = login_of(user)
    assert _RecordingEngine.removed == [f"anyon-login-{session.id}"]  # already, when the end is announced
    assert not session.process.alive()
    await comm.disconnect()


def _fake_cli_in_the_image(command: str) -> str:
    """The default `docker run` command with the fake CLI mounted into the runtime image, without a network."""
    return (
        command.replace("--network {network}", "--network none")
        .replace("anyon-exec claude setup-token", "bash /fakes/fake_claude_setup_token.sh")
        .replace("{image}", f"-v {FAKE_LOGIN_CLI.parent}:/fakes:ro {{image}}")
    )


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
async def test_fake_login_cli_inside_the_runtime_image(settings, runtime_image, docker_client):
    """The production code path (the default `docker run … {image} …` command template, a PTY through the docker
    client) with the fake CLI mounted into a real container of the runtime image."""
    if not shutil.which("docker"):
        pytest.skip("the docker command-line client is not installed")
    default = settings.ANYON_CLAUDE_LOGIN_COMMAND
    assert default.startswith("docker run --rm -i -t --name {name}") and default.endswith("claude setup-token")
    settings.ANYON_CLAUDE_LOGIN_COMMAND = _fake_cli_in_the_image(default)
    user = await database_sync_to_async(make_user)("cora")
    await run_subscription_login(user)
    assert await database_sync_to_async(Secret.objects.filter(owner=user, provider="claude").exists)()
    session = login_of(user)
    await eventually(lambda: not docker_client.containers.list(all=True, filters={"name": f"anyon-login-{session.id}"}))


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("end", ["cancelled", "timed_out"])
async def test_login_container_is_limited_and_gone_when_the_login_ends(settings, runtime_image, docker_client, end):
    """The default `docker run` command (the fake CLI mounted into the runtime image): while the login waits for the
    code its container has the memory and process limits; when the login ends it is already gone."""
    if not shutil.which("docker"):
        pytest.skip("the docker command-line client is not installed")
    settings.ANYON_CLAUDE_LOGIN_COMMAND = _fake_cli_in_the_image(settings.ANYON_CLAUDE_LOGIN_COMMAND)
    settings.ANYON_CLAUDE_LOGIN_MEMORY, settings.ANYON_CLAUDE_LOGIN_PIDS = "256m", 100
    user = await database_sync_to_async(make_user)("lim")
    comm = communicator(user)
    assert (await comm.connect())[0]
    await comm.send_to(text_data=json.dumps({"type": "start", "method": "subscription"}))
    await until(comm, lambda m: m["type"] == "need_code", timeout=60)
    session = login_of(user)
    name = f"anyon-login-{session.id}"
    host = docker_client.api.inspect_container(name)["HostConfig"]
    assert host["Memory"] == 256 * 1024**2 and host["MemorySwap"] == 256 * 1024**2 and host["PidsLimit"] == 100
    if end == "cancelled":
        await comm.send_to(text_data=json.dumps({"type": "cancel"}))
    else:
        settings.ANYON_CLAUDE_LOGIN_TIMEOUT = 0
    final = await until(comm, lambda m: m["type"] == "status" and m["state"] in State.FINAL)
    assert final["state"] == end
    assert not docker_client.containers.list(all=True, filters={"name": name})  # gone already, no sweep
    await comm.disconnect()


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
async def test_real_cli_login_screens_inside_the_runtime_image(settings, runtime_image, docker_client):
    """The production command with the image's real `claude setup-token` (no network: it draws the URL, then the
    exchange fails): the session reaches the code prompt, sends the code with Enter, and ends on the CLI's error."""
    if not shutil.which("docker"):
        pytest.skip("the docker command-line client is not installed")
    settings.ANYON_CLAUDE_LOGIN_COMMAND = settings.ANYON_CLAUDE_LOGIN_COMMAND.replace(
        "--network {network}", "--network none"
    )
    user = await database_sync_to_async(make_user)("real")
    comm = communicator(user)
    assert (await comm.connect())[0]
    await comm.send_to(text_data=json.dumps({"type": "start", "method": "subscription"}))
    url = (await until(comm, lambda m: m["type"] == "url", timeout=60))["url"]
    assert url.startswith("https://claude.ai/oauth/authorize?")
    await until(comm, lambda m: m["type"] == "need_code", timeout=60)
    await comm.send_to(text_data=json.dumps({"type": "code", "code": "madeUpCode1234#madeUpState5678"}))
    failed = await until(comm, lambda m: m["type"] == "status" and m["state"] == "error", timeout=60)
    assert "OAuth error" in failed["message"] and "madeUpCode1234" not in failed["message"]
    session = login_of(user)
    await eventually(lambda: not docker_client.containers.list(all=True, filters={"name": f"anyon-login-{session.id}"}))
    await comm.disconnect()
