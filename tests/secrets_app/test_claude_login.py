# Long because the login is tested with the fake CLI on the host, in the real image, on recorded screens, pasted.
"""Connecting Claude over the login websocket: the subscription login session (with the fake `claude setup-token`
in a PTY, on the host and inside the real runtime image, and the real CLIs' recorded screens), and a pasted key."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User

from secrets_app import claude_login
from secrets_app.consumers import ClaudeLoginConsumer
from secrets_app.models import Secret
from secrets_app.secret_store import fetch_secret
from tests.fixtures.leaks import track_secret
from tests.fixtures.processes import FAKE_LOGIN_CLI
from tests.secrets_app.conftest import API_KEY

SCREENS = Path(__file__).resolve().parents[1] / "fixtures" / "transcripts" / "setup-token"


# --- the login websocket --------------------------------------------------------------------------------------

pytestmark_ws = pytest.mark.django_db(transaction=True)


def communicator(user) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(ClaudeLoginConsumer.as_asgi(), "/ws/settings/claude-login/")
    comm.scope["user"] = user
    return comm


async def until(comm, predicate, timeout=20.0) -> dict:
    """Receive messages until one satisfies ``predicate``; return it."""

    async def loop():
        while True:
            message = json.loads(await comm.receive_from(timeout=timeout))
            if predicate(message):
                return message

    return await asyncio.wait_for(loop(), timeout)


async def eventually(predicate, timeout: float = 20.0) -> None:
    """Wait for what happens just after the final state is announced (the login process and container stopping)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


def state_of(url: str) -> str:
    """The state the fake CLI expects after the '#': the URL's state= (2.0.31 screens), else its query (2.1.x)."""
    query = urlsplit(url).query
    return parse_qs(query)["state"][0] if "state=" in query else query


@pytest.fixture
def login_command(settings):
    settings.ANYON_CLAUDE_LOGIN_COMMAND = f"bash {FAKE_LOGIN_CLI}"
    yield
    claude_login._sessions.clear()
    claude_login._starts.clear()


def make_user(name="lou"):
    return User.objects.create_user(name, password="lou password 123")


async def run_subscription_login(user, *, wrong_first: bool = False) -> str:
    comm = communicator(user)
    assert (await comm.connect())[0]
    assert (await until(comm, lambda m: m["type"] == "status"))["state"] == "idle"
    await comm.send_to(text_data=json.dumps({"type": "start", "method": "subscription"}))
    url = (await until(comm, lambda m: m["type"] == "url"))["url"]
    assert url.startswith("https://claude.ai/oauth/authorize?") and len(url) > 60
    await until(comm, lambda m: m["type"] == "need_code")
    if wrong_first:
        await comm.send_to(text_data=json.dumps({"type": "code", "code": "abcd#not-the-state"}))
        failed = await until(comm, lambda m: m["type"] == "status" and m["state"] == "error")
        assert "Invalid code" in failed["message"]
        await comm.disconnect()
        return failed["message"]
    await comm.send_to(text_data=json.dumps({"type": "code", "code": f"thecode123#{state_of(url)}"}))
    outputs: list[str] = []

    def saved(message: dict) -> bool:
        if message["type"] == "output":
            outputs.append(message["text"])
        return message["type"] == "saved"

    await until(comm, saved)
    await comm.disconnect()
    assert "token created successfully" in outputs[-1]
    return outputs[-1]


@pytest.mark.django_db(transaction=True)
async def test_subscription_login_saves_the_token(login_command, monkeypatch):
    token = track_secret("sk-ant-oat01-" + "L" * 70 + "-xyzAA")
    monkeypatch.setenv("FAKE_LOGIN_TOKEN", token)
    user = await database_sync_to_async(make_user)()
    transcript = await run_subscription_login(user)
    assert token not in transcript and "***" in transcript and "thecode123" not in transcript
    secret = await database_sync_to_async(Secret.objects.get)(owner=user, provider="claude")
    assert secret.kind == "oauth_token" and secret.fingerprint == token[-4:]
    assert 364 <= (secret.expires_at - secret.created_at).days <= 365
    stored = await database_sync_to_async(fetch_secret)(owner=user, provider="claude", purpose="t", actor="t")
    assert stored.value == token


@pytest.mark.django_db(transaction=True)
async def test_subscription_login_with_the_2_1_screens(login_command, monkeypatch):
    """The fake CLI drawing 2.1.332's screens (cursor-placed words, OSC 8 link, boxed prompt) end to end."""
    token = track_secret("sk-ant-oat01-" + "N" * 70 + "-xyzAA")
    monkeypatch.setenv("FAKE_LOGIN_TOKEN", token)
    monkeypatch.setenv("FAKE_LOGIN_SCREENS", "2.1.332")
    user = await database_sync_to_async(make_user)()
    transcript = await run_subscription_login(user)
    assert "Paste code here if prompted" in transcript and token not in transcript
    stored = await database_sync_to_async(fetch_secret)(owner=user, provider="claude", purpose="t", actor="t")
    assert stored.value == token


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("screens", ["2.0.31", "2.1.332"])
async def test_wrong_code_is_an_error_and_raises_an_alert(login_command, monkeypatch, screens):
    """2.1.x stays open after the error ("Press Enter to retry"): the login ends on the error all the same."""
    from shared.models import Alert

    monkeypatch.setenv("FAKE_LOGIN_SCREENS", screens)
    user = await database_sync_to_async(make_user)()
    message = await run_subscription_login(user, wrong_first=True)
    assert "Invalid code" in message
    assert await database_sync_to_async(Alert.objects.filter(kind="claude_login_failed").exists)()
    assert not await database_sync_to_async(Secret.objects.exists)()


@pytest.mark.django_db(transaction=True)
async def test_cancel_reattach_and_out_of_order(login_command):
    user = await database_sync_to_async(make_user)()
    comm = communicator(user)
    await comm.connect()
    await until(comm, lambda m: m["type"] == "status")
    await comm.send_to(text_data=json.dumps({"type": "code", "code": "a#b"}))
    assert "no login waiting" in (await until(comm, lambda m: m["type"] == "error"))["error"]
    await comm.send_to(text_data=json.dumps({"type": "start", "method": "subscription"}))
    url = (await until(comm, lambda m: m["type"] == "url"))["url"]
    await until(comm, lambda m: m["type"] == "need_code")
    # A refreshed page re-attaches and sees the state, including the URL.
    second = communicator(user)
    await second.connect()
    assert (await until(second, lambda m: m["type"] == "status"))["state"] == "waiting_code"
    assert (await until(second, lambda m: m["type"] == "url"))["url"] == url
    await second.send_to(text_data=json.dumps({"type": "cancel"}))
    for c in (comm, second):
        assert (await until(c, lambda m: m["type"] == "status" and m["state"] != "waiting_code"))[
            "state"
        ] == "cancelled"
    session = claude_login._sessions[user.pk]
    await eventually(lambda: not session.child.isalive())
    await comm.disconnect()
    await second.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_login_starts_in_a_loop_are_limited_per_minute_with_a_clear_error(login_command, settings, monkeypatch):
    """ANYON_CLAUDE_LOGIN_STARTS_PER_MINUTE: a user starting logins in a loop gets an error in the modal; the login
    already running is not replaced by the refused start, another user still starts one, and a minute later the
    user may start again."""
    settings.ANYON_CLAUDE_LOGIN_STARTS_PER_MINUTE = 3
    mallory = await database_sync_to_async(make_user)("mallory")
    comm = communicator(mallory)
    await comm.connect()
    await until(comm, lambda m: m["type"] == "status")
    errors = []
    for _ in range(8):
        await comm.send_to(text_data=json.dumps({"type": "start", "method": "subscription"}))
        message = await until(
            comm, lambda m: m["type"] == "error" or (m["type"] == "status" and m["state"] == "starting")
        )
        if message["type"] == "error":
            errors.append(message["error"])
    assert len(errors) == 5
    assert errors[0].startswith("Too many Claude logins started: at most 3 a minute. Wait ")
    running = claude_login._sessions[mallory.pk]
    await until(comm, lambda m: m["type"] == "need_code")  # the third login goes on, untouched by the refusals
    assert not running.final and running.child.isalive()

    lou = await database_sync_to_async(make_user)("lou")
    other = communicator(lou)
    await other.connect()
    await until(other, lambda m: m["type"] == "status")
    await other.send_to(text_data=json.dumps({"type": "start", "method": "subscription"}))
    await until(other, lambda m: m["type"] == "need_code")

    later = claude_login.time.monotonic() + 61
    monkeypatch.setattr(claude_login.time, "monotonic", lambda: later)
    await comm.send_to(text_data=json.dumps({"type": "start", "method": "subscription"}))
    await until(comm, lambda m: m["type"] == "status" and m["state"] == "starting")
    assert claude_login._sessions[mallory.pk] is not running
    for c in (comm, other):
        await c.send_to(text_data=json.dumps({"type": "cancel"}))
        await until(c, lambda m: m["type"] == "status" and m["state"] == "cancelled")
        await c.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_timeout_and_closed_tab(login_command, settings):
    user = await database_sync_to_async(make_user)()
    settings.ANYON_CLAUDE_LOGIN_TIMEOUT = 1
    comm = communicator(user)
    await comm.connect()
    await comm.send_to(text_data=json.dumps({"type": "start", "method": "subscription"}))
    timed_out = await until(comm, lambda m: m["type"] == "status" and m["state"] == "timed_out")
    assert "waited too long" in timed_out["message"]
    settings.ANYON_CLAUDE_LOGIN_TIMEOUT = 600
    settings.ANYON_CLAUDE_LOGIN_GRACE = 0
    await comm.send_to(text_data=json.dumps({"type": "start", "method": "subscription"}))
    await until(comm, lambda m: m["type"] == "need_code")
    session = claude_login._sessions[user.pk]
    await comm.disconnect()  # the tab is closed
    await eventually(lambda: session.final and not session.child.isalive())
    assert session.state == "cancelled"


@pytest.mark.django_db(transaction=True)
async def test_bad_messages_and_unauthenticated(login_command, anthropic):
    refused = communicator(AnonymousUser())
    connected, code = await refused.connect()
    assert not connected and code == 4401
    user = await database_sync_to_async(make_user)()
    comm = communicator(user)
    await comm.connect()
    await until(comm, lambda m: m["type"] == "status")
    for frame, error in (
        ("{nope", "malformed JSON"),
        ("[]", "object with a type"),
        ("x" * 9000, "too large"),
        (json.dumps({"type": "dance"}), "unknown message type"),
        (json.dumps({"type": "start", "method": "magic"}), "Choose a method"),
        (json.dumps({"type": "start", "method": "api_key", "value": 42}), "Paste the key"),
        (json.dumps({"type": "cancel"}), "no login to cancel"),
    ):
        await comm.send_to(text_data=frame)
        assert error in (await until(comm, lambda m: m["type"] == "error"))["error"], frame
    await comm.send_to(bytes_data=b"\x00")
    assert "binary" in (await until(comm, lambda m: m["type"] == "error"))["error"]
    await comm.send_to(
        text_data=json.dumps({"type": "start", "method": "api_key", "value": "sk-ant-api03-" + "W" * 30})
    )
    assert "rejected" in (await until(comm, lambda m: m["type"] == "error"))["error"]
    await comm.send_to(text_data=json.dumps({"type": "start", "method": "api_key", "value": API_KEY}))
    await until(comm, lambda m: m["type"] == "saved")
    assert await database_sync_to_async(Secret.objects.filter(owner=user, kind="api_key").exists)()
    await comm.disconnect()


def test_a_docker_login_gets_memory_and_process_limits(settings):
    argv = claude_login.login_argv("abc123")
    assert argv[:8] == ["docker", "run", "--memory", "512m", "--memory-swap", "512m", "--pids-limit", "128"]
    assert "anyon-login-abc123" in argv and argv.count("--memory") == 1
    settings.ANYON_CLAUDE_LOGIN_MEMORY, settings.ANYON_CLAUDE_LOGIN_PIDS = "300m", 64
    settings.ANYON_CLAUDE_LOGIN_COMMAND = "docker run --memory 1g --pids-limit={pids} -i img claude setup-token"
    argv = claude_login.login_argv("x")
    assert argv == ["docker", "run", "--memory", "1g", "--pids-limit=64", "-i", "img", "claude", "setup-token"]
    settings.ANYON_CLAUDE_LOGIN_COMMAND = "bash fake.sh"  # not a container: nothing to add
    assert claude_login.login_argv("x") == ["bash", "fake.sh"]


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
    final = await until(comm, lambda m: m["type"] == "status" and m["state"] in claude_login.State.FINAL)
    assert final["state"] == end
    session = claude_login._sessions[user.pk]
    assert _RecordingEngine.removed == [f"anyon-login-{session.id}"]  # already, when the end is announced
    assert not session.child.isalive()
    await comm.disconnect()


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
async def test_fake_login_cli_inside_the_runtime_image(settings, runtime_image, docker_client, monkeypatch):
    """The production code path (the default `docker run … {image} …` command template, a PTY through the docker
    client) with the fake CLI mounted into a real container of the runtime image."""
    import shutil

    if not shutil.which("docker"):
        pytest.skip("the docker command-line client is not installed")
    default = settings.ANYON_CLAUDE_LOGIN_COMMAND
    assert default.startswith("docker run --rm -i -t --name {name}") and default.endswith("claude setup-token")
    settings.ANYON_CLAUDE_LOGIN_COMMAND = (
        default.replace("--network {network}", "--network none")
        .replace("anyon-exec claude setup-token", "bash /fakes/fake_claude_setup_token.sh")
        .replace("{image}", f"-v {FAKE_LOGIN_CLI.parent}:/fakes:ro {{image}}")
    )
    user = await database_sync_to_async(make_user)("cora")
    try:
        await run_subscription_login(user)
        assert await database_sync_to_async(Secret.objects.filter(owner=user, provider="claude").exists)()
        session = claude_login._sessions[user.pk]
        await eventually(
            lambda: not docker_client.containers.list(all=True, filters={"name": f"anyon-login-{session.id}"})
        )
    finally:
        claude_login._sessions.clear()


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("end", ["cancelled", "timed_out"])
async def test_login_container_is_limited_and_gone_when_the_login_ends(settings, runtime_image, docker_client, end):
    """The default `docker run` command (the fake CLI mounted into the runtime image): while the login waits for the
    code its container has the memory and process limits; when the login ends it is already gone."""
    import shutil

    if not shutil.which("docker"):
        pytest.skip("the docker command-line client is not installed")
    settings.ANYON_CLAUDE_LOGIN_COMMAND = (
        settings.ANYON_CLAUDE_LOGIN_COMMAND.replace("--network {network}", "--network none")
        .replace("anyon-exec claude setup-token", "bash /fakes/fake_claude_setup_token.sh")
        .replace("{image}", f"-v {FAKE_LOGIN_CLI.parent}:/fakes:ro {{image}}")
    )
    settings.ANYON_CLAUDE_LOGIN_MEMORY, settings.ANYON_CLAUDE_LOGIN_PIDS = "256m", 100
    user = await database_sync_to_async(make_user)("lim")
    comm = communicator(user)
    try:
        assert (await comm.connect())[0]
        await comm.send_to(text_data=json.dumps({"type": "start", "method": "subscription"}))
        await until(comm, lambda m: m["type"] == "need_code", timeout=60)
        session = claude_login._sessions[user.pk]
        name = f"anyon-login-{session.id}"
        host = docker_client.api.inspect_container(name)["HostConfig"]
        assert host["Memory"] == 256 * 1024**2 and host["MemorySwap"] == 256 * 1024**2 and host["PidsLimit"] == 100
        if end == "cancelled":
            await comm.send_to(text_data=json.dumps({"type": "cancel"}))
        else:
            settings.ANYON_CLAUDE_LOGIN_TIMEOUT = 0
        final = await until(comm, lambda m: m["type"] == "status" and m["state"] in claude_login.State.FINAL)
        assert final["state"] == end
        assert not docker_client.containers.list(all=True, filters={"name": name})  # gone already, no sweep
        await comm.disconnect()
    finally:
        claude_login._sessions.clear()


# --- the real CLIs' screens (tests/fixtures/transcripts/setup-token/) ------------------------------------------


class _Recorder:
    """A login session fed with recorded output instead of a process; what it would save or stop is recorded."""

    def __init__(self, monkeypatch):
        self.session = claude_login.LoginSession(user_id=0)
        self.saved: list[str] = []
        self.failed: list[str] = []
        monkeypatch.setattr(self.session, "_save", self.saved.append)
        monkeypatch.setattr(self.session, "fail", self._fail)

    def _fail(self, message: str) -> None:  # as the real one: final state, no alert or process to stop
        self.failed.append(message)
        self.session.state = claude_login.State.ERROR

    def feed(self, raw: str, chunk: int = 7) -> None:
        for i in range(0, len(raw), chunk):  # small chunks: sequences and words cut anywhere
            self.session._on_output(raw[i : i + chunk])

    def code_sent(self) -> None:
        self.session._raw_at_code = len(self.session._raw)
        self.session.state = claude_login.State.EXCHANGING


def screen(name: str) -> str:
    return (SCREENS / name).read_bytes().decode("utf-8", errors="replace")


@pytest.mark.parametrize(
    ("version", "url_start"),
    [
        ("2.0.31", "https://claude.ai/oauth/authorize?code=true&client_id="),
        ("2.1.332", "https://claude.ai/oauth/authorize?"),
    ],
)
def test_real_screens_reach_the_code_prompt(monkeypatch, version, url_start):
    raw = screen(f"{version}.raw")
    rec = _Recorder(monkeypatch)
    rec.feed(raw)
    session = rec.session
    assert session.state == claude_login.State.WAITING_CODE
    assert session.url.startswith(url_start) and session.url in raw and not session.url.endswith(("\x1b", "\x07"))
    if version == "2.1.332":
        # The URL is the OSC 8 hyperlink's target, the same as the text shown.
        assert f";{session.url}\x07" in raw
        assert "\x1b]8;" in raw and "\x1b]8;" not in session.transcript
    else:
        assert "&state=" in session.url
    assert "Paste code here if prompted" in session.transcript
    assert "\x1b" not in session.transcript and not rec.saved and not rec.failed


@pytest.mark.parametrize("version", ["2.0.31", "2.1.332"])
def test_real_exchange_error_ends_the_login(monkeypatch, version):
    """Both CLIs stay open after an OAuth error; the session fails with the CLI's message."""
    before, full = screen(f"{version}.raw"), screen(f"{version}-exchange-error.raw")
    assert full.startswith(before)
    rec = _Recorder(monkeypatch)
    rec.feed(before)
    assert rec.session.state == claude_login.State.WAITING_CODE
    rec.code_sent()
    rec.feed(full[len(before) :])
    assert len(rec.failed) == 1 and "OAuth error" in rec.failed[0] and not rec.saved
    assert ("EAI_AGAIN" in rec.failed[0]) and "\x1b" not in rec.failed[0]


def test_an_oauth_error_before_the_code_does_not_count(monkeypatch):
    rec = _Recorder(monkeypatch)
    rec.feed(screen("2.1.332.raw") + "OAuth error: stale\r\n")
    rec.code_sent()
    rec.feed("\x1b[2K Exchanging…\r\n")
    assert not rec.failed


@pytest.mark.parametrize("ending", ["\x1b[22m", "\r\r\n", " "])
def test_token_is_taken_only_once_it_has_ended(monkeypatch, ending):
    token = track_secret("sk-ant-oat01-" + "E" * 90 + "-endAA")
    rec = _Recorder(monkeypatch)
    rec.feed(screen("2.1.332.raw"))
    rec.code_sent()
    rec.session._on_output("\x1b[2GYour\x1b[7GOAuth\x1b[13Gtoken\r\r\n\x1b[2G\x1b[1m" + token[:40])
    rec.session._on_output(token[40:-1])
    assert not rec.saved, "a token cut by a chunk boundary must not be stored"
    rec.session._on_output(token[-1:])
    assert not rec.saved
    rec.session._on_output(ending)
    assert rec.saved == [token]


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
async def test_real_cli_login_screens_inside_the_runtime_image(settings, runtime_image, docker_client):
    """The production command with the image's real `claude setup-token` (no network: it draws the URL, then the
    exchange fails): the session reaches the code prompt, sends the code with Enter, and ends on the CLI's error."""
    import shutil

    if not shutil.which("docker"):
        pytest.skip("the docker command-line client is not installed")
    settings.ANYON_CLAUDE_LOGIN_COMMAND = settings.ANYON_CLAUDE_LOGIN_COMMAND.replace(
        "--network {network}", "--network none"
    )
    user = await database_sync_to_async(make_user)("real")
    comm = communicator(user)
    try:
        assert (await comm.connect())[0]
        await comm.send_to(text_data=json.dumps({"type": "start", "method": "subscription"}))
        url = (await until(comm, lambda m: m["type"] == "url", timeout=60))["url"]
        assert url.startswith("https://claude.ai/oauth/authorize?")
        await until(comm, lambda m: m["type"] == "need_code", timeout=60)
        await comm.send_to(text_data=json.dumps({"type": "code", "code": "madeUpCode1234#madeUpState5678"}))
        failed = await until(comm, lambda m: m["type"] == "status" and m["state"] == "error", timeout=60)
        assert "OAuth error" in failed["message"] and "madeUpCode1234" not in failed["message"]
        session = claude_login._sessions[user.pk]
        await eventually(
            lambda: not docker_client.containers.list(all=True, filters={"name": f"anyon-login-{session.id}"})
        )
        await comm.disconnect()
    finally:
        claude_login._sessions.clear()
