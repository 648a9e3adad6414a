"""The setup phase of a run, in the real image with the real Claude CLI (scripted through the fake Anthropic API), a
real engine and, in sealed mode, a real egress proxy (docs/ARCHITECTURE.md, "Environments").

The setup script prepares the workspace for the agent; its setup secrets reach it and nothing after it: not the
agent's environment, processes or files, not the logs. A setup that writes a secret to disk is refused before the
agent starts.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from execution.environments.actions import PhaseNetwork, do_save_environment, do_set_setup_secret
from execution.models import AttemptStatus, EgressBlock, Run, RunKind, RunStatus
from execution.runner import run_attempt
from secrets_app.models import AccessOutcome, SecretAccess
from shared.egress import HostPort
from tests.execution.conftest import logs
from tests.execution.runner.test_sealed_docker import sealed  # noqa: F401 - the sealed-mode fixture (egress proxy process)
from tests.execution.runner.test_trust_boundary_docker import CATCHER, volumes_of
from tests.fakes.anthropic_api import TextReply, ToolUseReply
from tests.fakes.github import FakeGitHub
from tests.fixtures.leaks import track_secret

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def repo(world, github: FakeGitHub) -> str:
    github.add_token(world.github_token, login="alice-gh")
    return github.add_repo("acme", "widgets", {"README.md": "# widgets\n"})


def environment(world, script: str, **secrets: str):
    env = do_save_environment(
        owner=world.user,
        repository="acme/widgets",
        setup_script=script,
        variables={"GREETING": "hello-from-the-environment"},
        setup_network=PhaseNetwork(),
    )
    for name, value in secrets.items():
        do_set_setup_secret(environment=env, name=name, value=value)
    return env


def api_bodies(world) -> str:
    return "\n".join(json.dumps(r.json) for r in world.api.requests)


@pytest.mark.usefixtures("sealed")
def test_what_the_setup_script_prepares_the_agent_finds(world, repo):
    environment(world, 'mkdir -p ~/.cache/deps && echo "built for $GREETING" > ~/.cache/deps/marker\necho setup-ran\n')
    world.api.enqueue(
        ToolUseReply("Bash", {"command": "cat ~/.cache/deps/marker; echo agent-sees-$GREETING", "description": "look"}),
        TextReply("Found it."),
    )
    attempt = world.attempt(repo_url=repo, prompt="Use the prepared dependencies")
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    kinds = list(Run.objects.filter(attempt=attempt).values_list("kind", flat=True))
    assert kinds.index(RunKind.SETUP) == kinds.index(RunKind.CLONE) + 1 and kinds.index(RunKind.AGENT) > 2
    setup = Run.objects.get(attempt=attempt, kind=RunKind.SETUP)
    assert (setup.status, setup.exit_code) == (RunStatus.SUCCEEDED, 0)
    assert "setup-ran" in logs(attempt)
    results = api_bodies(world)
    assert "built for hello-from-the-environment" in results and "agent-sees-hello-from-the-environment" in results


@pytest.mark.usefixtures("sealed")
def test_a_failing_setup_fails_the_attempt_with_its_log(world, repo):
    environment(world, "echo installing dependencies\necho 'no such package: left-pad' >&2\nexit 3\necho never\n")
    attempt = world.attempt(repo_url=repo, prompt="Never runs")
    assert run_attempt(attempt.pk) == AttemptStatus.FAILED
    attempt.refresh_from_db()
    assert "setup script failed" in attempt.error and "exited with code 3" in attempt.error
    setup = Run.objects.get(attempt=attempt, kind=RunKind.SETUP)
    assert (setup.status, setup.exit_code) == (RunStatus.FAILED, 3)
    text = logs(attempt)
    assert "installing dependencies" in text and "no such package: left-pad" in text
    assert "\nnever\n" not in text  # the script (shown as the step's command) stopped at its failing line
    assert not Run.objects.filter(attempt=attempt, kind=RunKind.AGENT).exists()
    assert world.api.messages_requests() == []


#: The setup uses its secret, echoes it (masked in the log) and leaves processes that hold it in their environment:
#: detached, double-forked and stopped. None of them may outlive the setup.
HOSTILE_SETUP = """
printf '%s' "$DEPLOY_KEY" | sha256sum | cut -d' ' -f1 > /workspace/.key-hash
echo "the key is $DEPLOY_KEY"
setsid nohup sleep 600 </dev/null >/dev/null 2>&1 &
( ( sleep 601 </dev/null >/dev/null 2>&1 & ) & )
sleep 602 </dev/null >/dev/null 2>&1 &
kill -STOP $!
"""

#: The agent looks everywhere for it: its environment, every process's environment and command line, the files of its
#: home, the workspace and /tmp; whatever it prints goes back to "Anthropic" (the fake records it). Then it leaves a
#: catcher for Anyon's later processes.
AGENT_LOOKS = """
env
for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ 2>/dev/null; tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done
ps -ef
grep -rasI . ~ /workspace /tmp 2>/dev/null | head -c 200000
mkdir -p /home/anyon/loot && cat > /home/anyon/loot/catch.py <<'PY'
{catcher}
PY
setsid nohup python3 /home/anyon/loot/catch.py /home/anyon/loot/setsid </dev/null >/dev/null 2>&1 &
for _ in $(seq 100); do [ -e /home/anyon/loot/setsid/started ] && break; sleep 0.05; done
echo 'more' >> README.md
"""


@pytest.mark.hostile
@pytest.mark.usefixtures("sealed")
def test_a_setup_secret_reaches_the_setup_and_nothing_the_agent_can_read(world, repo, docker_client):
    value = track_secret("dk-" + hashlib.sha256(b"setup secret of this test").hexdigest()[:40])
    environment(world, HOSTILE_SETUP, DEPLOY_KEY=value)
    world.api.enqueue(
        ToolUseReply("Bash", {"command": AGENT_LOOKS.format(catcher=CATCHER), "description": "look around"}),
        TextReply("Nothing found."),
    )
    attempt = world.attempt(repo_url=repo, prompt="Find the deploy key")
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    attempt.refresh_from_db()
    text = logs(attempt)
    assert "the key is " in text and value not in text  # the setup's own output, masked
    assert "No setup secret is in a file" in text
    results = api_bodies(world)
    assert "sleep 600" not in results and "sleep 602" not in results  # the setup's processes were gone
    assert "hello-from-the-environment" in results  # the agent got the variables (it saw its environment)
    assert value not in results  # not in its environment, any process, any file it could read
    files = volumes_of(docker_client, attempt)
    hashes = [raw for name, raw in files.items() if name.endswith("/.key-hash")]
    assert hashes == [hashlib.sha256(value.encode()).hexdigest().encode() + b"\n"]  # it reached the setup
    assert any(name.endswith("/setsid/started") for name in files)  # the agent's catcher ran
    for name, raw in files.items():
        assert value.encode() not in raw, f"the setup secret in {name}"
    assert attempt.error == "" and value not in json.dumps(attempt.diff)
    access = SecretAccess.objects.filter(attempt_id=attempt.pk, provider="environment")
    assert access.exists() and {a.outcome for a in access} == {AccessOutcome.SUCCESS}


@pytest.mark.hostile
@pytest.mark.usefixtures("sealed")
def test_a_setup_that_writes_a_secret_to_a_file_is_refused(world, repo):
    value = "written-" + hashlib.sha256(b"written to disk").hexdigest()[:32]  # on disk by design: not leak-tracked
    environment(world, 'mkdir -p ~/.config/tool && echo "token = $API_TOKEN" > ~/.config/tool/auth\n', API_TOKEN=value)
    attempt = world.attempt(repo_url=repo, prompt="Never runs")
    assert run_attempt(attempt.pk) == AttemptStatus.FAILED
    attempt.refresh_from_db()
    assert "API_TOKEN in /home/anyon/.config/tool/auth" in attempt.error, attempt.error
    assert value not in attempt.error and value not in logs(attempt)
    assert not Run.objects.filter(attempt=attempt, kind=RunKind.AGENT).exists()
    assert world.api.messages_requests() == []


#: A setup that hides what it writes from a search run in the container: a ``grep`` that never finds anything in
#: every directory of a ``PATH`` it can write or name (and in the shells' start files), an attempt at a preloaded
#: library, and the secret outside the three folders once searched, in files only it may read, and encoded.
HIDING_SETUP = r"""
fake='#!/bin/sh
exit 1'
for dir in ~/.local/bin ~/bin /var/tmp/bin /usr/local/bin /usr/bin; do
  mkdir -p "$dir" 2>/dev/null && printf '%s\n' "$fake" > "$dir/grep" 2>/dev/null && chmod +x "$dir/grep" || true
done
for rc in ~/.profile ~/.bashrc ~/.bash_profile; do
  echo 'export PATH="$HOME/.local/bin:$HOME/bin:/var/tmp/bin:$PATH" BASH_ENV="$HOME/.bashrc"' >> "$rc"
done
echo /var/tmp/evil.so > /etc/ld.so.preload 2>/dev/null || echo "no ld.so.preload"
mkdir -p /var/tmp/cache ~/.cache/x
echo "$API_TOKEN" > /var/tmp/cache/raw && chmod 000 /var/tmp/cache/raw
printf '%s' "$API_TOKEN" | base64 > /run/lock/.b64
printf 'k=%s' "$API_TOKEN" | od -An -tx1 | tr -d ' \n' > ~/.cache/x/hex
quoted=$(python3 -c 'import os, urllib.parse as u; print(u.quote(os.environ["API_TOKEN"], safe=""))')
printf 'TOKEN=%s\n' "$quoted" > .env.local
"""


@pytest.mark.hostile
@pytest.mark.usefixtures("sealed")
def test_a_setup_that_hides_a_written_secret_from_grep_is_still_refused(world, repo):
    value = "hidden/" + hashlib.sha256(b"hidden on disk").hexdigest()[:32] + "+="  # on disk by design
    environment(world, HIDING_SETUP, API_TOKEN=value)
    attempt = world.attempt(repo_url=repo, prompt="Never runs")
    assert run_attempt(attempt.pk) == AttemptStatus.FAILED
    attempt.refresh_from_db()
    assert "no ld.so.preload" in logs(attempt)  # /etc is the image's: the container user cannot write it
    for path in ("/var/tmp/cache/raw", "/run/lock/.b64", "/home/anyon/.cache/x/hex", "/workspace/.env.local"):
        assert path in attempt.error, attempt.error
    assert value not in attempt.error and value not in logs(attempt)
    assert not Run.objects.filter(attempt=attempt, kind=RunKind.AGENT).exists()


#: A setup that puts a ``git``, ``sh``, ``grep`` and ``perl`` of its own first in every ``PATH`` it can write or name,
#: each leaving a mark and pretending success; the shells' start files point ``PATH`` and ``BASH_ENV`` at them.
SHADOWING_SETUP = r"""
for dir in ~/.local/bin ~/bin /var/tmp/bin /workspace/node_modules/.bin; do
  mkdir -p "$dir"
  for tool in git sh grep perl mktemp cat; do
    printf '#!/bin/bash\necho "%s $*" >> /home/anyon/shadow-ran\nexit 0\n' "$tool" > "$dir/$tool"
    chmod +x "$dir/$tool"
  done
done
line='export PATH="$HOME/.local/bin:$HOME/bin:/var/tmp/bin:/workspace/node_modules/.bin:$PATH" BASH_ENV="$HOME/.bashrc"'
for rc in ~/.profile ~/.bashrc ~/.bash_profile; do echo "$line" >> "$rc"; done
echo shadows-planted
"""


@pytest.mark.hostile
@pytest.mark.usefixtures("sealed")
def test_tools_the_setup_plants_in_a_path_never_run_in_anyons_steps(world, repo, docker_client):
    environment(world, SHADOWING_SETUP, API_TOKEN="shadow-" + hashlib.sha256(b"shadow").hexdigest()[:24])
    world.api.enqueue(
        ToolUseReply("Bash", {"command": "echo changed >> README.md", "description": "edit"}), TextReply("Done.")
    )
    attempt = world.attempt(repo_url=repo, prompt="Edit the README")
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    attempt.refresh_from_db()
    assert "shadows-planted" in logs(attempt) and "No setup secret is in a file" in logs(attempt)
    assert attempt.head_commit and attempt.head_commit != attempt.base_commit  # Anyon's git committed
    assert any(f["path"] == "README.md" and "+changed" in f["patch"] for f in attempt.diff), attempt.diff
    files = volumes_of(docker_client, attempt)
    assert any(name.endswith("/.local/bin/git") for name in files)  # planted, in the home volume
    ran = b"".join(raw for name, raw in files.items() if name.endswith("/shadow-ran"))  # the agent's shell may
    for anyons in (b"hooksPath", b"anyon-", b"SCRUB", b"--no-textconv"):  # but none of Anyon's commands
        assert anyons not in ran, ran


#: A CONNECT through the proxy; prints the proxy's answer to it (200: let through).
REACH = (
    "code=$(curl -s -o /dev/null -w '%{{http_connect}}' --noproxy '' --proxytunnel -x \"$HTTPS_PROXY\" {url}/ "
    "|| true); echo {who}-reached:$code"
)


@pytest.mark.usefixtures("sealed")
def test_each_phase_reaches_what_its_network_policy_allows(world, repo, github):
    """The setup phase's entry lets the setup through the proxy to a host; the agent phase ("off") is refused it, and
    the refusal is recorded on the attempt."""
    target = HostPort.of_url(github.url)
    do_save_environment(
        owner=world.user,
        repository="acme/widgets",
        setup_script=REACH.format(url=github.url, who="setup"),
        setup_network=PhaseNetwork(mode="rules", rules=f"{target.host}:{target.port}\n"),
        agent_network=PhaseNetwork(mode="off"),
    )
    world.api.enqueue(
        ToolUseReply("Bash", {"command": REACH.format(url=github.url, who="agent"), "description": "reach"}),
        TextReply("Done."),
    )
    attempt = world.attempt(repo_url=repo, prompt="Reach out")
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    assert "setup-reached:200" in logs(attempt), logs(attempt)
    results = api_bodies(world)
    assert "agent-reached:" in results and "agent-reached:200" not in results
    assert EgressBlock.objects.filter(attempt=attempt, host=target.host, port=target.port).exists()
