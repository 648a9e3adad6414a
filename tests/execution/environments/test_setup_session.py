"""The setup phase in the runner's session against the in-process engine fake: which exec gets the setup secrets
and the variables, the restart between the setup and the agent, and a secret found on disk (the same paths against
the real engine, image and proxy are in test_setup_docker.py)."""

from __future__ import annotations

import pytest

from execution.attempts.actions import do_create_task, do_start_attempt, do_transition
from execution.attempts.steps import AGENT_ARGV
from execution.environments.actions import do_save_environment, do_set_setup_secret
from execution.models import AttemptStatus, LogRecord, Run, RunKind
from execution.runner.session import AttemptSession
from secrets_app.secret_store import do_store_secret
from tests.execution.conftest import oauth_token
from tests.fakes.docker_engine import FakeEngine, ScriptedExec, agent_events
from tests.fixtures.leaks import track_secret
from tests.fixtures.queueing import held_from_workers

CLONE = {"kind": "clone", "title": "Clone repository", "argv": ["git", "clone", "x", "/workspace"]}
AGENT = {"kind": "agent", "title": "Claude Code", "argv": AGENT_ARGV, "stdin": "go"}
DONE = agent_events({"type": "result", "subtype": "success", "is_error": False, "result": "done", "session_id": "s"})


@pytest.fixture
def secret(alice, settings, tmp_path) -> str:
    settings.ANYON_TEMP_DIR = tmp_path / "anyon-tmp"
    do_store_secret(owner=alice, provider="claude", kind="oauth_token", value=oauth_token())
    value = track_secret("setup-" + "7" * 30)
    environment = do_save_environment(
        owner=alice, repository="octo/repo", setup_script="echo ok", variables={"MODE": "ci"}
    )
    do_set_setup_secret(environment=environment, name="TOKEN", value=value)
    return value


def run(alice, engine: FakeEngine, plan: list[dict]):
    task = do_create_task(owner=alice, title="t", repo_url="https://github.com/Octo/Repo.git", base_branch="main",
                          prompt="go")  # fmt: skip
    with held_from_workers():
        attempt = do_start_attempt(task=task, plan=plan)
    assert do_transition(attempt=attempt, to=AttemptStatus.PROVISIONING)
    with AttemptSession(attempt, worker="test:1", engine=engine) as session:
        status = session.run_attempt()
    attempt.refresh_from_db()
    return status, attempt


def script():
    def answer(argv: list[str]) -> ScriptedExec | None:
        if argv[:4] == ["anyon-exec", "bash", "-e", "-c"]:
            return ScriptedExec([("stdout", b"installing\n")])
        if "claude" in argv:
            return ScriptedExec(DONE)
        return None

    return answer


def test_only_the_setup_exec_gets_the_secrets_and_the_agent_starts_after_a_restart(alice, secret):
    engine = FakeEngine(script())
    status, attempt = run(alice, engine, [CLONE, AGENT])
    assert status == AttemptStatus.SUCCEEDED
    kinds = list(Run.objects.filter(attempt=attempt).values_list("kind", flat=True))
    assert kinds[:3] == [RunKind.CLONE, RunKind.SETUP, RunKind.AGENT]
    streamed = list(zip(engine.execs, engine.environments, strict=True))
    setup_env = next(env for argv, env in streamed if argv[:2] == ["anyon-exec", "bash"])
    assert setup_env["TOKEN"] == secret and setup_env["MODE"] == "ci"
    others = [env for argv, env in streamed if argv[:2] != ["anyon-exec", "bash"]]
    assert others and all(secret not in env.values() for env in others)
    agent_env = next(env for argv, env in streamed if "claude" in argv)
    assert agent_env["MODE"] == "ci" and "TOKEN" not in agent_env
    order = [argv[0] if argv[0] != "anyon-exec" else argv[1] for argv in engine.execs]
    assert order.index("archive") < order.index("claude") and engine.restarts  # restarted, searched, then the agent
    text = "".join(LogRecord.objects.filter(attempt=attempt).values_list("text", flat=True))
    assert "installing" in text and secret not in text


def test_a_secret_found_on_disk_stops_the_attempt_before_the_agent(alice, secret):
    engine = FakeEngine(script())
    engine.files = {"/home/anyon/.npmrc": f"//registry/:_authToken={secret}\n".encode(), "/var/tmp/ok": b"x"}
    status, attempt = run(alice, engine, [CLONE, AGENT])
    assert status == AttemptStatus.FAILED
    assert "TOKEN in /home/anyon/.npmrc" in attempt.error and secret not in attempt.error
    assert ["archive", "/var/tmp/ok"] in engine.execs  # a path the container changed, outside the volumes
    assert not any("claude" in argv for argv in engine.execs)


def test_without_a_clone_step_there_is_no_setup(alice, secret):
    engine = FakeEngine(script())
    status, attempt = run(alice, engine, [AGENT])
    assert status == AttemptStatus.SUCCEEDED
    assert not Run.objects.filter(attempt=attempt, kind=RunKind.SETUP).exists()
