# Long because every way an attempt ends is checked for cleanup on the real engine, with one setup.
"""Attempts in the real runtime image on the real engine: cleanup in every ending, masking end to end, and
nothing secret in ``docker inspect``. (The clone + Claude smoke test is in test_smoke_docker.py.)"""

from __future__ import annotations

import json
import stat
import time

import docker
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings

from execution.attempts import secret_dir
from execution.attempts.actions import do_cancel_attempt
from execution.attempts.containers import container_name, home_volume
from execution.attempts.steps import AGENT_ARGV
from execution.hosts.container_removal import wait_for_removals
from execution.models import Attempt, AttemptStatus, LogRecord, RunStatus
from execution.runner import run_attempt
from shared.docker import seccomp
from shared.models import Alert
from tests.execution.conftest import custom, in_background, logs, when, when_step_runs
from tests.fakes.anthropic_api import TextReply, ToolUseReply
from tests.fixtures.engine_files import container_files, volume_files
from tests.fixtures.waiting import wait_for

# Background threads act on the database while the run goes on: real transactions, not a wrapping one.
pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def assert_cleaned(attempt, docker_client) -> None:
    assert not secret_dir.secret_dir_path(attempt.pk).exists()
    assert wait_for_removals(30)  # the container goes right after the attempt's end, in the background
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(container_name(attempt.pk))
    assert "Secret directory removed" in logs(attempt)


def test_secret_dir_is_private_while_running_and_gone_after_success(world, docker_client):
    attempt = world.attempt(
        plan=[custom("sh", "-c", "stat -c '%a %u %n' /run/anyon-secrets /run/anyon-secrets/*; sleep 1.5")]
    )
    path = secret_dir.secret_dir_path(attempt.pk)
    seen: dict = {}

    def look():
        info = path.stat()
        seen["dir"] = (stat.S_IMODE(info.st_mode), info.st_uid)
        seen["files"] = {p.name: (stat.S_IMODE(p.stat().st_mode), p.stat().st_uid) for p in path.iterdir()}
        seen["parent"] = stat.S_IMODE(path.parent.stat().st_mode)

    in_background(0.0, lambda: wait_for(lambda: path.exists() and any(path.iterdir()) and (look() or True)))
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED
    uid = django_settings.ANYON_CONTAINER_UID
    assert seen["dir"] == (0o700, uid) and seen["parent"] == 0o700
    # Least privilege: a plan without an agent step gets no Claude credential.
    assert seen["files"] == {"github_token": (0o400, uid)}
    text = logs(attempt)
    assert f"700 {uid} /run/anyon-secrets\n" in text and f"400 {uid} /run/anyon-secrets/github_token" in text
    assert_cleaned(attempt, docker_client)


def test_cleanup_after_a_failing_step_and_later_steps_do_not_run(world, docker_client):
    attempt = world.attempt(plan=[custom("sh", "-c", "echo doing; exit 3", title="fails"), custom("echo", "never")])
    assert run_attempt(attempt.pk) == AttemptStatus.FAILED
    attempt.refresh_from_db()
    runs = list(attempt.runs.all())
    assert [(r.status, r.exit_code) for r in runs] == [(RunStatus.FAILED, 3)]
    assert "fails exited with code 3" in attempt.error
    assert Alert.objects.filter(attempt_id=attempt.pk, kind="exec_nonzero_exit").exists()
    assert_cleaned(attempt, docker_client)


def test_cleanup_after_cancel(world, docker_client):
    attempt = world.attempt(plan=[custom("sleep", "60")])
    when_step_runs(docker_client, attempt.pk, "sleep 60", lambda: do_cancel_attempt(attempt=attempt, by="alice"))
    started = time.monotonic()
    assert run_attempt(attempt.pk) == AttemptStatus.CANCELLED
    assert time.monotonic() - started < 20
    attempt.refresh_from_db()
    assert attempt.runs.get().status == RunStatus.CANCELLED and attempt.finished_at
    assert_cleaned(attempt, docker_client)


def agent_that_prints_the_token_then_waits(world, docker_client, when_waiting) -> Attempt:
    """An agent session whose first tool prints the GitHub token (the CLI records it in its session history) and
    whose second waits; ``when_waiting(attempt)`` runs in the background once the second has started."""
    world.api.enqueue(
        ToolUseReply("Bash", {"command": 'echo "token is $GH_TOKEN"', "description": "leak"}),
        # (Claude Code 2.1 refuses a standalone `sleep 60` as a Bash tool call: "use Monitor ... or run_in_background")
        ToolUseReply("Bash", {"command": "perl -e 'sleep 60'", "description": "wait"}),
        TextReply("never reached"),
    )
    attempt = world.attempt(plan=[{"kind": "agent", "title": "Claude Code", "argv": AGENT_ARGV, "stdin": "go"}])

    def history_has_the_token() -> bool:
        """The wait has started and the CLI has written the first tool's output to its session file (2.1.x writes
        the transcript a moment after the tool ran: acting earlier would leave nothing to mask)."""
        if "perl -e 'sleep 60'" not in logs(attempt):
            return False
        try:
            container = docker_client.containers.get(container_name(attempt.pk))
            found = container.exec_run(["sh", "-c", "grep -rlq 'token is ' /home/anyon/.claude/projects"])
        except docker.errors.APIError:
            return False
        return found.exit_code == 0

    when(history_has_the_token, lambda: when_waiting(attempt))
    return attempt


def session_history(docker_client, attempt) -> list[str]:
    """The Claude CLI's session files on the attempt's home volume."""
    attempt.refresh_from_db()
    files = volume_files(docker_client, [home_volume(attempt.workspace_volume)], django_settings.ANYON_BASE_IMAGE)
    return [raw.decode(errors="replace") for name, raw in files.items() if ".claude/projects/" in name]


def test_a_cancelled_agent_session_still_has_its_history_masked(world, docker_client):
    """Cancel kills the container mid-agent; a helper container with only the home volume masks the session history."""
    attempt = agent_that_prints_the_token_then_waits(
        world, docker_client, lambda a: do_cancel_attempt(attempt=a, by="alice")
    )
    assert run_attempt(attempt.pk) == AttemptStatus.CANCELLED, logs(attempt)
    text = logs(attempt)
    assert "token is ***" in text and "Masked secrets in 1 file(s) of the agent's session history" in text
    history = session_history(docker_client, attempt)
    assert history and any("token is ***" in h for h in history)
    assert not any(value in h for h in history for value in world.values)
    assert_cleaned(attempt, docker_client)


def test_history_is_masked_even_when_the_container_was_removed_from_outside(world, docker_client):
    """Someone runs ``docker rm -f`` mid-agent: the home volume is still masked, by a throw-away container."""
    attempt = agent_that_prints_the_token_then_waits(
        world, docker_client, lambda a: docker_client.containers.get(container_name(a.pk)).remove(force=True)
    )
    assert run_attempt(attempt.pk) == AttemptStatus.FAILED, logs(attempt)
    assert "Masked secrets in 1 file(s) of the agent's session history" in logs(attempt), logs(attempt)
    history = session_history(docker_client, attempt)
    assert history and not any(value in h for h in history for value in world.values)
    assert wait_for_removals(30)
    assert not docker_client.containers.list(all=True, filters={"label": f"anyon.attempt={attempt.pk}"})
    assert_cleaned(attempt, docker_client)


def test_cleanup_after_timeout(world, docker_client, settings):
    settings.RUN_TIMEOUT = 2
    attempt = world.attempt(plan=[custom("sleep", "60")])
    assert run_attempt(attempt.pk) == AttemptStatus.TIMED_OUT
    attempt.refresh_from_db()
    assert "ANYON_RUN_TIMEOUT (2 s)" in attempt.error
    assert_cleaned(attempt, docker_client)


def test_cleanup_after_the_container_is_killed_from_outside(world, docker_client):
    attempt = world.attempt(plan=[custom("sleep", "60")])

    when_step_runs(docker_client, attempt.pk, "sleep 60", lambda: docker_client.api.kill(container_name(attempt.pk)))
    assert run_attempt(attempt.pk) == AttemptStatus.FAILED
    attempt.refresh_from_db()
    assert "stopped unexpectedly" in attempt.error
    assert_cleaned(attempt, docker_client)


def test_masking_end_to_end_plain_split_and_base64(world, docker_client, client):
    script = (
        "t=$(cat /run/anyon-secrets/github_token);"
        'echo "plain $t"; echo "stderr $t" >&2;'
        'printf "split %s" "$(echo "$t" | cut -c1-12)"; sleep 0.6; printf "%s end\\n" "$(echo "$t" | cut -c13-)";'
        'echo "b64 $(printf %s "$t" | base64 -w0)";'
        'echo "url https://x-access-token:$t@github.com/acme/widgets.git";'
        # base64 wraps at 76 columns (openssl at 64): the token's base64 straddles a line break
        "{ printf '%039d\\n' 0; echo \"T=$t\"; } | base64; { printf '%039d\\n' 0; echo \"T=$t\"; } | base64 -w 64"
    )
    attempt = world.attempt(plan=[custom("sh", "-c", script, title="leaky")])
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    text = logs(attempt)
    for value in world.values:
        assert value not in text and value[4:20] not in text
    import base64

    assert base64.b64encode(world.github_token.encode()).decode()[:20] not in text
    for line in ("plain ***", "stderr ***", "split ***", "b64 ***", "url https://***github.com"):
        assert line in text, line
    from shared.masking import secret_variants

    flat = text.replace("\n", "")  # the wrapped lines joined: no form of the token across a line break either
    assert [v for v in secret_variants(world.github_token) if v in flat] == []
    assert text.count("MDAw") >= 2  # the two wrapped dumps are there, masked where the token was
    client.force_login(world.user)
    page = client.get(f"/attempts/{attempt.pk}/").content.decode()
    assert "plain ***" in page and all(v not in page for v in world.values)
    streamed = async_to_sync(stream_all)(world.user, attempt.pk)
    assert "plain ***" in streamed and all(v not in streamed for v in world.values)


async def stream_all(user, attempt_id: int) -> str:
    """Everything a websocket viewer receives for a finished attempt."""
    from channels.testing import WebsocketCommunicator

    from execution.web.consumers import AttemptLogConsumer
    from tests.fixtures.sockets import signed_in

    comm = WebsocketCommunicator(AttemptLogConsumer.as_asgi(), f"/ws/attempts/{attempt_id}/logs/")
    signed_in(comm, user)
    comm.scope["url_route"] = {"kwargs": {"attempt_id": attempt_id}}
    assert (await comm.connect())[0]
    received = []
    while True:
        message = json.loads(await comm.receive_from(timeout=10))
        received.append(json.dumps(message))
        if message["type"] == "end":
            break
    await comm.disconnect()
    return "".join(record["text"] for m in map(json.loads, received) if m["type"] == "logs" for record in m["records"])


def files_containing(container, path: str, values) -> list[str]:
    """Names of the regular files under ``path`` in the container that contain any of ``values``."""
    files = container_files(container, path)
    return [name for name, raw in files.items() if any(v.encode() in raw for v in values)]


def test_docker_inspect_shows_no_secret(world, docker_client):
    # The step lasts until the inspection is done (at most 30 s), however slow the engine is today.
    wait = "env > /dev/null; i=0; while [ ! -e /tmp/inspected ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done"
    attempt = world.attempt(plan=[custom("sh", "-c", wait)])
    dumps: list[str] = []

    def inspect():
        container = docker_client.containers.get(container_name(attempt.pk))
        dumps.append(json.dumps(container.attrs))
        for exec_id in container.attrs.get("ExecIDs") or []:
            dumps.append(json.dumps(docker_client.api.exec_inspect(exec_id)))
        dumps.append(container.exec_run(["sh", "-c", "cat /proc/1/environ | tr '\\0' '\\n'"]).output.decode())
        # Read the files out (a grep would put the token on a command line, itself visible in docker inspect).
        found = [
            name
            for path in ("/home", "/workspace", "/tmp", "/etc")
            for name in files_containing(container, path, world.values)
        ]
        dumps.append(f"grep: {' '.join(found)}")
        container.exec_run(["touch", "/tmp/inspected"])

    worker = when_step_runs(docker_client, attempt.pk, "/tmp/inspected", inspect)
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED
    worker.join(timeout=5)
    assert len(dumps) >= 4 and any("ExecIDs" in d for d in dumps)
    assert dumps[-1] == "grep: "
    for dump in dumps:
        for value in world.values:
            assert value not in dump


def test_container_is_hardened_and_labelled(world, docker_client):
    attempt = world.attempt(plan=[custom("sleep", "2")])
    seen = {}

    def look():
        named = f"^/{container_name(attempt.pk)}$"
        container = wait_for(lambda: docker_client.containers.list(filters={"name": named}))[0]
        seen.update(container.attrs)

    in_background(0, look)
    run_attempt(attempt.pk)
    host = seen["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    assert f"seccomp={seccomp.profile_json()}" in host["SecurityOpt"]  # ours, not the engine's default
    assert host["PidsLimit"] > 0 and host["Memory"] > 0 and host["NanoCpus"] > 0 and host["Init"] is True
    assert seen["Config"]["User"] == str(django_settings.ANYON_CONTAINER_UID)
    labels = seen["Config"]["Labels"]
    assert labels["anyon.managed"] == "1" and labels["anyon.attempt"] == str(attempt.pk)
    assert labels["anyon.owner"] == str(world.user.pk) and int(labels["anyon.expires"]) > time.time()
    mounts = {m["Destination"]: m for m in seen["Mounts"]}
    assert mounts["/run/anyon-secrets"]["RW"] is False and mounts["/workspace"]["Type"] == "volume"


def test_missing_claude_credential_fails_clearly_without_a_container(world, docker_client):
    from secrets_app.models import Secret

    Secret.objects.filter(provider="claude").delete()
    attempt = world.attempt()
    assert run_attempt(attempt.pk) == AttemptStatus.FAILED
    attempt.refresh_from_db()
    assert "No claude credential is connected" in attempt.error
    assert not secret_dir.secret_dir_path(attempt.pk).exists()
    assert not attempt.container_id


def test_binary_and_huge_output_is_kept_readable(world, docker_client):
    script = (
        "head -c 3000 /dev/urandom; printf '\\n\\377\\376 broken utf8\\n';"
        " yes 'a fairly long line of output' | head -n 50000"
    )
    attempt = world.attempt(plan=[custom("sh", "-c", script)])
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED
    text = logs(attempt)
    assert "\ufffd\ufffd broken utf8" in text
    assert text.count("a fairly long line of output\n") == 50000
    assert LogRecord.objects.filter(attempt=attempt).count() < 200  # batched, not a row per line


@pytest.mark.hostile
def test_nothing_an_agent_left_running_goes_on_after_its_attempt(world, docker_client, base_image):
    """A step starts a process in the background that keeps writing, and exits. The attempt ends, its container is
    removed right after (in the background) and the process with it: it writes nothing more."""
    loop = "while :; do date +%s%N >> /workspace/ticks; sleep 0.02; done"
    attempt = world.attempt(plan=[custom("sh", "-c", f"nohup sh -c '{loop}' >/dev/null 2>&1 & sleep 0.5")])
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    assert wait_for_removals(30)
    attempt.refresh_from_db()

    def ticks() -> int:
        files = volume_files(docker_client, [attempt.workspace_volume], base_image)
        return files[f"v/{attempt.workspace_volume}/ticks"].count(b"\n")

    at_end = ticks()
    assert at_end >= 5  # it did run while the attempt did
    time.sleep(0.5)
    assert ticks() == at_end
    assert_cleaned(attempt, docker_client)
