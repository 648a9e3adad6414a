"""Skip-or-fail policy for tests that need real parts (Docker engine, Chromium).

Outside CI such a test skips with a one-line reason. With ``ANYON_REQUIRE_DOCKER=1`` / ``ANYON_REQUIRE_BROWSER=1``
(set by .ci/run) the same condition fails the test instead, so CI can never go green by skipping.
"""

from __future__ import annotations

import os

import pytest


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def require(flag: str, reason: str) -> None:
    """Fail when ``flag`` is set in the environment, otherwise skip, with ``reason`` either way."""
    if _truthy(flag):
        pytest.fail(f"{reason} (required because {flag} is set)", pytrace=False)
    pytest.skip(reason)


def require_docker(reason: str) -> None:
    require("ANYON_REQUIRE_DOCKER", reason)


def require_browser(reason: str) -> None:
    require("ANYON_REQUIRE_BROWSER", reason)
