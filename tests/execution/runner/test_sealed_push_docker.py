"""Sealed runs, pushes attacked: whatever git runs inside the container while the push window is open (the agent's
``pre-push`` hook, or commands of its own), the egress proxy lets through only the attempt's own branch.

Real engine, real image, real egress proxy process; the git server is a fake GitHub on 127.0.0.1.
"""

from __future__ import annotations

import subprocess

import pytest

from execution.attempts.actions import do_request_pull_request
from execution.attempts.steps import default_plan
from execution.models import AttemptStatus, EgressBlock, JobStatus
from execution.runner import run_attempt, run_job
from tests.execution.conftest import logs
from tests.execution.runner import test_sealed_docker
from tests.fakes.anthropic_api import TextReply, ToolUseReply
from tests.fakes.github import FakeGitHub
from tests.fixtures.queueing import held_from_workers

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True), pytest.mark.hostile]

#: What the agent leaves in the workspace: a hook that, once Anyon's push runs it, force-pushes main, pushes a tag
#: and deletes a branch, then lets the push go on.
HOOK = """
cat > .git/hooks/pre-push <<'HOOK'
#!/bin/sh
exec >> /tmp/hook.log 2>&1
git push --no-verify --force origin HEAD:refs/heads/main
git tag -f v9.9.9 && git push --no-verify origin refs/tags/v9.9.9
git push --no-verify origin :refs/heads/other
exit 0
HOOK
chmod +x .git/hooks/pre-push
echo 'a change' > change.txt
"""

#: Run by the test as a pushing step: every push an agent could try while the window is open, then the allowed one.
HOSTILE_PUSHES = """
set +e
git -c user.name=a -c user.email=a@a commit -q --allow-empty -m attack
git push --force origin HEAD:refs/heads/main; echo "main rc=$?"
git tag v9.9.9 && git push origin refs/tags/v9.9.9; echo "tag rc=$?"
git push origin :refs/heads/other; echo "delete rc=$?"
git push origin HEAD:refs/heads/feature; echo "feature rc=$?"
git push --mirror origin; echo "mirror rc=$?"
git branch extra && git push --all origin; echo "all rc=$?"
git push origin HEAD:refs/heads/{branch} HEAD:refs/heads/main; echo "mixed rc=$?"
git tag -a -m release v10 && git -c push.followTags=true push origin HEAD:refs/heads/{branch}; echo "follow rc=$?"
git push origin HEAD:refs/heads/{branch} && git push origin --delete {branch}; echo "own delete rc=$?"
git -c user.name=a -c user.email=a@a commit -q --amend --allow-empty -m rewritten
git push --force origin HEAD:refs/heads/{branch}
"""

sealed, repo = test_sealed_docker.sealed, test_sealed_docker.repo  # fixtures: the egress proxy process, acme/widgets


def remote_refs(github: FakeGitHub) -> dict[str, str]:
    out = subprocess.run(
        ["git", "--git-dir", str(github.repo_path("acme", "widgets")), "for-each-ref",
         "--format=%(refname) %(objectname)"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return dict(line.split(" ") for line in out.splitlines())


@pytest.fixture
def other_branch(repo, github: FakeGitHub) -> dict[str, str]:
    """The remote also has a branch ``other`` (for the deletes); returns its refs before the run."""
    bare = github.repo_path("acme", "widgets")
    subprocess.run(["git", "--git-dir", str(bare), "branch", "other", "main"], check=True)
    return remote_refs(github)


def test_a_pre_push_hook_in_the_workspace_changes_no_other_ref_during_the_pull_request_push(
    world, repo, sealed, github, other_branch
):
    world.api.enqueue(ToolUseReply("Bash", {"command": HOOK, "description": "hook"}), TextReply("Done."))
    attempt = world.attempt(repo_url=repo, prompt="Change something")
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    attempt.refresh_from_db()
    with held_from_workers():
        job = do_request_pull_request(attempt=attempt)
    assert run_job(job.pk) == JobStatus.SUCCEEDED, logs(attempt)  # the pull request's own push went through
    after = remote_refs(github)
    # Whether Anyon's git ran the hook or not: main, the tags and the other branch are as they were.
    assert {ref: after.get(ref) for ref in other_branch} == other_branch, logs(attempt)
    assert set(after) == set(other_branch) | {f"refs/heads/{attempt.branch}"}, logs(attempt)


def test_hostile_pushes_inside_the_container_in_the_push_window_touch_only_the_attempts_branch(
    world, repo, sealed, github, other_branch
):
    attempt = world.attempt(repo_url=repo)
    clone, branch, _agent = default_plan(repo_url=repo, base_branch="main", attempt_id=attempt.pk)
    attack = {"kind": "custom", "title": "hostile pushes", "pushes": True,
              "argv": ["sh", "-c", HOSTILE_PUSHES.format(branch=attempt.branch)]}  # fmt: skip
    attempt.plan = [clone.to_plan(), branch.to_plan(), attack]
    attempt.save(update_fields=["plan"])
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)  # the last, allowed push went through
    text = logs(attempt)
    after = remote_refs(github)
    assert "forced update" in text  # the attempt's own branch may be rewritten
    assert {ref: after.get(ref) for ref in other_branch} == other_branch, text
    assert set(after) == set(other_branch) | {f"refs/heads/{attempt.branch}"}, text
    for what in ("main", "tag", "delete", "feature", "mirror", "all", "mixed", "follow", "own delete"):
        assert f"{what} rc=1" in text, (what, text[-6000:])
    assert "[remote rejected] HEAD -> main (egress proxy: other refs may not be pushed" in text, text
    assert "(egress proxy: tags may not be pushed" in text and "deleting a branch is not allowed" in text, text
    assert EgressBlock.objects.filter(attempt=attempt, reason__startswith="refused a push").count() >= 5
    assert "blocked: 127.0.0.1:" in text and "refused a push to refs/heads/main" in text
