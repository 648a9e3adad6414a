"""What an attempt records of its workspace at the end of a session (execution/runner/workspace.py), read by git in
a real container of the runtime image: no repository, the base and the head, the diff with its patches, a patch too
long to keep whole, and a secret in a patch."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from execution.runner.workspace import WorkspaceGit
from shared.docker.engine import DockerEngine
from shared.masking import Masker
from tests.execution.conftest import make_attempt

pytestmark = [pytest.mark.docker, pytest.mark.django_db]

SECRET = "ghp_" + "W" * 36  # written by the test itself (on its command line): not a tracked secret


@pytest.fixture
def workspace(runtime_image, container_factory, settings):
    container = container_factory(runtime_image, user=str(settings.ANYON_CONTAINER_UID), working_dir="/workspace")
    return container


def sh(container, script: str) -> str:
    code, out = container.exec_run(["sh", "-c", script], workdir="/workspace")
    assert code == 0, out.decode()
    return out.decode().strip()


GIT = "git -c user.name=t -c user.email=t@t"


def test_a_workspace_without_a_repository_has_no_results(workspace):
    attempt = make_attempt()
    assert WorkspaceGit(DockerEngine(), workspace.id).results(attempt, Masker()) is None


def test_the_base_head_and_diff_since_the_base_branch(workspace):
    base = sh(workspace, f"git init -q -b main . && echo one > a.txt && {GIT} add . && {GIT} commit -qm base && "
                         "git update-ref refs/remotes/origin/main HEAD && git rev-parse HEAD")  # fmt: skip
    head = sh(workspace, f"echo two >> a.txt && printf 'x\\0y' > b.bin && echo {SECRET} > c.txt && {GIT} add . && "
                         f"{GIT} commit -qm work && git rev-parse HEAD")  # fmt: skip
    attempt = make_attempt()
    results = WorkspaceGit(DockerEngine(), workspace.id).results(attempt, Masker([SECRET]))
    assert (results.base_commit, results.head_commit) == (base, head)
    files = {f["path"]: f for f in results.diff}
    assert set(files) == {"a.txt", "b.bin", "c.txt"} and files["b.bin"]["binary"]
    assert (files["a.txt"]["added"], files["a.txt"]["removed"]) == (1, 0) and "+two" in files["a.txt"]["patch"]
    assert SECRET not in files["c.txt"]["patch"] and "+***" in files["c.txt"]["patch"]
    assert not results.diff_truncated
    # A base already known is kept, whatever the remote-tracking branch says now.
    attempt.base_commit = "0" * 40
    assert WorkspaceGit(DockerEngine(), workspace.id).results(attempt, Masker()).base_commit == "0" * 40


def test_a_patch_too_long_is_cut_and_said_so(workspace):
    sh(workspace, f"git init -q -b main . && echo one > a.txt && {GIT} add . && {GIT} commit -qm base && "
                  "git update-ref refs/remotes/origin/main HEAD")  # fmt: skip
    sh(workspace, f"seq 1 400000 > big.txt && echo small > z.txt && {GIT} add . && {GIT} commit -qm big")  # 2.7 MB
    results = WorkspaceGit(DockerEngine(), workspace.id).results(make_attempt(), Masker())
    files = {f["path"]: f for f in results.diff}
    assert files["big.txt"]["added"] == 400000 and files["z.txt"]["added"] == 1  # the counts are all there
    assert results.diff_truncated


def reported(workspace, argv: list[str], *, base_branch: str = "main", stdin: bytes | None = None):
    """Run ``argv`` under the reporting ``sh`` of step_report; return its exit code, its output without the report,
    and the commits reported."""
    from execution.runner.step_report import ReportCatcher, new_nonce, reporting
    from shared.docker.engine import ExecResult

    nonce = new_nonce()
    catcher, result = ReportCatcher(nonce), ExecResult()
    out = ""
    for stream, data in DockerEngine().exec_stream(
        workspace.id,
        reporting(argv, nonce=nonce, base_branch=base_branch),
        result,
        stdin=stdin,
        user=str(django_settings.ANYON_CONTAINER_UID),
    ):
        if stream == "stdout":
            out += catcher.feed(data.decode())
    return result.exit_code, out + catcher.finish(), catcher.commits


def test_a_step_reports_the_commits_at_its_end_and_keeps_its_exit_code_and_input(workspace):
    from execution.runner.step_report import Commits

    assert reported(workspace, ["sh", "-c", "echo hi; exit 3"]) == (3, "hi\n", Commits(repository=False))
    assert reported(workspace, ["cat"], stdin=b"the prompt") == (0, "the prompt", Commits(repository=False))
    assert reported(workspace, ["sh", "-c", "kill -TERM $$"])[0] == 143  # killed by a signal, as docker says it
    sh(workspace, "git init -q -b main .")
    assert reported(workspace, ["true"])[2] == Commits(repository=True)  # no commit yet
    base = sh(workspace, f"echo one > a.txt && {GIT} add . && {GIT} commit -qm base && "
                         "git update-ref refs/remotes/origin/main HEAD && git rev-parse HEAD")  # fmt: skip
    code, out, commits = reported(workspace, ["sh", "-c", f"echo two >> a.txt && {GIT} commit -qam work"])
    head = sh(workspace, "git rev-parse HEAD")
    assert (code, out, commits) == (0, "", Commits(repository=True, base=base, head=head)) and head != base
    assert reported(workspace, ["true"], base_branch="")[2] == Commits(repository=True, base="", head=head)
