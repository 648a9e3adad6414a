"""Every alert kind raised by its real cause, delivered to the fake Slack endpoint and the mail outbox,
deduplicated when the cause repeats, and scrubbed of the secrets involved."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from execution.attempts import secret_dir
from execution.attempts.actions import do_transition
from execution.models import AttemptStatus
from execution.runner import run_attempt
from secrets_app.models import Secret
from secrets_app.secret_store import do_store_secret
from shared.alerts import AlertKind
from shared.models import Alert
from tests.execution.conftest import custom
from tests.fakes.github import classic_token
from tests.fixtures.queueing import held_from_workers

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def delivered(slack, kind: str) -> Alert:
    alert = Alert.objects.filter(kind=kind).latest("last_seen")
    assert alert.delivery["slack"]["status"] == "sent" and alert.delivery["email"]["status"] == "sent", alert.delivery
    assert any(kind in text for text in slack.texts()), kind
    assert any(kind in message.subject for message in mail.outbox), kind
    return alert


def all_outgoing(slack) -> str:
    return "\n".join(slack.texts() + [m.subject + m.body for m in mail.outbox])


def test_secret_kinds_orphans_stale_and_tokens(world, slack, settings, tmp_path):
    # secret_lookup_failed: the GitHub token expired before the run
    Secret.objects.filter(provider="github").update(expires_at=timezone.now() - timedelta(days=1))
    attempt = world.attempt(plan=[custom("true")])
    run_attempt(attempt.pk)
    delivered(slack, AlertKind.SECRET_LOOKUP_FAILED)
    # token_expired / token_expiring: the daily check
    do_store_secret(
        owner=world.user, provider="github", kind="oauth_token", value=classic_token("gho"),
        expires_at=timezone.now() + timedelta(days=2),
    )  # fmt: skip
    Secret.objects.filter(provider="claude").update(expires_at=timezone.now() - timedelta(hours=1))
    from secrets_app.expiry import check_token_expiry

    check_token_expiry()
    delivered(slack, AlertKind.TOKEN_EXPIRED)
    delivered(slack, AlertKind.TOKEN_EXPIRING)
    # orphan_removed: a secret dir left behind by a finished attempt
    secret_dir.write_secret_dir(attempt.pk, {"github_token": world.github_token})
    from execution.sweeps.cleanup import sweep_secret_dirs, sweep_stale_attempts

    sweep_secret_dirs()
    delivered(slack, AlertKind.ORPHAN_REMOVED)
    # stale_attempt: a worker that stopped heartbeating
    stale = world.attempt(plan=[custom("true")])
    do_transition(attempt=stale, to=AttemptStatus.PROVISIONING, heartbeat_at=timezone.now() - timedelta(hours=1))
    sweep_stale_attempts()
    delivered(slack, AlertKind.STALE_ATTEMPT)
    # secret_injection_failed: the temp dir is not writable as a directory
    blocker = tmp_path / "blocked"
    blocker.write_text("")
    settings.ANYON_TEMP_DIR = blocker
    run_attempt(world.attempt(plan=[custom("true")]).pk)
    delivered(slack, AlertKind.SECRET_INJECTION_FAILED)
    outgoing = all_outgoing(slack)
    for value in world.values:
        assert value not in outgoing


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_secret_cleanup_failed_when_the_dir_cannot_go(world, slack, settings):
    """A secret dir that is a mount point (someone mounted over it) cannot be removed: alerted."""
    attempt = world.attempt(plan=[custom("true")])
    do_transition(attempt=attempt, to=AttemptStatus.CANCELLED)  # finished: its dir is an orphan
    path = secret_dir.write_secret_dir(attempt.pk, {"github_token": world.github_token})
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(path)], check=True)
    try:
        assert not secret_dir.remove_secret_dir(attempt.pk, retries=2, delay=0.05)
        from execution.sweeps.cleanup import sweep_secret_dirs

        report = sweep_secret_dirs()
        assert report.failed == [str(path)]
        delivered(slack, AlertKind.SECRET_CLEANUP_FAILED)
    finally:
        subprocess.run(["umount", str(path)], check=False)
        secret_dir.remove_secret_dir(attempt.pk)


def test_exec_and_claude_errors_from_real_runs(world, slack, github):
    github.add_token(world.github_token, login="alice")
    repo = github.add_repo("acme", "alerts")
    run_attempt(world.attempt(plan=[custom("sh", "-c", "exit 4")], repo_url=repo).pk)
    delivered(slack, AlertKind.EXEC_NONZERO_EXIT)
    world.api.expected_token = "sk-ant-oat01-" + "r" * 50  # Claude refuses the injected token
    run_attempt(world.attempt(repo_url=repo).pk)
    alert = delivered(slack, AlertKind.CLAUDE_CLI_ERROR)
    # A refused subscription token: 2.0.31 says "Invalid API key", 2.1.x "Not logged in" and the API's 401.
    assert "Invalid API key" in alert.message or "API authentication_error (401)" in alert.message
    assert world.claude_token not in all_outgoing(slack)


def test_docker_unreachable(db, slack, settings):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    from execution.sweeps.cleanup import run_scheduled_cleanup

    run_scheduled_cleanup()
    run_scheduled_cleanup()
    alert = delivered(slack, AlertKind.DOCKER_UNREACHABLE)
    assert alert.count >= 2 and sum("docker_unreachable" in t for t in slack.texts()) == 1  # deduplicated


def test_claude_login_failed(db, slack, settings, alice):
    from secrets_app import claude_login
    from tests.fixtures.processes import FAKE_LOGIN_CLI

    settings.ANYON_CLAUDE_LOGIN_COMMAND = f"bash {FAKE_LOGIN_CLI}"
    session = claude_login.do_start_subscription_login(user_id=alice.pk)
    deadline = time.monotonic() + 20
    while session.state != claude_login.State.WAITING_CODE and time.monotonic() < deadline:
        time.sleep(0.05)
    claude_login.do_send_login_code(session=session, code="wrongcode#wrongstate")
    while not session.final and time.monotonic() < deadline:
        time.sleep(0.05)
    alert = delivered(slack, AlertKind.CLAUDE_LOGIN_FAILED)
    assert "Invalid code" in alert.message and "wrongcode" not in all_outgoing(slack)


def test_egress_proxy_down(world, slack, settings):
    """A sealed run on a host whose egress proxy does not run: it fails before a container starts."""
    import tempfile
    from pathlib import Path

    settings.ANYON_CREDENTIAL_MODE = "sealed"
    settings.ANYON_EGRESS_CONTROL = str(Path(tempfile.mkdtemp(prefix="as-")) / "control.sock")
    attempt = world.attempt(plan=[custom("true")])
    assert run_attempt(attempt.pk) == AttemptStatus.FAILED
    alert = delivered(slack, AlertKind.EGRESS_PROXY_DOWN)
    assert settings.ANYON_EGRESS_CONTROL in alert.message


#: A base commit whose id depends only on its content (fixed names, dates and file): made in the container by the
#: plan and here by :func:`base_commit_id`, it is the base a clone would have recorded.
BASE_COMMIT = (
    "echo base > README && git add README && GIT_AUTHOR_DATE=2000-01-01T00:00:00Z "
    "GIT_COMMITTER_DATE=2000-01-01T00:00:00Z git -c user.name=a -c user.email=a@b commit -qm base"
)


def base_commit_id() -> str:
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as repo:
        env = {"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": repo}
        subprocess.run(["git", "init", "-q", "-b", "main", repo], check=True, env=env)
        subprocess.run(["sh", "-c", BASE_COMMIT], check=True, cwd=repo, env=env)
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, env=env, capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip


def test_push_refused_secret(world, slack, settings):
    """In mounted mode an agent can read the token and commit it: the push step never runs, ops hear of it."""
    from execution.attempts.actions import do_request_pull_request
    from execution.models import JobStatus
    from execution.runner import run_job
    from tests.execution.conftest import logs

    plan = [
        custom("git", "init", "-q", "-b", "main", "/workspace"),
        custom("sh", "-c", BASE_COMMIT),  # what a clone would have fetched
        custom("sh", "-c", "cat /run/anyon-secrets/github_token > leak.txt && git add leak.txt && "
               "git -c user.name=a -c user.email=a@b commit -qm leak"),
    ]  # fmt: skip
    attempt = world.attempt(plan=plan)
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    attempt.refresh_from_db()
    assert attempt.head_commit, logs(attempt)  # the agent's commit, as the last exec reported it
    attempt.base_commit = base_commit_id()  # the same commit made here: its id is its content's
    attempt.save(update_fields=["base_commit"])
    with held_from_workers():
        job = do_request_pull_request(attempt=attempt)
    assert run_job(job.pk) == JobStatus.FAILED
    assert "git push" not in " ".join(" ".join(r.argv) for r in attempt.runs.all())
    alert = delivered(slack, AlertKind.PUSH_REFUSED_SECRET)
    assert "a credential of this attempt" in alert.message and world.github_token not in all_outgoing(slack)
    from execution.attempts.actions import do_delete_attempt

    do_delete_attempt(attempt=attempt, by="test")  # the workspace holds the token the agent committed


def test_every_kind_has_a_real_cause_here():
    import inspect
    import sys

    source = inspect.getsource(sys.modules[__name__])
    missing = [name for name in vars(AlertKind) if name.isupper() and f"AlertKind.{name})" not in source]
    assert not missing, f"alert kinds without a test of their real cause: {missing}"


def test_docker_host_lost_mid_run_and_swept_when_back(world, slack, settings, second_engine):
    """An attempt on engine 2, which is killed mid-run: the attempt fails at once naming the host, one alert; when
    the engine is back the host's heartbeat sweeps the container it kept."""
    import threading

    from execution.hosts.actions import do_host_heartbeat
    from execution.models import LogRecord
    from execution.sweeps.host_beat import beat_once

    settings.DOCKER_HOST = second_engine.url
    settings.ANYON_WORKER_QUEUE, settings.ANYON_WORKER_QUEUES = "engine-2", ["engine-2"]
    do_host_heartbeat(name="engine-2", docker_host=second_engine.url, worker="test", engine_ok=True)
    attempt = world.attempt(plan=[custom("sh", "-c", "echo started; sleep 120")])

    def kill_when_started() -> None:
        deadline = time.monotonic() + 60
        while not LogRecord.objects.filter(attempt=attempt, text__contains="started").exists():
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)
        second_engine.stop()

    killer = threading.Thread(target=kill_when_started)
    killer.start()
    try:
        started = time.monotonic()
        assert run_attempt(attempt.pk) == AttemptStatus.FAILED
        killer.join()
        assert time.monotonic() - started < 60
        attempt.refresh_from_db()
        assert attempt.error.startswith("The Docker host went away: the engine of host engine-2"), attempt.error
        assert not secret_dir.secret_dir_path(attempt.pk).exists()
        alert = delivered(slack, AlertKind.DOCKER_HOST_LOST)
        assert alert.message.startswith("Docker host engine-2: its engine stopped answering") and alert.count == 1
        beat_once()  # still down: recorded, no second alert
        assert Alert.objects.get(kind=AlertKind.DOCKER_HOST_LOST).count == 1
    finally:
        if not second_engine.answers():
            second_engine.start()
    client = second_engine.client()
    assert client.containers.list(all=True, filters={"label": f"anyon.attempt={attempt.pk}"})
    assert any("back; cleanup: " in line and "stale attempts" in line for line in beat_once())
    assert not client.containers.list(all=True, filters={"label": f"anyon.attempt={attempt.pk}"})


def test_worker_lost(world, slack, settings):
    """Another host's worker stopped heartbeating with an attempt running: this host's sweep ends it."""
    from execution.hosts.actions import do_host_heartbeat
    from execution.models import Attempt, DockerHost
    from execution.sweeps.cleanup import sweep_lost_hosts

    do_host_heartbeat(name="host-gone", docker_host="", worker="gone:7", engine_ok=True)
    past = timezone.now() - timedelta(seconds=settings.ANYON_HOST_LOST_SECONDS + 5)
    DockerHost.objects.filter(name="host-gone").update(heartbeat_at=past)
    attempt = world.attempt(plan=[custom("true")])
    Attempt.objects.filter(pk=attempt.pk).update(queue="host-gone")
    do_transition(attempt=attempt, to=AttemptStatus.PROVISIONING, heartbeat_at=past, worker="gone:7")
    assert sweep_lost_hosts().removed == [f"attempt {attempt.pk}"]
    alert = delivered(slack, AlertKind.WORKER_LOST)
    assert alert.message.startswith("Docker host host-gone: The worker of Docker host host-gone (gone:7) stopped")
