"""Results of a run in the real image: commit and diff, follow-up in the same workspace with the resumed
session, push + pull request against the fake GitHub (git over HTTP and REST), and delete."""

from __future__ import annotations

import json
import subprocess

import docker
import pytest

from execution.attempts import secret_dir
from execution.attempts.actions import AttemptBusy, do_delete_attempt, do_request_pull_request, do_start_follow_up
from execution.attempts.containers import container_name
from execution.models import Attempt, AttemptStatus, JobStatus
from execution.runner import run_attempt, run_job
from tests.execution.conftest import logs
from tests.fakes.anthropic_api import TextReply, ToolUseReply
from tests.fakes.github import FakeGitHub
from tests.fixtures.queueing import held_from_workers

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

HELLO = "def hello():\n    return 'hello, world'\n"


@pytest.fixture
def repo(world, github: FakeGitHub) -> str:
    github.add_token(world.github_token, login="alice-gh")
    return github.add_repo("acme", "widgets", {"README.md": "# widgets\nold line\n"})


def finished_attempt(world, repo) -> Attempt:
    """An attempt whose agent wrote hello.py and changed README.md through the real CLI's tools."""
    world.api.enqueue(
        ToolUseReply("Write", {"file_path": "/workspace/hello.py", "content": HELLO}),
        ToolUseReply("Bash", {"command": "sed -i 's/old line/new line/' README.md", "description": "edit"}),
        TextReply("Added hello.py and updated the README."),
    )
    attempt = world.attempt(repo_url=repo, prompt="Add a hello function")
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    attempt.refresh_from_db()
    return attempt


def test_agent_changes_are_committed_and_the_diff_page_shows_them(world, repo, client):
    attempt = finished_attempt(world, repo)
    agent_run = attempt.runs.get(kind="agent")
    assert agent_run.commit_before == attempt.base_commit
    assert agent_run.commit_after == attempt.head_commit != attempt.base_commit
    files = {f["path"]: f for f in attempt.diff}
    assert set(files) == {"hello.py", "README.md"}
    assert (files["hello.py"]["added"], files["hello.py"]["removed"]) == (2, 0)
    assert (files["README.md"]["added"], files["README.md"]["removed"]) == (1, 1)
    assert "Committed" in logs(attempt)
    client.force_login(world.user)
    html = client.get(f"/attempts/{attempt.pk}/").content.decode()
    assert '<span class="add">+def hello():</span>' in html
    assert '<span class="add">+    return &#x27;hello, world&#x27;</span>' in html
    assert '<span class="del">-old line</span>' in html and '<span class="add">+new line</span>' in html
    assert "2 files changed" in html and "Create pull request" in html


def test_follow_up_resumes_the_session_in_the_same_workspace(world, repo):
    attempt = finished_attempt(world, repo)
    session_id = attempt.runs.get(kind="agent").session_id
    world.api.enqueue(
        ToolUseReply(
            "Bash", {"command": "cat /workspace/hello.py; echo checked > /workspace/NOTES", "description": "look"}
        ),
        TextReply("It is there."),
    )
    prompt = "Check hello.py is still there\x00 (a NUL: standard input carries it, a command line could not)"
    with held_from_workers():
        job = do_start_follow_up(attempt=attempt, prompt=prompt)
    assert run_job(job.pk) == JobStatus.SUCCEEDED, logs(attempt)
    follow_run = attempt.runs.filter(job=job, kind="agent").get()
    assert follow_run.argv[-2:] == ["--resume", session_id]
    # The CLI resumed: its request carries the first run's conversation, and the tool saw the first run's file.
    last = world.api.messages_requests()[-1].json
    assert "Add a hello function" in str(last["messages"])
    assert json.dumps(prompt)[1:-1] in json.dumps(last["messages"])  # the prompt arrived whole, NUL included
    commit = attempt.runs.get(job=job, title="Commit changes")
    assert commit.exit_code == 0 and "\x00" not in "".join(commit.argv)  # the commit message shows it as ␀
    assert "Committed" in logs(attempt) and any("there\u2400 (a NUL" in arg for arg in commit.argv)
    assert "return &#x27;hello, world&#x27;" in logs(attempt).replace("'", "&#x27;")
    assert not secret_dir.secret_dir_path(attempt.pk).exists()


def test_push_and_pull_request(world, repo, github, client):
    attempt = finished_attempt(world, repo)
    with held_from_workers():
        job = do_request_pull_request(attempt=attempt)
    assert run_job(job.pk) == JobStatus.SUCCEEDED, logs(attempt)
    bare = github.repo_path("acme", "widgets")
    pushed = subprocess.run(
        ["git", "-C", str(bare), "rev-parse", f"refs/heads/{attempt.branch}"], capture_output=True, text=True
    )
    attempt.refresh_from_db()
    assert pushed.stdout.strip() == attempt.head_commit
    [pull] = github.pulls
    assert (pull["head"], pull["base"], pull["token"]) == (attempt.branch, "main", world.github_token)
    assert attempt.pr_number == 1 and attempt.pr_url.endswith("/acme/widgets/pull/1")
    client.force_login(world.user)
    html = client.get(f"/attempts/{attempt.pk}/").content.decode()
    assert f'href="{attempt.pr_url}"' in html and "Pull request #1" in html
    with pytest.raises(AttemptBusy, match="already exists"), held_from_workers():
        do_request_pull_request(attempt=attempt)


def test_pull_request_errors_are_shown_plainly(world, repo, github, client):
    attempt = finished_attempt(world, repo)
    github.pulls.append({"head": attempt.branch, "repo": "acme/widgets"})  # someone opened one already
    with held_from_workers():
        job = do_request_pull_request(attempt=attempt)
    assert run_job(job.pk) == JobStatus.FAILED
    job.refresh_from_db()
    assert f"A pull request for {attempt.branch} already exists" in job.error
    github.accounts[world.github_token].scopes = ["read:user"]
    with held_from_workers():
        job = do_request_pull_request(attempt=attempt)
    assert run_job(job.pk) == JobStatus.FAILED
    job.refresh_from_db()
    assert "no permission to open pull requests" in job.error
    client.force_login(world.user)
    assert "no permission to open pull requests" in client.get(f"/attempts/{attempt.pk}/").content.decode()


def test_delete_removes_container_workspace_and_secret_dir(world, repo, docker_client):
    attempt = finished_attempt(world, repo)
    attempt_id, volume = attempt.pk, attempt.workspace_volume
    assert docker_client.volumes.get(volume) and docker_client.volumes.get(f"{volume}-home")
    secret_dir.secret_dir_path(attempt.pk).mkdir(parents=True)  # as if a crash had left one behind
    do_delete_attempt(attempt=attempt, by="alice")
    for name in (volume, f"{volume}-home"):
        with pytest.raises(docker.errors.NotFound):
            docker_client.volumes.get(name)
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(container_name(attempt_id))
    assert not secret_dir.secret_dir_path(attempt_id).exists()
    assert not Attempt.objects.filter(pk=attempt_id).exists()


def test_admin_bulk_delete(world, repo, docker_client, client):
    from django.contrib.auth.models import User

    attempts = [finished_attempt(world, repo) for _ in range(2)]
    volumes = [a.workspace_volume for a in attempts]
    ops = User.objects.create_superuser("ops", "ops@example.com", "ops password 123")
    client.force_login(ops)  # client.login() has no request, which the sign-in throttle (django-axes) requires
    response = client.post(
        "/admin/execution/attempt/",
        {"action": "delete_selected", "_selected_action": [a.pk for a in attempts], "post": "yes"},
        follow=True,
    )
    assert b"Deleted 2 attempts with their containers" in response.content
    assert not Attempt.objects.exists()
    for name in volumes:
        with pytest.raises(docker.errors.NotFound):
            docker_client.volumes.get(name)
