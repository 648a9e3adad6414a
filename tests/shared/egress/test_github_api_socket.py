"""``github-api.sock`` (the operator's opt-in): the GitHub REST API of the run's repository only, token added by the
proxy; any other path, however disguised, is refused before a credential is asked for."""

from __future__ import annotations

import pytest

from shared.egress import GITHUB_API_SOCKET, Grant, Service
from shared.egress.github_api_policy import github_api_request_allowed
from tests.fakes.github import FakeGitHub
from tests.shared.egress.conftest import GH_TOKEN, grant, unix_session

pytestmark = pytest.mark.hostile  # attacks: counted in docs/QA_CHECKLIST.md


@pytest.fixture
def github():
    with FakeGitHub() as fake:
        fake.add_token(GH_TOKEN, login="alice-gh")
        fake.add_repo("acme", "widgets")
        fake.add_repo("acme", "secret")
        yield fake


def api_grant(github: FakeGitHub, **changes) -> Grant:
    host = github.url.removeprefix("http://")
    fields = {"git_url": github.url, "git_repository": "acme/widgets", "github_api_url": github.api_url}
    return grant("1", internal=[host], **{**fields, **changes})


async def test_the_runs_repository_is_read_with_the_token_added_and_nothing_else_is(
    proxy, attempt_dirs, github, credentials, blocked
):
    paths = await proxy.open_attempt(api_grant(github), attempt_dirs[0])
    async with unix_session(paths[GITHUB_API_SOCKET]) as client:
        async with client.get("http://bridge/repos/acme/widgets", headers={"Authorization": "Bearer fake"}) as ok:
            assert ok.status == 200
            assert (await ok.json())["full_name"] == "acme/widgets"
        calls_before = len(credentials.calls)
        for path in ("/repos/acme/secret", "/repos/acme/widgets/../secret", "/repos/acme/widgets%2F..%2Fsecret",
                     "/user", "/graphql", "/repos/acme"):  # fmt: skip
            async with client.get(f"http://bridge{path}") as refused:
                assert refused.status == 403, path
        assert len(credentials.calls) == calls_before  # a refused request never decrypts the token
    seen = [r for r in github.requests if r.path.startswith("/api/")]
    assert [r.path for r in seen] == ["/api/repos/acme/widgets"]  # only the allowed request went out
    assert seen[0].headers["authorization"] == f"Bearer {GH_TOKEN}"  # the proxy's token replaced the container's
    assert credentials.calls[-1] == ("1", Service.GITHUB)
    assert len(blocked.events) == 6 and all("refused /" in event[3] for event in blocked.events)


async def test_without_the_opt_in_there_is_no_api_socket(proxy, attempt_dirs, github):
    paths = await proxy.open_attempt(api_grant(github, github_api_url=None), attempt_dirs[0])
    assert GITHUB_API_SOCKET not in paths and not (attempt_dirs[0] / GITHUB_API_SOCKET).exists()


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/repos/acme/widgets", True),
        ("/repos/ACME/Widgets/issues", True),
        ("/repos/acme/widgets/pulls/1/comments", True),
        ("/repos/acme/widgets-other", False),
        ("/repos/acme/secret/issues", False),
        ("/repos/acme/widgets/../../acme/secret", False),
        ("/repos/acme/widgets/%2e%2e/secret", False),
        ("/repos/acme%2Fwidgets/x", False),
        ("/repos/acme/widgets//x", False),
        ("/repos/acme/widgets/./x", False),
        ("/repos/acme/widgets\\..\\secret", False),
        ("/orgs/acme/repos", False),
        ("/", False),
    ],
)
def test_the_path_rule(path, allowed):
    assert (github_api_request_allowed(path, "acme/widgets") is None) == allowed


def test_a_grant_with_the_api_needs_the_repository():
    with pytest.raises(ValueError, match="git_url"):
        grant("1", github_api_url="https://api.github.com")
