"""``git.sock``: real ``git`` clones and pushes the run's repository through the proxy (which adds the token), and
nothing else on the git host is reachable."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from yarl import URL

from shared.egress import GIT_SOCKET, Service
from shared.egress.credential_swap import git_request_allowed
from tests.fakes.git_http import FakeGitHTTPServer, head_commit, make_bare_repo
from tests.shared.egress.conftest import GH_TOKEN, grant, tcp_bridge, unix_session

pytestmark = pytest.mark.hostile  # attacks: counted in docs/QA_CHECKLIST.md

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "/bin/false",
    "GIT_AUTHOR_NAME": "Agent",
    "GIT_AUTHOR_EMAIL": "agent@anyon.invalid",
    "GIT_COMMITTER_NAME": "Agent",
    "GIT_COMMITTER_EMAIL": "agent@anyon.invalid",
}


async def git(*args: str, cwd: Path | None = None) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd or "/tmp"), **GIT_ENV}
    process = await asyncio.create_subprocess_exec(
        "git", *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    return output.decode()


@pytest.fixture
def git_server(tmp_path):
    repo = make_bare_repo(tmp_path / "srv" / "octo" / "demo.git", {"README.md": "# demo\n"})
    with FakeGitHTTPServer(repo, GH_TOKEN, project_root=tmp_path / "srv") as server:
        yield server


def git_grant(server: FakeGitHTTPServer, **changes):
    host = server.base_url.removeprefix("http://")
    fields = {"git_url": server.base_url, "git_repository": "octo/demo", "git_push_branch": "anyon/attempt-1"}
    return grant("1", internal=[host], **{**fields, **changes})


async def test_real_git_clones_and_pushes_through_git_sock_with_the_token_added(
    proxy, attempt_dirs, git_server, tmp_path
):
    paths = await proxy.open_attempt(git_grant(git_server, git_push=True), attempt_dirs[0])
    async with tcp_bridge(paths[GIT_SOCKET]) as port:
        # What the container's git config does: GitHub URLs go to the local bridge, in plain HTTP.
        rewrite = f"url.http://127.0.0.1:{port}/.insteadOf=https://github.com/"
        await git("-c", rewrite, "clone", "--quiet", "https://github.com/octo/demo.git", str(tmp_path / "work"))
        work = tmp_path / "work"
        assert (work / "README.md").read_text() == "# demo\n"
        (work / "change.txt").write_text("from the agent\n")
        await git("add", "change.txt", cwd=work)
        await git("commit", "--quiet", "-m", "change", cwd=work)
        await git("-c", rewrite, "push", "--quiet", "origin", "HEAD:refs/heads/anyon/attempt-1", cwd=work)
    assert head_commit(git_server.repo_dir, "anyon/attempt-1") == (await git("rev-parse", "HEAD", cwd=work)).strip()
    requests = git_server.requests
    assert {r.path.rsplit(".git", 1)[1] for r in requests} >= {"/info/refs", "/git-upload-pack", "/git-receive-pack"}
    assert all(r.auth_ok and r.username == "x-access-token" for r in requests)
    assert GH_TOKEN not in (work / ".git" / "config").read_text()


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/octo/other.git/info/refs?service=git-upload-pack"),
        ("GET", "/octo/demo.git/HEAD"),
        ("GET", "/octo/demo.git/objects/info/packs"),
        ("GET", "/octo/demo.git/info/refs"),
        ("GET", "/octo/demo.git/info/refs?service=git-upload-archive"),
        ("GET", "/octo/demo.git/git-upload-pack"),
        ("POST", "/octo/demo.git/git-upload-pack?x=1"),
        ("GET", "/octo/demo%2egit/info/refs?service=git-upload-pack"),
        ("GET", "/octo/../octo/demo.git/info/refs?service=git-upload-pack"),
        ("GET", "/api/v3/user"),
        ("POST", "/octo/demo.git/git-receive-pack"),  # this grant does not allow push
    ],
)
async def test_other_paths_on_the_git_host_are_refused(proxy, attempt_dirs, git_server, credentials, method, target):
    paths = await proxy.open_attempt(git_grant(git_server), attempt_dirs[0])  # git_push is off by default
    async with (
        unix_session(paths[GIT_SOCKET]) as client,
        client.request(method, URL(f"http://b{target}", encoded=True)) as response,
    ):
        assert response.status == 403
    assert git_server.requests == []
    assert credentials.calls == []


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/octo/demo.git/info/refs", "service=git-upload-pack", None),
        ("GET", "/octo/demo/info/refs", "service=git-receive-pack", None),
        ("GET", "/Octo/Demo.git/info/refs", "service=git-upload-pack", None),  # GitHub paths ignore case
        ("POST", "/octo/demo.git/git-upload-pack", "", None),
        ("POST", "/octo/demo.git/git-receive-pack", "", None),
        ("POST", "/octo/demo.git.git/git-upload-pack", "", "only the run's repository is reachable"),
        ("POST", "/octo/demo.git/git-upload-pack/", "", "only the run's repository is reachable"),
        ("GET", "/octo/demo.git/info/refs", "service=git-upload-pack&x=1", "only git smart HTTP is reachable"),
    ],
)
def test_git_request_rule(method, path, query, expected):
    assert git_request_allowed(method, path, query, "octo/demo", push=True) == expected


async def test_a_user_without_a_github_credential_goes_out_anonymously(
    proxy, attempt_dirs, git_server, credentials, tmp_path
):
    """The wiring answers "" when the user has no GitHub credential (public repositories clone without one, as in
    mounted mode): the request goes upstream with no Authorization at all, neither the container's nor one added."""
    credentials.values[("1", Service.GITHUB)] = ""
    paths = await proxy.open_attempt(git_grant(git_server), attempt_dirs[0])
    async with tcp_bridge(paths[GIT_SOCKET]) as port:
        url = f"http://x-access-token:forged@127.0.0.1:{port}/octo/demo.git"
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **GIT_ENV}
        process = await asyncio.create_subprocess_exec(
            "git", "ls-remote", url, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        await process.communicate()
    assert process.returncode != 0  # the fake git server wants a token: this one is private
    assert git_server.requests and all(r.username is None and not r.auth_ok for r in git_server.requests)
