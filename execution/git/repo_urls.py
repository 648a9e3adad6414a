"""Validation of repository URLs and branch names given by users.

Only ``<scheme>://<configured GitHub host>/<owner>/<repo>[.git]`` is accepted, where scheme and host come from
``ANYON_GITHUB_URL`` (https in production). That rules out git's remote helpers (``ext::``, ``fd::``), ``file://``,
``ssh://`` with options, option injection (a leading ``-``), credentials in the URL, other hosts and look-alike
characters. The URL is later passed to git as one argv element after ``--``, never through a shell.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

MAX_URL_LENGTH = 300
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,99})$")
_BRANCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")


def validate_repo_url(raw: str) -> str:
    url = (raw or "").strip()
    allowed = urlsplit(settings.ANYON_GITHUB_URL)
    example = f"{allowed.scheme}://{allowed.netloc}/owner/repository"
    if not url:
        raise ValidationError("Enter the repository URL, e.g. %(example)s.", params={"example": example})
    if len(url) > MAX_URL_LENGTH:
        raise ValidationError("That URL is %(n)s characters long; the limit is 300.", params={"n": len(url)})
    if url.startswith("-"):
        raise ValidationError("A repository URL cannot start with '-'.")
    if "::" in url.split("/", 1)[0] or url.lower().startswith(("ext:", "fd:", "file:")):
        raise ValidationError("Only %(scheme)s URLs of %(host)s are allowed.", params=_where(allowed))
    if not url.isascii() or any(c.isspace() or ord(c) < 32 for c in url):
        raise ValidationError("The URL may only contain plain ASCII characters, without spaces.")
    parts = urlsplit(url)
    if parts.scheme.lower() != allowed.scheme.lower():
        raise ValidationError("Only %(scheme)s URLs of %(host)s are allowed.", params=_where(allowed))
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValidationError(
            "Do not put credentials in the URL: Anyon injects your connected GitHub token when it clones."
        )
    if parts.netloc.lower() != allowed.netloc.lower():
        raise ValidationError("Only repositories on %(host)s are allowed.", params=_where(allowed))
    if parts.query or parts.fragment:
        raise ValidationError("The URL must not have a query (?…) or fragment (#…).")
    segments = parts.path.strip("/").split("/")
    if len(segments) != 2 or not all(_NAME.match(s) for s in segments):
        raise ValidationError("Use the form %(example)s.", params={"example": example})
    owner, repo = segments
    if repo.endswith(".git"):
        repo = repo[:-4]
    if not repo or ".." in owner + repo:
        raise ValidationError("Use the form %(example)s.", params={"example": example})
    return f"{allowed.scheme}://{allowed.netloc}/{owner}/{repo}.git"


def _where(allowed) -> dict:
    return {"scheme": allowed.scheme, "host": allowed.netloc}


def validate_branch(raw: str) -> str:
    branch = (raw or "").strip()
    if not _BRANCH.match(branch) or ".." in branch or branch.endswith((".lock", "/", ".")) or "//" in branch:
        raise ValidationError("Use a plain branch name such as main or release/1.2.")
    return branch


def repo_owner_and_name(url: str) -> tuple[str, str]:
    owner, repo = urlsplit(url).path.strip("/").split("/")
    return owner, repo.removesuffix(".git")
