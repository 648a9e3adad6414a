"""The shapes of the credentials Anyon handles: one source for masking, form validation and the login parser."""

from __future__ import annotations

import re

GITHUB_CLASSIC = r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}"
GITHUB_FINE_GRAINED = r"github_pat_[A-Za-z0-9_]{22,255}"
ANTHROPIC_ANY = r"sk-ant-(?:api03|admin01|oat01|ort01)-[A-Za-z0-9_-]{20,}"
ANTHROPIC_API_KEY = r"sk-ant-api03-[A-Za-z0-9_-]{20,}"
CLAUDE_OAUTH_TOKEN = r"sk-ant-oat01-[A-Za-z0-9_-]{20,}"
#: A credential inside a URL (``https://x-access-token:<token>@host/...``).
URL_CREDENTIAL = r"x-access-token:[^@\s]+@"

#: What the masker replaces wherever it appears, whether or not anyone told it the value.
TOKEN_PATTERNS = [GITHUB_CLASSIC, GITHUB_FINE_GRAINED, ANTHROPIC_ANY, URL_CREDENTIAL]
#: Every pattern starts with one of these; text without any of them cannot match.
PATTERN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "sk-ant-", "x-access-token:")


def whole(pattern: str) -> re.Pattern[str]:
    """The pattern as a test of a whole string (what a form field must be)."""
    return re.compile(rf"^(?:{pattern})$")
