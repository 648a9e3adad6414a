# Long because each GitHub endpoint the app calls handles GitHub's errors, rate limits and paging in full.
"""GitHub's HTTP endpoints that connecting an account needs: the OAuth device flow and ``GET /user``.

URLs come from settings (``ANYON_GITHUB_URL``, ``ANYON_GITHUB_API_URL``) so GitHub Enterprise works and tests talk
to a fake GitHub on 127.0.0.1. Tokens only ever travel in the ``Authorization`` header, never in a URL.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests
from django.conf import settings

from secrets_app.errors import ConnectError
from shared.token_patterns import GITHUB_CLASSIC, GITHUB_FINE_GRAINED, whole

CLASSIC_TOKEN = whole(GITHUB_CLASSIC)
FINE_GRAINED_TOKEN = whole(GITHUB_FINE_GRAINED)
MAX_TOKEN_LENGTH = 300


@dataclass(frozen=True)
class GitHubUser:
    login: str
    scopes: list[str] = field(default_factory=list)
    scopes_known: bool = True  # False for fine-grained tokens: GitHub sends no X-OAuth-Scopes for them
    expires_at: datetime | None = None


@dataclass(frozen=True)
class DeviceCode:
    device_code: str
    user_code: str
    verification_uri: str
    expires_in: int
    interval: int

    def __repr__(self) -> str:
        return f"DeviceCode(user_code={self.user_code!r}, device_code=***)"


@dataclass(frozen=True)
class DevicePoll:
    """One poll of the token endpoint: either ``access_token`` or an ``error`` (with a new ``interval``)."""

    access_token: str = ""
    scopes: list[str] = field(default_factory=list)
    error: str = ""
    error_description: str = ""
    interval: int | None = None

    def __repr__(self) -> str:
        return f"DevicePoll(error={self.error!r}, access_token={'***' if self.access_token else ''!r})"


class InvalidCredential(ConnectError):
    """GitHub answered 401: the token is wrong, revoked or expired."""


def _timeout() -> float:
    return settings.ANYON_HTTP_TIMEOUT


def _check_web_url() -> str:
    return (
        f"check ANYON_GITHUB_URL (now {settings.ANYON_GITHUB_URL}): it must be GitHub's web address "
        "(https://github.com, or your GitHub Enterprise address), not its API address"
    )


def _post_form(url: str, data: dict) -> dict:
    """A POST to GitHub's web host (the OAuth endpoints). An answer that cannot come from there names the setting
    that points there."""
    path = url.removeprefix(settings.ANYON_GITHUB_URL.rstrip("/"))
    try:
        response = requests.post(url, data=data, headers={"Accept": "application/json"}, timeout=_timeout())
    except requests.RequestException as exc:
        raise ConnectError(
            f"GitHub could not be reached ({type(exc).__name__}). Try again in a minute; if that keeps happening, "
            f"{_check_web_url()}."
        ) from exc
    if response.status_code >= 500:
        raise ConnectError(f"GitHub answered {response.status_code}. Try again in a minute.")
    try:
        body = response.json()
    except ValueError as exc:
        raise ConnectError(
            f"{path} answered HTTP {response.status_code} with something other than GitHub's JSON: {_check_web_url()}."
        ) from exc
    if not isinstance(body, dict):
        raise ConnectError(f"{path} answered with a document GitHub does not send: {_check_web_url()}.")
    return body


def normalize_token(raw: str) -> str:
    """Strip surrounding white space; reject what cannot possibly be a GitHub token, with the reason."""
    token = (raw or "").strip()
    if not token:
        raise ConnectError("Paste a token: the field is empty.")
    if len(token) > MAX_TOKEN_LENGTH:
        raise ConnectError(f"That is {len(token)} characters long; GitHub tokens are at most {MAX_TOKEN_LENGTH}.")
    if not token.isascii() or any(c.isspace() for c in token):
        raise ConnectError("A GitHub token has only letters, digits and underscores; this one has other characters.")
    if not (CLASSIC_TOKEN.match(token) or FINE_GRAINED_TOKEN.match(token)):
        raise ConnectError(
            "That does not look like a GitHub token (they start with ghp_ for classic or github_pat_ for "
            "fine-grained tokens)."
        )
    return token


def parse_expiration(header: str | None) -> datetime | None:
    """``GitHub-Authentication-Token-Expiration``: e.g. ``2026-12-01 10:00:00 UTC`` or ``... +0000``."""
    if not header:
        return None
    text = header.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S %Z", "%Y-%m-%d %H:%M:%S %z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def api_headers(token: str) -> dict[str, str]:
    """Headers of every REST call made with a user's token (the token only ever travels here, never in a URL)."""
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }


def _get_with_token(path: str, token: str, params: dict[str, str | int]) -> requests.Response:
    """A GET on GitHub's API with the user's token (in the header only); a 401 is :class:`InvalidCredential`."""
    try:
        response = requests.get(
            f"{settings.ANYON_GITHUB_API_URL.rstrip('/')}{path}",
            params=params,
            headers=api_headers(token),
            timeout=_timeout(),
        )
    except requests.RequestException as exc:
        raise Unreachable(f"GitHub could not be reached ({type(exc).__name__}). Try again in a minute.") from exc
    if response.status_code == 401:
        raise InvalidCredential("GitHub rejected the token (401): it is wrong, revoked or expired.")
    return response


def get_user(token: str) -> GitHubUser:
    """``GET /user`` with the token: who it belongs to, its scopes and its expiry."""
    response = _get_with_token("/user", token, {})
    if response.status_code == 403:
        raise ConnectError("GitHub refused the request (403): the token may be rate limited or blocked by SSO.")
    check_api = (
        f"Check ANYON_GITHUB_API_URL (now {settings.ANYON_GITHUB_API_URL}): https://api.github.com, or "
        "https://<host>/api/v3 for GitHub Enterprise."
    )
    if response.status_code != 200:
        raise ConnectError(f"GitHub answered {response.status_code} to GET /user. {check_api}")
    try:
        login = str(response.json()["login"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConnectError(f"The answer to GET /user is not GitHub's (it has no login). {check_api}") from exc
    scope_header = response.headers.get("X-OAuth-Scopes")
    scopes = [s.strip() for s in (scope_header or "").split(",") if s.strip()]
    return GitHubUser(
        login=login,
        scopes=scopes,
        scopes_known=scope_header is not None,
        expires_at=parse_expiration(response.headers.get("GitHub-Authentication-Token-Expiration")),
    )


def request_device_code() -> DeviceCode:
    if not settings.ANYON_GITHUB_CLIENT_ID:
        raise ConnectError(
            "Signing in with GitHub is not set up on this server (ANYON_GITHUB_CLIENT_ID). Use a personal access "
            "token instead."
        )
    body = _post_form(
        f"{settings.ANYON_GITHUB_URL.rstrip('/')}/login/device/code",
        {"client_id": settings.ANYON_GITHUB_CLIENT_ID, "scope": settings.ANYON_GITHUB_OAUTH_SCOPES},
    )
    if "error" in body:
        hint = ""
        if body["error"] in ("unauthorized_client", "incorrect_client_credentials", "device_flow_disabled"):
            hint = (
                " Check ANYON_GITHUB_CLIENT_ID: it must be the client ID of a GitHub OAuth or GitHub App with the "
                "device flow enabled."
            )
        raise ConnectError(f"GitHub refused to start sign-in: {body.get('error_description') or body['error']}.{hint}")
    try:
        return DeviceCode(
            device_code=str(body["device_code"]),
            user_code=str(body["user_code"]),
            verification_uri=str(body["verification_uri"]),
            expires_in=int(body["expires_in"]),
            interval=int(body.get("interval", 5)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConnectError("GitHub's device-code answer is missing fields.") from exc


def poll_device_token(device_code: str) -> DevicePoll:
    body = _post_form(
        f"{settings.ANYON_GITHUB_URL.rstrip('/')}/login/oauth/access_token",
        {
            "client_id": settings.ANYON_GITHUB_CLIENT_ID,
            "device_code": device_code,
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        },
    )
    if body.get("access_token"):
        scopes = [s.strip() for s in str(body.get("scope", "")).split(",") if s.strip()]
        return DevicePoll(access_token=str(body["access_token"]), scopes=scopes)
    interval = body.get("interval")
    return DevicePoll(
        error=str(body.get("error", "unknown_error")),
        error_description=str(body.get("error_description", "")),
        interval=int(interval) if isinstance(interval, int | str) and str(interval).isdigit() else None,
    )


class RateLimited(ConnectError):
    """GitHub answered 403 or 429 with ``X-RateLimit-Remaining: 0``; ``resets_at`` is when it lifts, if said."""

    def __init__(self, message: str, *, resets_at: datetime | None) -> None:
        super().__init__(message)
        self.resets_at = resets_at


class Unreachable(ConnectError):
    """GitHub could not be reached, or answered with a server error."""


@dataclass(frozen=True)
class Repository:
    """One repository as the task form lists it (from ``GET /user/repos`` or the search API)."""

    full_name: str
    html_url: str
    private: bool
    default_branch: str
    pushed_at: str  # ISO 8601 as GitHub sends it, "" if never pushed

    @classmethod
    def from_api(cls, item: dict) -> Repository:
        return cls(
            full_name=str(item["full_name"]),
            html_url=str(item.get("html_url") or ""),
            private=bool(item.get("private")),
            default_branch=str(item.get("default_branch") or "main"),
            pushed_at=str(item.get("pushed_at") or ""),
        )


@dataclass(frozen=True)
class RepositoryPage:
    repositories: list[Repository]
    truncated: bool  # GitHub has more than was fetched


def _api_get(path: str, token: str, params: dict[str, str | int]) -> requests.Response:
    """A GET on GitHub's API with the user's token; 401, rate limits and unreachability become exceptions."""
    response = _get_with_token(path, token, params)
    if response.status_code in (403, 429) and response.headers.get("X-RateLimit-Remaining") == "0":
        reset = response.headers.get("X-RateLimit-Reset", "")
        resets_at = datetime.fromtimestamp(int(reset), tz=UTC) if reset.isdigit() else None
        raise RateLimited("GitHub's rate limit for this token is used up.", resets_at=resets_at)
    if response.status_code >= 500:
        raise Unreachable(f"GitHub answered {response.status_code}. Try again in a minute.")
    if response.status_code != 200:
        message = ""
        with contextlib.suppress(ValueError, AttributeError):
            message = str(response.json().get("message", ""))
        raise ConnectError(f"GitHub answered {response.status_code} to GET {path}{f': {message}' if message else ''}.")
    return response


def _repositories(response: requests.Response, items_of=lambda body: body) -> list[Repository]:
    try:
        items = items_of(response.json())
        return [Repository.from_api(item) for item in items]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConnectError(
            f"The answer to GET {response.request.path_url.split('?')[0]} is not GitHub's list of repositories. "
            f"Check ANYON_GITHUB_API_URL (now {settings.ANYON_GITHUB_API_URL})."
        ) from exc


def list_user_repos(token: str, *, per_page: int = 100, max_pages: int = 5) -> RepositoryPage:
    """``GET /user/repos`` (owned, collaborator and organization repositories, most recently pushed first),
    following ``Link: rel="next"`` up to ``max_pages`` pages."""
    repositories: list[Repository] = []
    params: dict[str, str | int] = {
        "per_page": per_page,
        "sort": "pushed",
        "affiliation": "owner,collaborator,organization_member",
    }
    for page in range(1, max_pages + 1):
        response = _api_get("/user/repos", token, {**params, "page": page})
        repositories.extend(_repositories(response))
        if "next" not in response.links:
            return RepositoryPage(repositories, truncated=False)
    return RepositoryPage(repositories, truncated=True)


def search_user_repos(token: str, *, login: str, query: str, per_page: int = 50) -> list[Repository]:
    """``GET /search/repositories``: the repositories of ``login`` whose name matches ``query``.

    The search API sees the user's own repositories (``user:``); those of organizations are found by
    ``GET /user/repos`` only, which is why the list comes first and the search is for the rest."""
    words = " ".join(w for w in query.split() if ":" not in w)[:100]  # no search qualifiers from the user
    response = _api_get(
        "/search/repositories",
        token,
        {"q": f"{words} in:name user:{login} fork:true", "per_page": per_page, "sort": "updated"},
    )
    return _repositories(response, lambda body: body["items"])
