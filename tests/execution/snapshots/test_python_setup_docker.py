"""A Python repository's environment, end to end: the real image (pip and venv), engine, egress proxy and Claude CLI
(scripted through the fake Anthropic API), a fake git server, and a package index on 127.0.0.1 serving a wheel the
test builds.

The setup script is what a user would write (``python3 -m venv .venv && .venv/bin/pip install -r requirements.txt``
from their index); the agent imports what it installed. The snapshot keeps the venv: the next attempt skips setup
and never asks the index; a changed ``requirements.txt`` or setup script makes a new snapshot (the index is asked
again). The index is in the setup phase's network policy only: the agent cannot reach it.

One thing is the test's own: its index listens on the host's 127.0.0.1, which inside the container is the
container's loopback (and in ``NO_PROXY``), so the script names the egress proxy with ``pip --proxy`` (which then
ignores ``NO_PROXY``). A real index (``pypi.example.com``) goes through the proxy from ``HTTPS_PROXY`` alone.
"""

from __future__ import annotations

import json

import pytest

from execution.environments.actions import PhaseNetwork, do_save_environment
from execution.models import Attempt, AttemptStatus, EgressBlock, RunKind, Snapshot
from execution.runner import run_attempt
from tests.execution.conftest import logs
from tests.execution.runner.test_sealed_docker import sealed  # noqa: F401 (a fixture)
from tests.execution.snapshots.test_snapshots_docker import _no_snapshot_images_left, kinds, push_commit  # noqa: F401
from tests.fakes.anthropic_api import TextReply, ToolUseReply
from tests.fakes.github import FakeGitHub
from tests.fakes.package_index import FakePackageIndex

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

PACKAGE = "anyon-probe-pkg"
PROXY = "http://127.0.0.1:18082"  # the egress bridge's proxy port in a sealed container


def module(version: str) -> dict[str, str]:
    return {"anyon_probe_pkg/__init__.py": f"def marker():\n    return 'probe-marker-{version}'\n"}


@pytest.fixture
def index(settings):
    """The package index, with two releases; allowed as an internal address (it is on 127.0.0.1)."""
    with FakePackageIndex() as index:
        index.add_wheel(PACKAGE, "1.0", module("1.0"))
        index.add_wheel(PACKAGE, "1.1", module("1.1"))
        yield index


@pytest.fixture
def repo(world, github: FakeGitHub) -> str:
    github.add_token(world.github_token, login="alice-gh")
    files = {"README.md": "# widgets\n", ".gitignore": ".venv/\n", "requirements.txt": f"{PACKAGE}==1.0\n"}
    return github.add_repo("acme", "widgets", files)


def setup_script(index: FakePackageIndex) -> str:
    return (
        "python3 -m venv .venv\n"
        f".venv/bin/pip install --proxy {PROXY} --index-url {index.index_url} -r requirements.txt\n"
    )


#: The agent's step: import the package from the venv, then try the index itself through the proxy.
def agent_command(index: FakePackageIndex) -> str:
    return (
        ".venv/bin/python -c 'import anyon_probe_pkg; print(\"imported:\" + anyon_probe_pkg.marker())'; "
        f"echo agent-index:$(curl -s -o /dev/null -m 10 --noproxy '' -x {PROXY} -w '%{{http_code}}' "
        f"{index.index_url} || true)"
    )


def run(world, repo: str, index: FakePackageIndex, *, script: str) -> tuple[Attempt, str]:
    """One attempt with ``script`` as the setup; the agent imports the package. Its log, with the agent's results."""
    host = index.url.removeprefix("http://")
    do_save_environment(
        owner=world.user,
        repository="acme/widgets",
        setup_script=script,
        setup_network=PhaseNetwork(mode="rules", rules=f"{host}\n"),
        agent_network=PhaseNetwork(mode="off"),
    )
    seen = len(world.api.requests)
    world.api.enqueue(
        ToolUseReply("Bash", {"command": agent_command(index), "description": "import"}), TextReply("Imported.")
    )
    attempt = world.attempt(repo_url=repo, prompt="Use the installed package")
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    attempt.refresh_from_db()
    results = "\n".join(json.dumps(r.json) for r in world.api.requests[seen:])
    return attempt, logs(attempt) + results


@pytest.mark.usefixtures("sealed")
def test_a_python_setup_installs_from_its_index_once_and_the_snapshot_keeps_it(world, repo, github, index, settings):
    settings.ANYON_EGRESS_ALLOW_INTERNAL = [*settings.ANYON_EGRESS_ALLOW_INTERNAL, index.url.removeprefix("http://")]
    script = setup_script(index)

    first, text = run(world, repo, index, script=script)
    assert RunKind.SETUP in kinds(first) and first.snapshot_saved, text
    assert f"Successfully installed {PACKAGE}-1.0" in text
    assert "imported:probe-marker-1.0" in text
    assert "agent-index:200" not in text and "agent-index:" in text  # the agent's phase does not allow the index
    assert EgressBlock.objects.filter(attempt=first, host="127.0.0.1", port=int(index.url.rsplit(":", 1)[1])).exists()
    installs = len(index.requests)
    assert index.requests_to(f"/simple/{PACKAGE}/")

    second, text = run(world, repo, index, script=script)
    assert RunKind.SETUP not in kinds(second) and second.from_snapshot_of is not None, text
    assert "Started from the snapshot" in text and "Successfully installed" not in text
    assert "imported:probe-marker-1.0" in text
    assert len(index.requests) == installs  # neither the skipped setup nor the agent reached the index

    push_commit(github.repo_path("acme", "widgets"), {"requirements.txt": f"{PACKAGE}==1.1\n"})
    relocked, text = run(world, repo, index, script=script)
    assert RunKind.SETUP in kinds(relocked) and relocked.snapshot_saved and relocked.from_snapshot_of is None
    assert "lockfiles changed" in text and f"Successfully installed {PACKAGE}-1.1" in text
    assert "imported:probe-marker-1.1" in text
    assert len(index.requests) > installs
    installs = len(index.requests)

    rescripted, text = run(world, repo, index, script=script + "echo setup-v2\n")
    assert RunKind.SETUP in kinds(rescripted) and rescripted.snapshot_saved, text
    assert "setup-v2" in text and "imported:probe-marker-1.1" in text
    assert len(index.requests) > installs
    assert Snapshot.objects.count() == 3
