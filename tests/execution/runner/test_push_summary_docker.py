"""What a push sends, in the real image with the real CLI: the scripted agent makes commits of its own under
another author (and committer), switches to a branch of its own and leaves a change for Anyon to commit. The
attempt records the branch Anyon pushes, the commits with their authors (hostile text masked), which commit is
Anyon's own, and the branch switch; the page says so, the push sends the recorded head to the attempt's branch, and
the pull request's body lists the commits."""

from __future__ import annotations

import subprocess

import pytest

from execution.attempts.actions import do_delete_attempt, do_request_pull_request
from execution.models import AttemptStatus, JobStatus
from execution.runner import run_attempt, run_job
from tests.execution.conftest import logs
from tests.fakes.anthropic_api import TextReply, ToolUseReply
from tests.fakes.github import FakeGitHub
from tests.fixtures.queueing import held_from_workers

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

AGENT_GIT = (
    "cd /workspace && echo one > one.txt && git add one.txt && "
    "GIT_COMMITTER_NAME='Build Bot' GIT_COMMITTER_EMAIL=bot@ci.test "
    "git -c user.name=\"Mal'lory & co\" -c user.email=mallory@evil.test commit -qm '{subject}' && "
    "git checkout -qb feature/agent && echo two > two.txt && git add two.txt && "
    "git -c user.name=Mallory -c user.email=mallory@evil.test commit -qm 'second of mine' && "
    "echo three > three.txt"
)


@pytest.fixture
def repo(world, github: FakeGitHub) -> str:
    github.add_token(world.github_token, login="alice-gh")
    return github.add_repo("acme", "widgets", {"README.md": "# widgets\n"})


def attempt_with_agent_commits(world, repo, subject: str):
    world.api.enqueue(
        ToolUseReply("Bash", {"command": AGENT_GIT.format(subject=subject), "description": "commit"}),
        TextReply("Committed my own work on a branch of my own."),
    )
    attempt = world.attempt(repo_url=repo, prompt="Commit as you like")
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    attempt.refresh_from_db()
    return attempt


@pytest.mark.hostile
def test_the_agents_commits_authors_and_branch_switch_are_recorded_masked_and_shown(world, repo, client):
    subject = f"<script>alert(1)</script> {world.github_token}"
    attempt = attempt_with_agent_commits(world, repo, subject)
    push = attempt.push_summary
    assert push["branch"] == attempt.branch and push["head"] == attempt.head_commit
    assert push["switched"] and push["agent_branch"] == "feature/agent" and not push["detached"]
    assert push["total"] == 3 and push["more"] == 0 and push["agent_commits"] == 2
    own, second, first = push["commits"]
    agent_run = attempt.runs.get(kind="agent")
    assert own["own"] and own["id"] == agent_run.own_commit == attempt.head_commit
    assert own["author"] == "alice" and own["subject"] == "demo"
    assert not second["own"] and (second["author"], second["subject"]) == ("Mallory", "second of mine")
    assert not first["own"] and first["author"] == "Mal'lory & co" and first["email"] == "mallory@evil.test"
    assert (first["committer"], first["committer_email"]) == ("Build Bot", "bot@ci.test")
    assert first["subject"] == "<script>alert(1)</script> ***"  # the token masked; the page escapes the rest
    client.force_login(world.user)
    html = client.get(f"/attempts/{attempt.pk}/").content.decode()
    assert world.github_token not in html and "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; ***" in html and "Mal&#x27;lory &amp; co" in html
    assert "switched to the branch feature/agent" in html
    assert "The agent&#x27;s own commits are included: 2 commits not made by Anyon" in html
    do_delete_attempt(attempt=attempt, by="test")  # the workspace holds the token the scripted agent committed


def test_the_push_sends_the_recorded_head_to_the_attempts_branch_and_the_pull_request_lists_the_commits(
    world, repo, github
):
    attempt = attempt_with_agent_commits(world, repo, "first of mine")
    with held_from_workers():
        job = do_request_pull_request(attempt=attempt)
    assert run_job(job.pk) == JobStatus.SUCCEEDED, logs(attempt)
    bare = github.repo_path("acme", "widgets")
    heads = subprocess.run(
        ["git", "-C", str(bare), "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"refs/heads/{attempt.branch} {attempt.head_commit}" in heads
    assert "feature/agent" not in heads  # the agent's branch name is never pushed
    [pull] = github.pulls
    assert f"### Commits on {attempt.branch}" in pull["body"]
    assert "switched to the branch feature/agent" in pull["body"]
    assert "first of mine (Mal'lory & co <mallory@evil.test>, committed by Build Bot <bot@ci.test>)" in pull["body"]
    assert "second of mine (Mallory <mallory@evil.test>)" in pull["body"] and "demo (alice <" in pull["body"]
