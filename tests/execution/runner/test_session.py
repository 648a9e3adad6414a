# Long because streaming, masking and the outcome rules share one fake-engine setup.
"""The runner's session against the in-process engine fake: streaming, masking across chunks, and the outcome
rules, without Docker (the same paths against the real engine are in tests/execution/*/test_*_docker.py)."""

from __future__ import annotations

import pytest

from execution.attempts.actions import do_create_task, do_start_attempt, do_transition
from execution.attempts.steps import AGENT_ARGV
from execution.git import anyon_git
from execution.hosts.container_removal import wait_for_removals
from execution.models import AttemptStatus, LogRecord, Run, RunStatus
from execution.runner.session import AttemptSession
from secrets_app.models import Secret, SecretState
from secrets_app.secret_store import do_store_secret
from shared.models import Alert
from tests.execution.conftest import oauth_token
from tests.fakes.docker_engine import FakeEngine, ScriptedExec, agent_events
from tests.fixtures.queueing import held_from_workers


@pytest.fixture
def claude_token(alice, settings, tmp_path) -> str:
    settings.ANYON_TEMP_DIR = tmp_path / "anyon-tmp"
    token = oauth_token()
    do_store_secret(owner=alice, provider="claude", kind="oauth_token", value=token)
    return token


def run(alice, engine: FakeEngine, plan: list[dict], **session_options):
    task = do_create_task(
        owner=alice, title="t", repo_url="https://github.com/octo/repo.git", base_branch="main", prompt="go"
    )
    with held_from_workers():
        attempt = do_start_attempt(task=task, plan=plan)
    assert do_transition(attempt=attempt, to=AttemptStatus.PROVISIONING)
    session = AttemptSession(attempt, worker="test:1", engine=engine)
    for name, value in session_options.items():
        setattr(session, name, value)
    with session:
        status = session.run_attempt()
    attempt.refresh_from_db()
    return status, attempt


def text(attempt, stream: str | None = None) -> str:
    records = LogRecord.objects.filter(attempt=attempt).order_by("seq")
    return "".join(r.text for r in records if stream is None or r.stream == stream)


def step(*argv: str) -> dict:
    return {"kind": "custom", "title": "step", "argv": list(argv)}


AGENT_STEP = {"kind": "agent", "title": "Claude Code", "argv": AGENT_ARGV, "stdin": "go"}


def test_output_is_stored_in_order_and_a_secret_split_across_chunks_is_masked(alice, claude_token):
    half = len(claude_token) // 2
    chunks = [
        ("stdout", b"first line\nthe token is "),
        ("stdout", claude_token[:half].encode()),
        ("stdout", claude_token[half:].encode() + b" (printed)\n"),
        ("stderr", b"a warning\n"),
    ]
    engine = FakeEngine(lambda argv: ScriptedExec(chunks) if argv[-1] == "print" else None)
    status, attempt = run(alice, engine, [step("print")])
    assert status == AttemptStatus.SUCCEEDED
    assert text(attempt, "stdout") == "first line\nthe token is *** (printed)\n"
    assert text(attempt, "stderr") == "a warning\n"
    assert claude_token[:half] not in text(attempt) and claude_token[half:] not in text(attempt)
    assert engine.execs[0] == ["anyon-exec", "print"]


def test_a_nonzero_exit_fails_the_attempt_with_its_code_and_raises_an_alert(alice, claude_token):
    engine = FakeEngine(lambda argv: ScriptedExec([("stdout", b"boom\n")], exit_code=3) if argv[-1] == "fail" else None)
    status, attempt = run(alice, engine, [step("fail"), step("never")])
    assert status == AttemptStatus.FAILED and attempt.error == "step exited with code 3."
    assert ["anyon-exec", "never"] not in engine.execs
    assert Alert.objects.filter(kind="exec_nonzero_exit", attempt_id=attempt.pk).exists()
    assert Run.objects.get(attempt=attempt).status == RunStatus.FAILED


def test_a_container_that_goes_away_mid_step_is_reported_as_such(alice, claude_token):
    engine = FakeEngine(lambda argv: ScriptedExec([("stdout", b"half")], exit_code=None) if argv[-1] == "x" else None)
    status, attempt = run(alice, engine, [step("x")])
    assert status == AttemptStatus.FAILED and attempt.error == "The container stopped unexpectedly during the step."


def test_an_engine_that_stops_answering_mid_step_ends_the_attempt_as_a_lost_host(alice, claude_token, settings):
    """The run broke and the engine no longer answers: the host went away. Nothing more is asked of that engine
    (its container waits for the host's sweep), the secret dir goes, the host is marked down, one alert."""
    from execution.attempts import secret_dir
    from execution.hosts.actions import do_host_heartbeat
    from execution.models import DockerHost

    settings.ANYON_WORKER_QUEUE = "host-b"
    do_host_heartbeat(name="host-b", docker_host="", worker="w", engine_ok=True)

    def script(argv):
        if argv[-1] == "x":
            engine.gone = "ConnectionError: refused"
            return ScriptedExec([("stdout", b"half")], exit_code=None, raises=ConnectionError("refused"))
        return None

    engine = FakeEngine(script)
    status, attempt = run(alice, engine, [step("x")])
    assert status == AttemptStatus.FAILED
    assert attempt.error == (
        "The Docker host went away: the engine of host host-b stopped answering during the attempt "
        "(ConnectionError: refused). Start a new attempt: it goes to a healthy host."
    )
    assert list(engine.containers) and engine.containers[attempt.container_id]["running"]  # not asked to remove
    assert not secret_dir.secret_dir_path(attempt.pk).exists()
    assert not DockerHost.objects.get(name="host-b").engine_ok
    assert Alert.objects.get(kind="docker_host_lost").attempt_id == attempt.pk


def test_an_agent_that_ends_without_a_result_event_fails(alice, claude_token):
    init = {"type": "system", "subtype": "init", "session_id": "s-1", "model": "m"}
    engine = FakeEngine(lambda argv: ScriptedExec(agent_events(init)) if "claude" in argv else None)
    status, attempt = run(alice, engine, [AGENT_STEP])
    assert status == AttemptStatus.FAILED and attempt.error == "Claude Code ended without a result event."


def test_an_agent_whose_credential_is_refused_marks_it_expired(alice, claude_token):
    refused = {
        "type": "result",
        "subtype": "success",
        "is_error": True,
        "result": "Invalid API key · Please run /login",
    }
    engine = FakeEngine(lambda argv: ScriptedExec(agent_events(refused)) if "claude" in argv else None)
    status, attempt = run(alice, engine, [AGENT_STEP])
    assert status == AttemptStatus.FAILED and attempt.error.startswith("Claude reported an error: Invalid API key")
    assert Secret.objects.get(owner=alice, provider="claude").state == SecretState.EXPIRED
    assert "marked expired" in text(attempt, "system")
    assert Alert.objects.filter(kind="claude_cli_error", attempt_id=attempt.pk).exists()


def test_a_successful_agent_records_its_session_for_follow_ups(alice, claude_token):
    events = agent_events(
        {"type": "system", "subtype": "init", "session_id": "s-42", "model": "m"},
        {"type": "result", "subtype": "success", "is_error": False, "result": "done", "session_id": "s-42"},
    )
    engine = FakeEngine(lambda argv: ScriptedExec(events) if "claude" in argv else None)
    status, attempt = run(alice, engine, [AGENT_STEP])
    assert status == AttemptStatus.SUCCEEDED
    assert Run.objects.get(attempt=attempt, kind="agent").session_id == "s-42"
    assert wait_for_removals(10) and not engine.containers  # removed, in the background


@pytest.mark.parametrize("reason", ["cancel", "timeout"])
def test_cancel_and_timeout_kill_the_container_and_end_the_step(alice, claude_token, settings, reason):
    slow = ScriptedExec([("stdout", b"tick\n")] * 100, delay=0.05)
    engine = FakeEngine(lambda argv: slow if argv[-1] == "slow" else None)
    requested = {"cancel": False}
    options = {}
    if reason == "timeout":
        settings.RUN_TIMEOUT = 0.3
    else:
        engine.script = lambda argv: (requested.update(cancel=True) or slow) if argv[-1] == "slow" else None
        options["_cancel_requested"] = lambda: requested["cancel"]
    status, attempt = run(alice, engine, [step("slow")], **options)
    expected = AttemptStatus.CANCELLED if reason == "cancel" else AttemptStatus.TIMED_OUT
    assert status == expected and engine.killed
    assert text(attempt, "stdout").count("tick") < 100


def test_a_token_in_the_agents_result_is_masked_before_any_cut_and_in_every_stored_error(alice, claude_token):
    """The CLI's result text goes into the log, Run.error and Attempt.error: a token in it is masked everywhere,
    also where the rendering clips the text (2000 characters) right through the token."""
    from tests.fakes.github import classic_token

    token = classic_token()  # a token-shaped string nobody told the masker about
    result = "x" * 1980 + token + " and " + claude_token  # the clip at 2000 cuts the token after 20 characters
    refused = {"type": "result", "is_error": True, "result": result}
    engine = FakeEngine(lambda argv: ScriptedExec(agent_events(refused)) if "claude" in argv else None)
    status, attempt = run(alice, engine, [AGENT_STEP])
    assert status == AttemptStatus.FAILED
    run_row = Run.objects.get(attempt=attempt, kind="agent")
    for stored in (
        text_of := text(attempt),
        run_row.error,
        attempt.error,
        Alert.objects.get(kind="claude_cli_error").message,
    ):
        assert token[:12] not in stored and claude_token[:16] not in stored, stored[-200:]
    assert "***" in text_of


def test_a_short_session_neither_heartbeats_nor_looks_for_a_cancel_twice_in_a_row(alice, claude_token, monkeypatch):
    """The pick-up wrote the attempt's first heartbeat, and each step starts with a look for a cancel: the step's
    stream does not repeat either at once (each was a write or a query per step, with ten attempts at once)."""
    from execution.runner import step_runner

    heartbeats, looks = [], []
    monkeypatch.setattr(step_runner, "do_heartbeat", lambda *, attempt: heartbeats.append(attempt.pk))
    looking = AttemptSession._cancel_requested

    def counted(self) -> bool:
        looks.append(self.attempt.pk)
        return looking(self)

    monkeypatch.setattr(AttemptSession, "_cancel_requested", counted)
    status, _ = run(alice, FakeEngine(), [step("echo", "one"), step("echo", "two")])
    assert status == AttemptStatus.SUCCEEDED
    assert heartbeats == [] and len(looks) == 2  # one before each step

    # A step running longer than the heartbeat interval heartbeats, and looks for a cancel, while it runs.
    monkeypatch.setattr(step_runner, "HEARTBEAT_SECONDS", 0.1)
    slow = ScriptedExec([("stdout", b"tick\n")] * 6, delay=0.1)
    status, attempt = run(alice, FakeEngine(lambda argv: slow if argv[-1] == "slow" else None), [step("slow")])
    assert status == AttemptStatus.SUCCEEDED and heartbeats and set(heartbeats) == {attempt.pk}
    assert looks.count(attempt.pk) >= 3


def test_the_last_step_reports_the_commits_so_the_results_need_no_exec(alice, claude_token):
    """A plan of custom steps: the last one's exec says at its end that there is no repository; no exec asks again
    (each costs the engine 50-70 ms of CPU). The report line is not in the log."""
    engine = FakeEngine(lambda argv: ScriptedExec([("stdout", b"ready\n")]) if argv[-1] == "last" else None)
    status, attempt = run(alice, engine, [step("echo", "first"), step("echo", "last")])
    assert status == AttemptStatus.SUCCEEDED and engine.reported == 1
    assert [argv[-1] for argv in engine.execs] == ["first", "last"]  # the step execs only
    assert engine.restarts == []  # no repository: no step of Anyon's follows, nothing to stop first
    assert "ready\n" in text(attempt, "stdout") and "anyon-report" not in text(attempt)
    last_run = Run.objects.filter(attempt=attempt).order_by("-id").first()
    assert last_run.argv == ["anyon-exec", "echo", "last"]  # what the run shows is the step's own command


def test_reported_commits_become_the_results_and_a_repository_still_gets_its_diff(alice, claude_token):
    engine = FakeEngine()
    engine.reports = f"repository {'a' * 40} {'b' * 40}"
    status, attempt = run(alice, engine, [step("make")])
    assert status == AttemptStatus.SUCCEEDED
    assert (attempt.base_commit, attempt.head_commit) == ("a" * 40, "b" * 40)
    assert engine.execs[-1] == anyon_git.diff_argv("a" * 40, "b" * 40)  # the diff is read by an exec of its own
    assert engine.restarts == [attempt.container_id]  # after the plan's step, before Anyon's diff


def test_a_step_stopped_before_its_report_leaves_the_results_to_an_exec(alice, claude_token):
    """A failing earlier step ends the session before the last step: its exec did not report, so one exec asks."""
    from execution.runner.step_report import REPORT_SCRIPT

    engine = FakeEngine(lambda argv: ScriptedExec(exit_code=2) if argv[-1] == "fails" else None)
    status, _ = run(alice, engine, [step("fails"), step("never")])
    assert status == AttemptStatus.FAILED and engine.reported == 0
    assert engine.execs[-1][:3] == [anyon_git.SH, "-c", REPORT_SCRIPT]


def test_an_agent_steps_commit_reports_the_head_after_it(alice, claude_token):
    """Agent, then its commit: the commit's exec reports the head after it, for the run and the results alike;
    the agent's own exec reports nothing (its output is events)."""
    events = agent_events({"type": "result", "subtype": "success", "is_error": False, "result": "ok"})

    def script(argv):
        if "claude" in argv:
            return ScriptedExec(events)
        if argv == anyon_git.head_argv():  # the head before the agent
            return ScriptedExec([("stdout", b"c" * 40 + b"\n")])
        return None

    engine = FakeEngine(script)
    engine.reports = f"repository {'a' * 40} {'d' * 40}"
    status, attempt = run(alice, engine, [AGENT_STEP])
    assert status == AttemptStatus.SUCCEEDED and engine.reported == 1
    agent_run = Run.objects.get(attempt=attempt, kind="agent")
    assert (agent_run.commit_before, agent_run.commit_after) == ("c" * 40, "d" * 40)
    assert agent_run.own_commit == "d" * 40  # a head other than the agent's after the commit: Anyon's own commit
    assert attempt.head_commit == "d" * 40
    heads = [argv for argv in engine.execs if argv == anyon_git.head_argv()]
    assert len(heads) == 2  # before the agent, and after it (what Anyon's commit builds on)
    # Nothing the agent started is left for its commit: the container restarted between the two, and the commit
    # is Anyon's own git, without the credentials' environment.
    assert engine.restarts == [attempt.container_id]
    commit = Run.objects.get(attempt=attempt, title="Commit changes")
    assert commit.argv[:3] == [anyon_git.SH, "-c", anyon_git.COMMIT_SCRIPT] and "anyon-exec" not in commit.argv
    # The user reads what the step is, not Anyon's internal script as if the agent had run it.
    system = text(attempt, "system")
    assert "Commit changes: Anyon's own git" in system and anyon_git.COMMIT_SCRIPT[:40] not in system
    assert "$ sh -c" not in system


def test_output_the_engine_lost_is_said_not_passed_over(alice, claude_token):
    """A Docker engine under load can drop a short exec's whole output (moby/moby#27289; measured on this machine's
    Docker 20.10: 1-8 in 400 execs with both cores busy). The report comes last, so its absence after an exit code 0
    shows it; the log says so and the results are read by an exec."""
    from execution.runner.step_report import REPORT_SCRIPT
    from execution.runner.step_runner import ENGINE_LOST_OUTPUT

    engine = FakeEngine(lambda argv: ScriptedExec([("stdout", b"ready\n")]) if argv[-1] == "ready" else None)
    engine.loses_output = True
    status, attempt = run(alice, engine, [step("echo", "ready")])
    assert status == AttemptStatus.SUCCEEDED
    assert ENGINE_LOST_OUTPUT in text(attempt, "system") and "ready" not in text(attempt, "stdout")
    assert engine.execs[-1][:3] == [anyon_git.SH, "-c", REPORT_SCRIPT]


@pytest.mark.hostile
def test_the_base_is_what_the_clone_fetched_whatever_the_agent_does_to_the_refs_after(alice, claude_token):
    """The clone's exec reports the base branch's commit; the agent then moves ``refs/remotes/origin/main`` (the
    last report says so), yet the diff and the guard start at the clone's commit."""
    events = agent_events({"type": "result", "subtype": "success", "is_error": False, "result": "ok"})
    engine = FakeEngine()

    def script(argv):
        if "claude" in argv:
            engine.reports = f"repository {'f' * 40} {'d' * 40}"  # the agent moved the remote-tracking ref
            return ScriptedExec(events)
        if argv == anyon_git.head_argv():
            return ScriptedExec([("stdout", b"a" * 40 + b"\n")])
        return None

    engine.script = script
    engine.reports = f"repository {'a' * 40} {'a' * 40}"
    clone = {"kind": "clone", "title": "Clone", "argv": ["git", "clone", "https://github.com/octo/repo.git", "."]}
    status, attempt = run(alice, engine, [clone, AGENT_STEP])
    assert status == AttemptStatus.SUCCEEDED
    assert (attempt.base_commit, attempt.head_commit) == ("a" * 40, "d" * 40)
    assert anyon_git.diff_argv("a" * 40, "d" * 40) in engine.execs


def test_a_pull_request_session_in_mounted_mode_gets_no_claude_credential(alice, claude_token):
    """A push needs only git: the Claude credential is fetched to guard the push, never written for the container."""
    from execution.runner.credentials import collect_credentials

    task = do_create_task(
        owner=alice, title="t", repo_url="https://github.com/octo/repo.git", base_branch="main", prompt="go"
    )
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    found = collect_credentials(
        attempt=attempt, actor="test", need_claude=False, say=lambda line: None, guard_claude=True
    )
    assert claude_token not in found.files.values()
    assert claude_token in found.values()  # masked and guarded all the same
