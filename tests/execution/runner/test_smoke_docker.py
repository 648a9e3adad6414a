"""The seed's "docker exec smoke test": clone with the injected GitHub token and run the real Claude CLI against
a fake Anthropic API, in the real runtime image on the real engine."""

from __future__ import annotations

import base64
import json

import pytest
from django.conf import settings

from execution.attempts import secret_dir
from execution.attempts.containers import home_volume
from execution.models import AttemptStatus, RunStatus
from execution.runner import run_attempt
from secrets_app.models import SecretAccess
from shared.models import Alert
from tests.execution.conftest import logs
from tests.fakes.anthropic_api import TextReply, ToolUseReply
from tests.fakes.github import FakeGitHub
from tests.fixtures.engine_files import volume_files
from tests.fixtures.queueing import held_from_workers

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def repo(world, github: FakeGitHub) -> str:
    github.add_token(world.github_token, login="alice")
    return github.add_repo("acme", "widgets", {"README.md": "# widgets\n"})


def test_clone_and_claude_succeed_with_injected_credentials(world, github, repo):
    attempt = world.attempt(repo_url=repo, prompt="Say pong")
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    runs = list(attempt.runs.all())
    assert [(r.kind, r.status, r.exit_code) for r in runs] == [
        ("clone", RunStatus.SUCCEEDED, 0),
        ("custom", RunStatus.SUCCEEDED, 0),
        ("agent", RunStatus.SUCCEEDED, 0),
        ("custom", RunStatus.SUCCEEDED, 0),  # commit changes (none here: "No changes to commit")
    ]
    assert "No changes to commit" in logs(attempt, "stdout")
    # The real CLI authenticated with exactly the injected token; git used exactly the injected PAT.
    assert world.api.credentials() == {world.claude_token}
    git_auth = {r.headers.get("authorization") for r in github.git_requests()}
    expected = "Basic " + base64.b64encode(f"x-access-token:{world.github_token}".encode()).decode()
    assert expected in git_auth
    assert runs[2].session_id  # kept for follow-ups
    agent = logs(attempt, "agent")
    assert "[claude] pong" in agent and "[done]" in agent
    assert "Cloning into '/workspace'" in logs(attempt, "stderr")
    assert not secret_dir.secret_dir_path(attempt.pk).exists()
    purposes = set(SecretAccess.objects.filter(attempt_id=attempt.pk).values_list("provider", "outcome"))
    assert purposes == {("github", "success"), ("claude", "success")}


def test_clone_fails_without_the_token(world, github, repo):
    github.accounts.clear()  # GitHub no longer accepts the token
    attempt = world.attempt(repo_url=repo)
    assert run_attempt(attempt.pk) == AttemptStatus.FAILED
    clone = attempt.runs.get()
    assert clone.kind == "clone" and clone.exit_code == 128
    assert "Authentication failed" in logs(attempt, "stderr") or "could not read Username" in logs(attempt)
    assert not secret_dir.secret_dir_path(attempt.pk).exists()


def test_agent_output_is_masked_and_a_cli_error_fails_the_run(world, github, repo, docker_client):
    world.api.enqueue(
        # Claude Code 2.1 keeps its own credential variable out of its tools' environment (2.0.31 did not); the
        # mounted file is readable by the agent all the same, so the masking is tested with that on both.
        ToolUseReply(
            "Bash", {"command": 'echo "token is $(cat /run/anyon-secrets/claude_oauth_token)"', "description": "leak"}
        ),
        TextReply(f"I saw {world.claude_token} and {world.github_token}"),
    )
    attempt = world.attempt(repo_url=repo)
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    text = logs(attempt)
    assert world.claude_token not in text and world.github_token not in text
    assert "[tool] Bash: echo" in text and "token is ***" in text and "I saw *** and ***" in text
    # The CLI's own session history (kept in the home volume for --resume) held both values: masked there too.
    assert "Masked secrets in 1 file(s) of the agent's session history" in text
    attempt.refresh_from_db()
    files = volume_files(docker_client, [home_volume(attempt.workspace_volume)], settings.ANYON_BASE_IMAGE)
    history = {name: raw.decode(errors="replace") for name, raw in files.items()}
    assert any(".claude/projects/" in name for name in history)
    assert not [name for name, text in history.items() if world.claude_token in text or world.github_token in text]
    assert any("token is ***" in text for text in history.values())


def test_wrong_claude_credential_fails_the_attempt_and_marks_it_expired(world, github, repo, client):
    world.api.expected_token = "sk-ant-oat01-" + "n" * 50  # the API rejects what we inject
    attempt = world.attempt(repo_url=repo)
    assert run_attempt(attempt.pk) == AttemptStatus.FAILED
    attempt.refresh_from_db()
    agent_run = attempt.runs.get(kind="agent")
    assert agent_run.status == RunStatus.FAILED, logs(attempt)
    assert not secret_dir.secret_dir_path(attempt.pk).exists()
    # The seed's "token expiry → UI banner" loop: the rejected credential is marked, the card and banner say so.
    from secrets_app.models import Secret

    claude = Secret.objects.get(provider="claude")
    assert claude.state == "expired" and "Claude rejected it" in claude.state_reason
    assert Alert.objects.filter(attempt_id=attempt.pk, kind="claude_cli_error").exists()
    client.force_login(world.user)
    html = client.get("/settings/").content.decode()
    assert 'data-testid="claude-card" data-state="expired"' in html
    assert "Your Claude credential has expired" in html and "Reconnect Claude" in html


HOSTILE_PROMPT = (
    "NUL:\x00 $(touch /tmp/pwned) `touch /tmp/pwned2`; rm -rf / --no-preserve-root && "
    "echo \"quoted\" 'single' | cat > /tmp/x "
    "\\ backslash\nsecond line\twith tab ${HOME} %s %n {{template}} <script>alert(1)</script> "
    + "ü" * 30_000
    + "\n"
    + "a line of a long specification. " * 29_000  # about 1 MB in all
)


def test_prompt_reaches_the_cli_verbatim_and_no_shell_runs_it(world, github, repo, docker_client):
    """A 1 MB prompt full of shell syntax and a NUL goes to the CLI on stdin: the fake API sees the exact text (JSON
    escapes the NUL as \\u0000 on both sides), nothing ran, and the prompt is not in ``docker inspect`` of the exec."""
    assert 950_000 < len(HOSTILE_PROMPT.encode()) < 1_000_000
    from execution.attempts.steps import default_plan

    task = world.task(repo_url=repo, prompt=HOSTILE_PROMPT)
    check = {"kind": "custom", "title": "nothing ran", "argv": ["sh", "-c", "test ! -e /tmp/pwned -a ! -e /tmp/pwned2"]}
    from execution.attempts.actions import do_start_attempt

    with held_from_workers():
        attempt = do_start_attempt(task=task, plan=None)
    steps = default_plan(repo_url=task.repo_url, base_branch=task.base_branch, attempt_id=attempt.pk)
    attempt.plan = [*(step.to_plan() for step in steps), check]
    attempt.save(update_fields=["plan"])
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)[-3000:]
    first_turn = next(r for r in world.api.messages_requests() if r.is_agent_turn)
    user_text = json.dumps(first_turn.json["messages"][0]["content"], ensure_ascii=False)
    assert json.dumps(HOSTILE_PROMPT, ensure_ascii=False)[1:-1] in user_text
    assert attempt.runs.get(title="nothing ran").exit_code == 0
    agent = attempt.runs.get(kind="agent")
    assert HOSTILE_PROMPT[:40] not in "\n".join(agent.argv) and HOSTILE_PROMPT[6:46] not in json.dumps(agent.argv)
