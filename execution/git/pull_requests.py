"""Opening a pull request through GitHub's REST API (``POST /repos/{owner}/{repo}/pulls``).

Called by the worker after the branch was pushed. The token is decrypted for this one request (audited) and sent
only in the ``Authorization`` header. GitHub's error answers are turned into sentences a user can act on.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests
from django.conf import settings

from execution.git.commit_list import markdown
from execution.git.repo_urls import repo_owner_and_name
from execution.prompts import printable
from secrets_app.github_client import api_headers
from secrets_app.github_connect import do_mark_github_token_rejected
from secrets_app.models import Provider
from secrets_app.secret_store import fetch_secret
from secrets_app.selectors import GITHUB_PRECEDENCE


class PullRequestError(Exception):
    pass


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    state: str


def _explain(status: int, body: dict, head: str, base: str, repo: str) -> str:
    message = str(body.get("message", ""))
    details = " ".join(str(e.get("message", "")) for e in body.get("errors", []) if isinstance(e, dict))
    if status == 401:
        return "GitHub rejected your token (401): reconnect GitHub in Settings."
    if status == 403:
        return (
            f"GitHub answered 403 ({message or 'forbidden'}): the token has no permission to open pull requests in "
            f"{repo} (classic tokens need the repo scope; fine-grained tokens need Pull requests: read and write)."
        )
    if status == 404:
        # GitHub answers 404, not 403, when a token may not see a repository: "not found" is all that is known.
        return (
            f"GitHub answered 404 ({message or 'Not Found'}) to POST /repos/{repo}/pulls: either there is no "
            f"repository {repo} at {settings.ANYON_GITHUB_API_URL}, or the connected token cannot see it. Check the "
            "task's repository URL; that the token's account has access to it (a fine-grained token: the "
            "repository is among its selected repositories; an organization's repository: the token is authorized "
            "for its SSO); and that ANYON_GITHUB_API_URL is the API of the GitHub that hosts it."
        )
    if status == 422:
        text = f"{message} {details}".strip()
        if "already exists" in text:
            return f"A pull request for {head} already exists. ({details or message})"
        if "base" in text.lower():
            return f"The base branch {base!r} does not exist in the repository. ({text})"
        return f"GitHub refused the pull request: {text}"
    return f"GitHub answered {status}: {message or 'unexpected error'}"


def pull_request_body(attempt) -> str:
    """The task's prompt, what the push sent (the branch, its commits and their authors), and where it came from."""
    pushed = markdown(attempt.push_summary or {})
    section = f"\n\n### Commits on {attempt.branch}\n\n{pushed}" if pushed else ""
    if attempt.network_record:  # a sealed run's: what it reached
        section += f"\n\n{sealed_run_note(attempt.network_record)}"
    return f"{printable(attempt.task.prompt)}{section}\n\n---\nOpened by Anyon Cloud from attempt {attempt.pk}."


def _some(items: list[str], most: int = 20) -> str:
    return ", ".join(items[:most]) + (f" and {len(items) - most} more" if len(items) > most else "")


def sealed_run_note(record: dict) -> str:
    """The pull request body's line about a sealed run's network (the attempt's stored network record): the hosts
    it reached (and the credential Anyon added on the way), what was refused."""
    reached = []
    for use in record.get("hosts", []):
        if not (use.get("requests") or use.get("tunnels")):
            continue
        added = {"anthropic": " (Anthropic credential added by Anyon)", "github": " (GitHub token added by Anyon)"}
        reached.append(f"{use['host']}{added.get(use.get('credential'), '')}")
    blocked: dict[str, int] = {}
    for block in record.get("blocked", []):
        blocked[block["host"]] = blocked.get(block["host"], 0) + int(block.get("count") or 1)
    reached_text = _some(list(dict.fromkeys(reached))) or "nothing"
    blocked_text = _some([f"{host} ({n}×)" for host, n in blocked.items()]) or "nothing"
    return (
        f"Made in a sealed run; reached: {reached_text}; blocked: {blocked_text}; no credential entered the container."
    )


def open_pull_request(*, attempt, title: str, body: str, actor: str) -> PullRequest:
    task = attempt.task
    owner, repo = repo_owner_and_name(task.repo_url)
    token = fetch_secret(
        owner=task.owner,
        provider=Provider.GITHUB,
        kinds=GITHUB_PRECEDENCE,
        purpose="open pull request",
        actor=actor,
        attempt_id=attempt.pk,
    )
    url = f"{settings.ANYON_GITHUB_API_URL.rstrip('/')}/repos/{owner}/{repo}/pulls"
    payload = {"title": title[:250], "head": attempt.branch, "base": task.base_branch, "body": body[:60_000]}
    try:
        response = requests.post(
            url,
            json=payload,
            headers=api_headers(token.value),
            timeout=settings.ANYON_HTTP_TIMEOUT,
        )
    except requests.RequestException as exc:
        raise PullRequestError(f"GitHub could not be reached ({type(exc).__name__}).") from exc
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code == 401:
        do_mark_github_token_rejected(secret_id=token.secret_id, reason="GitHub answered 401 to opening a pull request")
    if response.status_code != 201:
        raise PullRequestError(
            _explain(
                response.status_code,
                data if isinstance(data, dict) else {},
                attempt.branch,
                task.base_branch,
                f"{owner}/{repo}",
            )
        )
    return PullRequest(number=int(data["number"]), url=str(data["html_url"]), state=str(data.get("state", "open")))
