"""The user's GitHub repositories as the task form offers them.

Read with the user's connected GitHub credential and cached briefly per user and credential (the key holds the
user's id and the credential's row id, never the token; the value holds repository metadata only). Every failure
becomes a :class:`RepositoryList` with a sentence the page shows; nothing here raises to the view.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from execution.models import Task
from secrets_app.errors import ConnectError, SecretError, SecretExpired
from secrets_app.github_client import (
    InvalidCredential,
    RateLimited,
    Repository,
    Unreachable,
    list_user_repos,
    search_user_repos,
)
from secrets_app.github_connect import do_mark_github_token_rejected
from secrets_app.models import Provider
from secrets_app.secret_store import FetchedSecret, fetch_secret
from secrets_app.selectors import GITHUB_PRECEDENCE, github_status

CACHE_SECONDS = 300
PER_PAGE = 100
MAX_PAGES = 5  # at most 500 repositories listed; the rest are found by searching
REJECTED = "GitHub rejected your token: reconnect GitHub in Settings (it was revoked, expired or is wrong)."


@dataclass
class RepositoryList:
    repositories: list[dict] = field(default_factory=list)
    truncated: bool = False
    error: str = ""  # not_connected, expired, invalid, rate_limited, unreachable, failed
    message: str = ""
    settings_url: str = ""

    def as_json(self) -> dict:
        return asdict(self)


def _cache_key(*, user_id: int, secret_id: int) -> str:
    return f"anyon:repositories:v1:{user_id}:{secret_id}"


def _used_urls(user) -> list[str]:
    """The repository URLs of the user's tasks that ran, most recent first."""
    urls: list[str] = []
    for url in (
        Task.objects.filter(owner=user, attempts__isnull=False)
        .order_by("-created_at")
        .values_list("repo_url", flat=True)
    ):
        if url not in urls:
            urls.append(url)
    return urls


def local_time(when: datetime) -> str:
    return f"{timezone.localtime(when):%Y-%m-%d %H:%M} ({timezone.get_current_timezone_name()})"


def _pushed(pushed_at: str) -> str:
    """GitHub's ``pushed_at`` as the site's local time, as the page shows it."""
    try:
        return f"{timezone.localtime(datetime.fromisoformat(pushed_at.replace('Z', '+00:00'))):%Y-%m-%d %H:%M}"
    except ValueError:
        return ""


def _clone_url(full_name: str) -> str:
    return f"{settings.ANYON_GITHUB_URL.rstrip('/')}/{full_name}.git"


def _ordered(user, repositories: list[Repository]) -> list[dict]:
    """Repositories the user ran tasks on first (most recent first), then GitHub's order (last push first)."""
    used = {url.lower(): i for i, url in enumerate(_used_urls(user))}
    rows = [
        {
            "full_name": r.full_name,
            "url": _clone_url(r.full_name).removesuffix(".git"),
            "private": r.private,
            "default_branch": r.default_branch,
            "pushed_at": r.pushed_at,
            "pushed": _pushed(r.pushed_at),
            "used": _clone_url(r.full_name).lower() in used,
        }
        for r in repositories
    ]
    return sorted(rows, key=lambda row: used.get(_clone_url(row["full_name"]).lower(), len(used)))


def _not_connected(state: str) -> RepositoryList:
    if state == "invalid":
        return RepositoryList(error="invalid", message=REJECTED, settings_url=reverse("settings"))
    if state == "expired":
        return RepositoryList(
            error=state,
            message="Your GitHub credential expired. Connect GitHub again in Settings to pick from your repositories.",
            settings_url=reverse("settings"),
        )
    return RepositoryList(
        error="not_connected",
        message="No GitHub account is connected. Connect one in Settings to pick from your repositories.",
        settings_url=reverse("settings"),
    )


def _failure(exc: Exception) -> RepositoryList:
    settings_url = reverse("settings")
    if isinstance(exc, SecretExpired):
        return RepositoryList(error="expired", message=str(exc), settings_url=settings_url)
    if isinstance(exc, SecretError):
        return RepositoryList(error="not_connected", message=str(exc), settings_url=settings_url)
    if isinstance(exc, InvalidCredential):
        return RepositoryList(error="invalid", message=REJECTED, settings_url=settings_url)
    if isinstance(exc, RateLimited):
        when = f" It resets at {local_time(exc.resets_at)}." if exc.resets_at else ""
        return RepositoryList(
            error="rate_limited",
            message=f"GitHub's rate limit for your token is used up.{when} You can still type the URL.",
        )
    if isinstance(exc, Unreachable):
        return RepositoryList(error="unreachable", message=f"{exc} You can still type the URL.")
    return RepositoryList(error="failed", message=f"{exc} You can still type the URL.")


def _token(user) -> FetchedSecret:
    return fetch_secret(
        owner=user, provider=Provider.GITHUB, kinds=GITHUB_PRECEDENCE, purpose="list repositories", actor="web"
    )


def _asked_with_token(user, ask):
    """``ask(token)`` with the user's GitHub token; a 401 marks that credential rejected (card, banner, this form)."""
    token = _token(user)
    try:
        return ask(token.value)
    except InvalidCredential as exc:
        do_mark_github_token_rejected(secret_id=token.secret_id, reason=str(exc))
        raise


def repositories_for(*, user, refresh: bool = False) -> RepositoryList:
    """The user's repositories (cached for ``CACHE_SECONDS``; ``refresh`` asks GitHub again)."""
    status = github_status(owner=user)
    if status.secret is None:
        return _not_connected(status.state)
    key = _cache_key(user_id=user.pk, secret_id=status.secret.pk)
    cached = None if refresh else cache.get(key)
    if cached is None:
        try:
            page = _asked_with_token(user, lambda token: list_user_repos(token, per_page=PER_PAGE, max_pages=MAX_PAGES))
        except (SecretError, ConnectError) as exc:
            return _failure(exc)
        cached = {"repositories": [asdict(r) for r in page.repositories], "truncated": page.truncated}
        cache.set(key, cached, CACHE_SECONDS)
    repositories = [Repository(**r) for r in cached["repositories"]]
    return RepositoryList(repositories=_ordered(user, repositories), truncated=cached["truncated"])


def search_repositories_for(*, user, query: str) -> RepositoryList:
    """The user's repositories whose name matches ``query``, from GitHub's search API (not cached)."""
    status = github_status(owner=user)
    if status.secret is None:
        return _not_connected(status.state)
    if not status.secret.account_login:  # without user:<login> the search would cover all of GitHub
        return RepositoryList()
    try:
        login = status.secret.account_login
        found = _asked_with_token(user, lambda token: search_user_repos(token, login=login, query=query))
    except (SecretError, ConnectError) as exc:
        return _failure(exc)
    return RepositoryList(repositories=_ordered(user, found))
