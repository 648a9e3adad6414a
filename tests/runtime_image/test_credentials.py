"""Credentials reach the real CLIs through anyon-exec and the git credential helper, and nowhere else.

Every test mounts a secret dir read-only at /run/anyon-secrets (as the worker does), runs the real tool in the
real image against a fake server on 127.0.0.1 (host networking), checks that the fake saw exactly the injected
value, and then that neither `docker inspect` (container and execs) nor any file in the container shows it.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlsplit

import pytest

from tests.fakes.anthropic_api import FakeAnthropicAPI, TextReply, ToolUseReply
from tests.fakes.git_http import FakeGitHTTPServer, head_commit, make_bare_repo
from tests.runtime_image.support import (
    HARDENING,
    assert_not_in_inspect,
    assert_not_on_disk,
    fake_api_key,
    fake_github_token,
    fake_oauth_token,
    run_exec,
    secrets_volume,
)

pytestmark = pytest.mark.docker

CLAUDE_PING = ["anyon-exec", "claude", "-p", "ping", "--output-format", "json"]


def _claude_result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON result from claude: {stdout!r}"
    return json.loads(lines[-1])


@pytest.mark.parametrize("kind", ["oauth_token", "api_key"])
def test_claude_cli_uses_the_injected_credential(kind, docker_client, runtime_image, container_factory, secret_dir):
    if kind == "oauth_token":
        value, files = fake_oauth_token(), {}
        files["claude_oauth_token"] = value
    else:
        value, files = fake_api_key(), {}
        files["anthropic_api_key"] = value
    github_token = fake_github_token()
    secrets = secret_dir(github_token=github_token, **files)
    container = container_factory(runtime_image, network_mode="host", volumes=secrets_volume(secrets), **HARDENING)

    with FakeAnthropicAPI(expected_token=value) as api:
        result = run_exec(docker_client, container, CLAUDE_PING, environment={"ANTHROPIC_BASE_URL": api.url})

    assert result.exit_code == 0, result.stderr + result.stdout
    outcome = _claude_result(result.stdout)
    assert outcome["type"] == "result" and outcome["subtype"] == "success" and outcome["result"] == "pong"
    calls = api.messages_requests()
    assert calls and all(r.query == "beta=true" for r in calls)
    # The agent turn streams; side requests (e.g. the OAuth "quota" probe, max_tokens 1) may not.
    assert any(r.is_agent_turn and r.json.get("stream") is True for r in calls)
    assert api.credentials() == {value}
    for request in calls:
        if kind == "oauth_token":
            assert request.headers["authorization"] == f"Bearer {value}"
            assert "x-api-key" not in request.headers
        else:
            assert request.headers["x-api-key"] == value
            assert "authorization" not in request.headers

    assert_not_in_inspect(docker_client, container, [result.exec_id], [value, github_token])
    assert_not_on_disk(docker_client, container, [value, github_token])


def test_claude_cli_fails_on_a_rejected_credential(docker_client, runtime_image, container_factory, secret_dir):
    """The fake really checks: a token it does not expect gets Anthropic's 401 and the CLI reports failure."""
    injected = fake_oauth_token()
    secrets = secret_dir(claude_oauth_token=injected)
    container = container_factory(runtime_image, network_mode="host", volumes=secrets_volume(secrets), **HARDENING)
    with FakeAnthropicAPI(expected_token=fake_oauth_token()) as api:
        result = run_exec(docker_client, container, CLAUDE_PING, environment={"ANTHROPIC_BASE_URL": api.url})
    assert result.exit_code != 0
    assert _claude_result(result.stdout)["is_error"] is True
    assert api.credentials() == {injected}
    assert not any(r.auth_ok for r in api.messages_requests())


def test_claude_cli_writes_a_file_through_a_scripted_tool_call(
    docker_client, runtime_image, container_factory, secret_dir
):
    token = fake_oauth_token()
    secrets = secret_dir(claude_oauth_token=token)
    container = container_factory(runtime_image, network_mode="host", volumes=secrets_volume(secrets), **HARDENING)
    replies = [
        ToolUseReply("Write", {"file_path": "/workspace/hello.txt", "content": "hello from the fake\n"}),
        TextReply("wrote hello.txt"),
    ]
    with FakeAnthropicAPI(expected_token=token, replies=replies) as api:
        result = run_exec(
            docker_client,
            container,
            [*CLAUDE_PING, "--permission-mode", "acceptEdits"],
            environment={"ANTHROPIC_BASE_URL": api.url},
        )
    assert result.exit_code == 0, result.stderr + result.stdout
    assert _claude_result(result.stdout)["result"] == "wrote hello.txt"
    assert api.pending_replies == 0
    tool_results = [block for r in api.messages_requests() for block in r.tool_results()]
    assert tool_results and not any(block.get("is_error") for block in tool_results)
    written = run_exec(docker_client, container, ["cat", "/workspace/hello.txt"])
    assert written.stdout == "hello from the fake\n"


def test_exec_wrapper_exports_secrets_only_into_the_exec(docker_client, runtime_image, container_factory, secret_dir):
    values = {
        "github_token": fake_github_token(),
        "claude_oauth_token": fake_oauth_token(),
        "anthropic_api_key": fake_api_key(),
    }
    names = {
        "github_token": "GH_TOKEN",
        "claude_oauth_token": "CLAUDE_CODE_OAUTH_TOKEN",
        "anthropic_api_key": "ANTHROPIC_API_KEY",
    }
    container = container_factory(runtime_image, volumes=secrets_volume(secret_dir(**values)))
    exec_ids = []
    for file, var in names.items():
        # Hash inside the container so that the value itself never travels through exec output or argv.
        wrapped = run_exec(docker_client, container, ["anyon-exec", "bash", "-c", f'printf %s "${var}" | sha256sum'])
        exec_ids.append(wrapped.exec_id)
        assert wrapped.stdout.split()[0] == hashlib.sha256(values[file].encode()).hexdigest()
        plain = run_exec(docker_client, container, ["bash", "-c", f'test -z "${{{var}:-}}"'])
        exec_ids.append(plain.exec_id)
        assert plain.exit_code == 0, f"{var} is set in an exec that did not go through anyon-exec"
    flags = run_exec(
        docker_client,
        container,
        ["anyon-exec", "bash", "-c", 'echo "$CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC $GIT_TERMINAL_PROMPT"'],
    )
    assert flags.stdout.strip() == "1 0"
    # gh reads GH_TOKEN from the environment anyon-exec built.
    gh = run_exec(docker_client, container, ["anyon-exec", "bash", "-c", "gh auth token | tr -d '\\n' | sha256sum"])
    assert gh.stdout.split()[0] == hashlib.sha256(values["github_token"].encode()).hexdigest()
    # The main process (sleep, under docker-init) never had them.
    environ = run_exec(docker_client, container, ["bash", "-c", "tr '\\0' '\\n' </proc/1/environ | cut -d= -f1"])
    assert not set(environ.stdout.split()) & set(names.values())
    assert_not_in_inspect(docker_client, container, [*exec_ids, flags.exec_id, gh.exec_id], values.values())
    assert_not_on_disk(docker_client, container, values.values())


def test_exec_wrapper_without_secrets_and_with_an_unreadable_one(
    docker_client, runtime_image, container_factory, secret_dir
):
    bare = container_factory(runtime_image)  # no secret mount at all
    result = run_exec(docker_client, bare, ["anyon-exec", "bash", "-c", 'echo "${GH_TOKEN-unset}"'])
    assert (result.exit_code, result.stdout.strip()) == (0, "unset")

    root_owned = secret_dir(owner=0, github_token=fake_github_token())
    container = container_factory(runtime_image, volumes=secrets_volume(root_owned))
    result = run_exec(docker_client, container, ["anyon-exec", "true"])
    assert result.exit_code == 126
    assert "not readable" in result.stderr


# --- git -------------------------------------------------------------------------------------------------------
@pytest.fixture
def git_remote(tmp_path):
    token = fake_github_token()
    repo = make_bare_repo(tmp_path / "demo.git", {"README.md": "# demo\n"})
    with FakeGitHTTPServer(repo, token) as server:
        yield server, token


def test_git_authenticates_with_the_injected_token(
    docker_client, runtime_image, container_factory, secret_dir, git_remote
):
    server, token = git_remote
    secrets = secret_dir(github_token=token)
    container = container_factory(runtime_image, network_mode="host", volumes=secrets_volume(secrets), **HARDENING)
    steps = [
        ["git", "ls-remote", server.url],
        ["git", "clone", "--quiet", server.url, "/workspace/demo"],
        [
            "bash",
            "-c",
            "cd /workspace/demo && echo change >> README.md && "
            "git -c user.name=Anyon -c user.email=anyon@example.invalid commit -qam change",
        ],
        ["git", "-C", "/workspace/demo", "push", "--quiet", "origin", "main"],
        ["git", "-C", "/workspace/demo", "fetch", "--quiet", "origin"],
    ]
    exec_ids = []
    hosts = {"ANYON_GIT_CREDENTIAL_HOSTS": urlsplit(server.url).netloc}  # what the worker sets on every exec
    for argv in steps:
        result = run_exec(docker_client, container, ["anyon-exec", *argv], environment=hosts)
        exec_ids.append(result.exec_id)
        assert result.exit_code == 0, f"{argv}: {result.stderr}"
        if argv[1] == "ls-remote":
            assert f"{head_commit(server.repo_dir)}\trefs/heads/main" in result.stdout

    pushed = run_exec(docker_client, container, ["git", "-C", "/workspace/demo", "rev-parse", "HEAD"])
    assert pushed.stdout.strip() == head_commit(server.repo_dir)
    authed = [r for r in server.requests if r.auth_ok]
    assert authed and {r.username for r in authed} == {"x-access-token"}
    assert any("receive-pack" in r.path for r in authed)
    config = run_exec(docker_client, container, ["cat", "/workspace/demo/.git/config"]).stdout
    assert f"url = {server.url}\n" in config

    assert_not_in_inspect(docker_client, container, exec_ids, [token])
    assert_not_on_disk(docker_client, container, [token])


@pytest.mark.parametrize("secret", ["none", "wrong"])
def test_git_is_refused_without_the_token(
    secret, docker_client, runtime_image, container_factory, secret_dir, git_remote
):
    server, _token = git_remote
    files = {"github_token": fake_github_token()} if secret == "wrong" else {}
    container = container_factory(runtime_image, network_mode="host", volumes=secrets_volume(secret_dir(**files)))
    hosts = {"ANYON_GIT_CREDENTIAL_HOSTS": urlsplit(server.url).netloc}
    result = run_exec(
        docker_client, container, ["anyon-exec", "git", "ls-remote", server.url], timeout=60, environment=hosts
    )
    assert result.exit_code != 0
    expected = "Authentication failed" if secret == "wrong" else "could not read Username"
    assert expected in result.stderr
    assert not any(r.auth_ok for r in server.requests)
    assert server.requests  # it did reach the server (and got 401)


def test_credential_helper_scope(docker_client, runtime_image, container_factory, secret_dir):
    """The token goes only to ANYON_GIT_CREDENTIAL_HOSTS (none when unset), over https, or plain http to loopback."""
    token = fake_github_token()
    container = container_factory(runtime_image, volumes=secrets_volume(secret_dir(github_token=token)))
    digest = hashlib.sha256(f"username=x-access-token\npassword={token}\n".encode()).hexdigest()
    empty = hashlib.sha256(b"").hexdigest()

    def ask(protocol: str, host: str, hosts: str | None = None) -> str:
        request = f"protocol={protocol}\\nhost={host}\\n\\n"
        env = {"ANYON_GIT_CREDENTIAL_HOSTS": hosts} if hosts is not None else None
        result = run_exec(
            docker_client,
            container,
            ["bash", "-c", f"printf '{request}' | anyon-git-credential get | sha256sum"],
            environment=env,
        )
        assert result.exit_code == 0, result.stderr
        return result.stdout.split()[0]

    everywhere = "github.com 127.0.0.1:8080 localhost 10.1.2.3:80"
    assert ask("https", "github.com") == empty  # no host list: nothing is offered
    assert ask("https", "github.com", hosts="") == empty
    assert ask("https", "github.com", hosts=everywhere) == digest
    assert ask("http", "127.0.0.1:8080", hosts=everywhere) == digest
    assert ask("http", "localhost", hosts=everywhere) == digest
    assert ask("http", "github.com", hosts=everywhere) == empty
    assert ask("http", "10.1.2.3:80", hosts=everywhere) == empty
    assert ask("ssh", "github.com", hosts=everywhere) == empty
    assert ask("https", "evil.example", hosts="github.com, ghe.example") == empty
    store = run_exec(
        docker_client,
        container,
        ["bash", "-c", "printf 'protocol=https\\nhost=x\\npassword=p\\n\\n' | anyon-git-credential store"],
    )
    assert (store.exit_code, store.stdout) == (0, "")
