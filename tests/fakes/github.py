# Long because one server fakes every GitHub endpoint the app uses: OAuth, REST and git over HTTP.
"""A fake GitHub on 127.0.0.1: the OAuth device flow endpoints, ``GET /user`` with GitHub's real headers,
``GET /user/repos`` (paginated with ``Link`` headers) and ``GET /search/repositories``, and git over smart HTTP
at ``/<owner>/<repo>.git`` (the real ``git http-backend``), all with the same tokens.

The API lives under ``/api`` (like GitHub Enterprise's ``/api/v3``): point ``ANYON_GITHUB_URL`` at ``fake.url``
and ``ANYON_GITHUB_API_URL`` at ``fake.api_url``. Git requires HTTP Basic auth whose password is a known token,
as GitHub does for private repositories.
"""

from __future__ import annotations

import re
import secrets
import string
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

from tests.fakes.git_http import CgiHeaders, basic_credentials, http_backend, make_bare_repo
from tests.fakes.http_server import FakeHTTPServer, Recorded, Reply
from tests.fixtures.leaks import track_secret

CLIENT_ID = "Iv1.fakeclientid0001"


def classic_token(prefix: str = "ghp") -> str:
    return track_secret(f"{prefix}_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36)))


def fine_grained_token() -> str:
    return track_secret(
        "github_pat_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(60))
    )


def expiration_header(when: datetime, *, offset: str = "UTC") -> str:
    """The ``GitHub-Authentication-Token-Expiration`` value GitHub sends for ``when``.

    GitHub writes it as ``2026-12-01 10:00:00 UTC``; with ``offset`` like ``-0700`` the same instant is written in
    that zone, as some GitHub Enterprise servers do.
    """
    if offset == "UTC":
        return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    sign = -1 if offset.startswith("-") else 1
    zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %z")


@dataclass
class Account:
    login: str
    scopes: list[str] | None = field(default_factory=lambda: ["repo", "read:user"])  # None: fine-grained token
    expiration: str | None = None  # GitHub-Authentication-Token-Expiration header value


@dataclass
class ListedRepo:
    """A repository ``GET /user/repos`` lists for an account (no git behind it unless also added with add_repo)."""

    full_name: str
    private: bool = False
    default_branch: str = "main"
    pushed_at: str = "2026-01-01T00:00:00Z"
    affiliation: str = "owner"  # owner, collaborator or organization_member

    def as_api(self, base: str) -> dict:
        owner, name = self.full_name.split("/", 1)
        return {
            "id": abs(hash(self.full_name)) % 10**9,
            "name": name,
            "full_name": self.full_name,
            "owner": {"login": owner},
            "private": self.private,
            "html_url": f"{base}/{self.full_name}",
            "default_branch": self.default_branch,
            "pushed_at": self.pushed_at,
        }


@dataclass
class DeviceGrant:
    device_code: str
    user_code: str
    script: list[str]  # what successive polls answer: pending, slow_down, expired, denied, success
    token: str = ""
    polls: list[float] = field(default_factory=list)


class FakeGitHub(FakeHTTPServer):
    def __init__(self, *, interval: int = 1, expires_in: int = 900, port: int = 0, host: str = "127.0.0.1") -> None:
        super().__init__(port=port, host=host)
        self.accounts: dict[str, Account] = {}
        self.grants: dict[str, DeviceGrant] = {}
        self.interval = interval
        self.expires_in = expires_in
        #: The script the next device flow follows.
        self.device_script: list[str] = ["pending", "success"]
        self.device_login = "octocat"
        self.pulls: list[dict] = []
        #: What ``GET /user/repos`` lists, by account login.
        self.listed: dict[str, list[ListedRepo]] = {}
        #: Fixed answers by (method, path), before anything else: e.g. what a wrong ANYON_GITHUB_URL reaches.
        self.replies: dict[tuple[str, str], Reply] = {}
        self._repos = tempfile.TemporaryDirectory(prefix="fake-github-repos-")
        self.repos_root = Path(self._repos.name)

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        self._repos.cleanup()

    def add_repo(self, owner: str, name: str, files: dict[str, str] | None = None) -> str:
        """Create ``owner/name`` with one commit on ``main``; returns its clone URL."""
        make_bare_repo(self.repos_root / owner / f"{name}.git", files)
        return f"{self.url}/{owner}/{name}.git"

    def list_repo(self, login: str, full_name: str, **kwargs) -> ListedRepo:
        repo = ListedRepo(full_name, **kwargs)
        self.listed.setdefault(login, []).append(repo)
        return repo

    def repo_path(self, owner: str, name: str) -> Path:
        return self.repos_root / owner / f"{name}.git"

    def git_requests(self) -> list[Recorded]:
        return [r for r in self.requests if _GIT_PATH.match(r.path)]

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def add_token(self, token: str, login: str = "octocat", **kwargs) -> str:
        self.accounts[token] = Account(login=login, **kwargs)
        return token

    def handle(self, request: Recorded) -> Reply:
        if (request.method, request.path) in self.replies:
            return self.replies[request.method, request.path]
        if request.method == "POST" and request.path == "/login/device/code":
            return self._device_code(request)
        if request.method == "POST" and request.path == "/login/oauth/access_token":
            return self._access_token(request)
        if request.method == "GET" and request.path == "/api/user":
            return self._user(request)
        if request.method == "GET" and request.path == "/api/user/repos":
            return self._user_repos(request)
        if request.method == "GET" and request.path == "/api/search/repositories":
            return self._search_repos(request)
        if _GIT_PATH.match(request.path):
            return self._git(request)
        pulls = _PULLS_PATH.match(request.path)
        if pulls and request.method == "POST":
            return self._create_pull(request, pulls["owner"], pulls["repo"])
        repo = _REPO_PATH.match(request.path)
        if repo and request.method == "GET":
            return self._repo(request, repo["owner"], repo["repo"])
        return Reply(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})

    def _device_code(self, request: Recorded) -> Reply:
        if request.form().get("client_id") != CLIENT_ID:
            return Reply(200, {"error": "unauthorized_client", "error_description": "unknown client_id"})
        grant = DeviceGrant(
            device_code=track_secret(secrets.token_hex(20)),
            user_code=f"{secrets.randbelow(9000) + 1000}-{secrets.randbelow(9000) + 1000}",
            script=list(self.device_script),
        )
        self.grants[grant.device_code] = grant
        return Reply(
            200,
            {
                "device_code": grant.device_code,
                "user_code": grant.user_code,
                "verification_uri": f"{self.url}/login/device",
                "expires_in": self.expires_in,
                "interval": self.interval,
            },
        )

    def _access_token(self, request: Recorded) -> Reply:
        form = request.form()
        grant = self.grants.get(form.get("device_code", ""))
        if grant is None or form.get("grant_type") != "urn:ietf:params:oauth:grant-type:device_code":
            return Reply(200, {"error": "incorrect_device_code", "error_description": "The device_code is invalid."})
        grant.polls.append(request.at)
        step = grant.script.pop(0) if len(grant.script) > 1 else grant.script[0]
        if step == "success":
            if not grant.token:
                grant.token = self.add_token(classic_token("gho"), login=self.device_login)
            return Reply(200, {"access_token": grant.token, "token_type": "bearer", "scope": "repo,read:user"})
        errors = {
            "pending": ("authorization_pending", "The authorization request is still pending."),
            "slow_down": ("slow_down", "Too many requests have been made in the same timeframe."),
            "expired": ("expired_token", "The device_code has expired."),
            "denied": ("access_denied", "The authorization request was denied."),
        }
        error, description = errors[step]
        body = {"error": error, "error_description": description}
        if step == "slow_down":
            self.interval += 5
            body["interval"] = self.interval
        return Reply(200, body)

    def _user(self, request: Recorded) -> Reply:
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").removeprefix("token ").strip()
        account = self.accounts.get(token)
        if account is None:
            return Reply(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
        headers = {}
        if account.scopes is not None:
            headers["X-OAuth-Scopes"] = ", ".join(account.scopes)
        if account.expiration:
            headers["GitHub-Authentication-Token-Expiration"] = account.expiration
        return Reply(200, {"login": account.login, "id": 1, "type": "User"}, headers)

    def _account(self, request: Recorded) -> Account | None:
        auth = request.headers.get("authorization", "")
        return self.accounts.get(auth.removeprefix("Bearer ").removeprefix("token ").strip())

    def _user_repos(self, request: Recorded) -> Reply:
        """``GET /user/repos``: ``per_page`` (default 30, at most 100), ``page``, ``sort`` (pushed: last push first;
        else by name), ``affiliation``; a ``Link`` header with ``next``/``last`` as GitHub sends it."""
        account = self._account(request)
        if account is None:
            return Reply(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
        arg = {k: v[0] for k, v in request.query.items()}
        per_page = min(int(arg.get("per_page", 30)), 100)
        page = max(int(arg.get("page", 1)), 1)
        wanted = arg.get("affiliation", "owner,collaborator,organization_member").split(",")
        repos = [r for r in self.listed.get(account.login, []) if r.affiliation in wanted]
        if arg.get("sort") == "pushed":
            repos.sort(key=lambda r: r.pushed_at, reverse=True)
        else:
            repos.sort(key=lambda r: r.full_name.lower())
        last = max((len(repos) + per_page - 1) // per_page, 1)
        items = [r.as_api(self.url) for r in repos[(page - 1) * per_page : page * per_page]]
        links = []
        for rel, number in (("next", page + 1), ("last", last)):
            if page < last:
                links.append(f'<{self.api_url}/user/repos?{urlencode({**arg, "page": number})}>; rel="{rel}"')
        return Reply(200, items, {"Link": ", ".join(links)} if links else {})

    def _search_repos(self, request: Recorded) -> Reply:
        """``GET /search/repositories``: ``q`` of words matched in the name, ``in:name``, ``user:<login>``,
        ``fork:true``; the account's listed repositories owned by that login are searched."""
        account = self._account(request)
        if account is None:
            return Reply(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
        terms = request.query.get("q", [""])[0].split()
        owner = next((t.removeprefix("user:") for t in terms if t.startswith("user:")), None)
        words = [t.lower() for t in terms if ":" not in t]
        items = [
            r.as_api(self.url)
            for r in self.listed.get(account.login, [])
            if (owner is None or r.full_name.split("/")[0] == owner)
            and all(w in r.full_name.split("/", 1)[1].lower() for w in words)
        ]
        per_page = min(int(request.query.get("per_page", ["30"])[0]), 100)
        return Reply(200, {"total_count": len(items), "incomplete_results": False, "items": items[:per_page]})

    def _repo(self, request: Recorded, owner: str, repo: str) -> Reply:
        """``GET /repos/{owner}/{repo}``: what an agent with API access reads (a known token is required)."""
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if token not in self.accounts:
            return Reply(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
        if not self.repo_path(owner, repo).exists():
            return Reply(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
        return Reply(200, {"full_name": f"{owner}/{repo}", "default_branch": "main", "private": True})

    def _create_pull(self, request: Recorded, owner: str, repo: str) -> Reply:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        account = self.accounts.get(token)
        if account is None:
            return Reply(401, {"message": "Bad credentials"})
        if account.scopes is not None and "repo" not in account.scopes:
            return Reply(403, {"message": "Resource not accessible by personal access token"})
        path = self.repo_path(owner, repo)
        if not path.exists():
            return Reply(404, {"message": "Not Found"})
        body = request.json()
        errors = []
        for name in ("head", "base"):
            ref = body.get(name, "")
            if not (path / "refs" / "heads" / ref).exists() and f"refs/heads/{ref}" not in _packed_refs(path):
                errors.append({"resource": "PullRequest", "field": name, "code": "invalid"})
        if errors:
            return Reply(422, {"message": "Validation Failed", "errors": errors})
        if any(p["head"] == body["head"] and p["repo"] == f"{owner}/{repo}" for p in self.pulls):
            return Reply(
                422,
                {
                    "message": "Validation Failed",
                    "errors": [{"message": f"A pull request already exists for {owner}:{body['head']}."}],
                },
            )
        number = len(self.pulls) + 1
        pull = {**body, "number": number, "repo": f"{owner}/{repo}", "token": token}
        self.pulls.append(pull)
        return Reply(
            201,
            {
                "number": number,
                "state": "open",
                "html_url": f"{self.url}/{owner}/{repo}/pull/{number}",
                "head": {"ref": body["head"]},
                "base": {"ref": body["base"]},
            },
        )

    def _git(self, request: Recorded) -> Reply:
        username, password = basic_credentials(request.headers.get("authorization"))
        if password is None or password not in self.accounts:
            return Reply(401, b"auth required\n", {"WWW-Authenticate": 'Basic realm="GitHub"'})
        status, headers, body = http_backend(
            self.repos_root, request.method, request.path, request.raw_query, CgiHeaders(request.headers),
            request.body, username or "",
        )  # fmt: skip
        return Reply(status, body, dict(headers))


_REPO_PATH = re.compile(r"^/api/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)$")
_PULLS_PATH = re.compile(r"^/api/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/pulls$")
_GIT_PATH = re.compile(r"^/[A-Za-z0-9._-]+/[A-Za-z0-9._-]+\.git/")


def _packed_refs(path: Path) -> str:
    packed = path / "packed-refs"
    return packed.read_text() if packed.exists() else ""
