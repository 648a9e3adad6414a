"""``github-api.sock`` (the operator's opt-in): the GitHub REST API of the run's repository only, token added by the
proxy; any other path, however disguised, is refused before a credential is asked for."""

from __future__ import annotations

import pytest

from shared.egress import GITHUB_API_SOCKET, Grant, Service
from shared.egress.github_api_policy import github_api_refusal, github_api_request_allowed
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


R = "/repos/acme/widgets"


# Reads of the repository: allowed, with or without writes.
READS = [
    ("GET", R),
    ("HEAD", R),
    ("GET", f"{R}/issues/1/comments"),
    ("GET", f"{R}/pulls/2/files"),
    ("GET", f"{R}/actions/runs"),
    ("GET", f"{R}/contents/README.md"),
    ("GET", f"{R}/deployments"),
]
# Refused by default; with the second setting allowed: issues, pull requests and comments only, POST and PATCH only.
WRITES = [
    ("POST", f"{R}/issues"),
    ("POST", f"{R}/issues/1/comments"),
    ("PATCH", f"{R}/issues/comments/5"),
    ("POST", f"{R}/pulls"),
    ("PATCH", f"{R}/pulls/2"),
    ("POST", f"{R}/pulls/2/reviews"),
    ("POST", f"{R}/commits/{'a' * 40}/comments"),
    ("PATCH", f"{R}/comments/9"),
]
# Refused with and without the second setting.
NEVER = [
    ("OPTIONS", R),
    ("PATCH", R),  # visibility, name, default branch
    ("DELETE", R),
    ("PUT", f"{R}/pulls/2/merge"),
    ("POST", f"{R}/pulls/2/merge"),
    ("PUT", f"{R}/pulls/2/update-branch"),
    ("PUT", f"{R}/contents/x.txt"),
    ("POST", f"{R}/git/refs"),  # would bypass git.sock's ref policy
    ("PATCH", f"{R}/git/refs/heads/main"),
    ("POST", f"{R}/merges"),
    ("POST", f"{R}/releases"),  # creates a tag
    ("POST", f"{R}/statuses/{'a' * 40}"),  # fakes CI
    ("POST", f"{R}/check-runs"),
    ("POST", f"{R}/dispatches"),
    ("POST", f"{R}/actions/workflows/ci.yml/dispatches"),
    ("POST", f"{R}/forks"),
    ("DELETE", f"{R}/issues/comments/5"),
]


@pytest.mark.parametrize(
    ("method", "path", "by_default", "with_writes"),
    [
        *((method, path, True, True) for method, path in READS),
        *((method, path, False, True) for method, path in WRITES),
        *((method, path, False, False) for method, path in NEVER),
    ],
)
def test_the_method_rule(method, path, by_default, with_writes):
    assert (github_api_refusal(method, path, "acme/widgets", write=False) is None) == by_default
    assert (github_api_refusal(method, path, "acme/widgets", write=True) is None) == with_writes


@pytest.mark.parametrize(
    "path",
    [
        f"{R}/hooks",
        f"{R}/hooks/1/config",
        f"{R}/keys",
        f"{R}/collaborators",
        f"{R}/collaborators/bob/permission",
        f"{R}/invitations",
        f"{R}/teams",
        f"{R}/transfer",
        f"{R}/actions/secrets",
        f"{R}/actions/secrets/public-key",
        f"{R}/actions/variables",
        f"{R}/actions/runners/registration-token",
        f"{R}/actions/permissions",
        f"{R}/actions/oidc/customization/sub",
        f"{R}/environments/prod/secrets",
        f"{R}/environments",
        f"{R}/dependabot/secrets",
        f"{R}/codespaces/secrets",
        f"{R}/secret-scanning/alerts",
        f"{R}/branches/main/protection",
        f"{R}/rulesets",
        f"{R}/vulnerability-alerts",
        f"{R}/HOOKS",
        f"{R}/%68ooks",  # percent-encoded letters
        f"{R}/hooks/",
        f"{R}/actions/Secrets",
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PATCH"])
@pytest.mark.parametrize("write", [False, True])
def test_sensitive_endpoints_are_refused_for_every_method_even_with_writes(path, method, write):
    problem = github_api_refusal(method, path, "acme/widgets", write=write)
    assert problem is not None and "not reachable" in problem


async def _status(client, method: str, path: str) -> int:
    async with client.request(method, f"http://bridge{path}", json={"title": "t"}) as response:
        return response.status


async def test_through_the_socket_reads_pass_and_writes_and_sensitive_reads_are_refused_by_default(
    proxy, attempt_dirs, github, credentials, blocked
):
    paths = await proxy.open_attempt(api_grant(github), attempt_dirs[0])
    async with unix_session(paths[GITHUB_API_SOCKET]) as client:
        assert await _status(client, "GET", R) == 200
        calls = len(credentials.calls)
        for method, path in (("POST", f"{R}/pulls"), ("PATCH", R), ("GET", f"{R}/hooks"), ("GET", f"{R}/keys"),
                             ("GET", f"{R}/actions/secrets"), ("DELETE", R)):  # fmt: skip
            assert await _status(client, method, path) == 403, (method, path)
        assert len(credentials.calls) == calls
    assert [(r.method, r.path) for r in github.requests if r.path.startswith("/api/")] == [("GET", f"/api{R}")]
    assert len(blocked.events) == 6
    assert any("read-only" in event[3] for event in blocked.events)
    assert any("hooks are not reachable" in event[3] for event in blocked.events)


async def test_with_the_write_setting_a_pull_request_is_opened_and_the_rest_stays_refused(
    proxy, attempt_dirs, github, blocked
):
    paths = await proxy.open_attempt(api_grant(github, github_api_write=True), attempt_dirs[0])
    async with unix_session(paths[GITHUB_API_SOCKET]) as client:
        await _status(client, "POST", f"{R}/pulls")
        for method, path in (("PATCH", R), ("GET", f"{R}/hooks"), ("POST", f"{R}/git/refs"),
                             ("PUT", f"{R}/pulls/1/merge")):  # fmt: skip
            assert await _status(client, method, path) == 403, (method, path)
    sent = [(r.method, r.path) for r in github.requests if r.path.startswith("/api/")]
    assert sent == [("POST", f"/api{R}/pulls")]
    assert len(blocked.events) == 4
