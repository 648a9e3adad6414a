"""What ``github-api.sock`` lets through: the REST API of the run's own repository, read-only unless the operator
also allows writes, and never the endpoints that hold or change who may reach the repository, its secrets or its
settings (by path segment, for every method: some of them expose secrets even to a ``GET``).

With writes allowed, only the collaboration endpoints may be written to (issues, pull requests and their comments,
reviews and labels, commit comments) with ``POST`` or ``PATCH``: never the repository itself (visibility, name,
default branch), its refs or contents (which would bypass the push policy of ``git.sock``), merges, statuses or
checks (which could fake CI), workflow runs, releases or anything else.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

READ_METHODS = frozenset({"GET", "HEAD"})
WRITE_METHODS = frozenset({"POST", "PATCH"})

#: Refused for every method, wherever they stand in the path under ``/repos/<owner>/<repo>``.
SENSITIVE_SEGMENTS = frozenset(
    {
        "hooks",  # webhooks (and their secrets and deliveries)
        "keys",  # deploy keys
        "collaborators",
        "invitations",
        "teams",
        "transfer",
        "visibility",
        "secrets",  # actions, dependabot and codespaces secrets
        "variables",
        "environments",
        "runners",  # self-hosted runners and their registration tokens
        "permissions",  # actions permissions, a collaborator's permission
        "oidc",
        "protection",  # branch and tag protection
        "rulesets",
        "rules",
        "codespaces",
        "dependabot",
        "secret-scanning",
        "code-scanning",
        "security-advisories",
        "vulnerability-alerts",
        "automated-security-fixes",
        "private-vulnerability-reporting",
        "interaction-limits",
        "autolinks",
        "import",  # a source import holds the other side's credentials
        "pages",
    }
)

#: With writes allowed: the first segment under the repository that may be written to.
WRITABLE_ROOTS = frozenset({"issues", "pulls"})
#: Never written to even under a writable root: they change branches (``pulls/<n>/merge``, ``update-branch``).
UNWRITABLE_SEGMENTS = frozenset({"merge", "update-branch"})

#: A path with one of these could be read by the upstream as another path than it looks here ("/repos/a/b/../../c").
_DISGUISES = re.compile(r"%2e|%2f|%5c|\\|(?:^|/)\.{1,2}(?:/|$)|//", re.IGNORECASE)


def github_api_request_allowed(raw_path: str, repository: str) -> str | None:
    """Why a GitHub REST request is refused, or None: ``/repos/<owner>/<repo>`` of ``repository`` and below only."""
    if _DISGUISES.search(raw_path):
        return "the path is not plain (dot segments or encoded separators)"
    parts = raw_path.split("/")  # "", "repos", owner, repo, ...
    if len(parts) < 4 or parts[1] != "repos" or f"{parts[2]}/{parts[3]}".lower() != repository.lower():
        return "only the run's repository is reachable"
    return None


def github_api_refusal(method: str, raw_path: str, repository: str, *, write: bool) -> str | None:
    """Why ``method raw_path`` is refused, or None: the repository rule, then the method, then the endpoint."""
    problem = github_api_request_allowed(raw_path, repository)
    if problem:
        return problem
    under = [unquote(part).strip().lower() for part in raw_path.split("/")[4:]]
    if under and under[-1] == "":
        under.pop()  # "/repos/o/r/issues/"
    sensitive = next((segment for segment in under if segment in SENSITIVE_SEGMENTS), None)
    if sensitive:
        return f"the repository's {sensitive} are not reachable through the proxy"
    if method in READ_METHODS:
        return None
    if not write:
        return "the GitHub API is read-only for this run"
    if method not in WRITE_METHODS:
        return f"{method[:10]} is not allowed (only POST and PATCH write)"
    if not _writable(under):
        return "only issues, pull requests and comments may be written to"
    return None


def _writable(under: list[str]) -> bool:
    if any(segment in UNWRITABLE_SEGMENTS for segment in under):
        return False
    if under and under[0] in WRITABLE_ROOTS:
        return True
    # Commit comments: POST /commits/<sha>/comments, PATCH /comments/<id>.
    return (len(under) == 3 and under[0] == "commits" and under[2] == "comments") or (
        len(under) == 2 and under[0] == "comments"
    )
