"""What one attempt may reach, and the two callables through which the wiring supplies credentials and hears refusals.

A :class:`Grant` holds no credential: it can travel over the control socket and sit in logs. Credentials are asked
for at request time through a :class:`CredentialSource`, so the wiring can decrypt (and audit) each use and a
revoked credential stops working on the next request.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from shared.egress.network_policy import NetworkPolicy, is_ip


class Service(enum.StrEnum):
    """Which credential a request needs: the Anthropic API's or the git host's."""

    ANTHROPIC = "anthropic"
    GITHUB = "github"


class ApiAuth(enum.StrEnum):
    """How the Claude CLI sends its credential: an API key (``x-api-key``) or a setup-token (``Bearer``)."""

    API_KEY = "x-api-key"
    BEARER = "bearer"


class CredentialSource(Protocol):
    """Returns the real credential of ``service`` for ``attempt_id`` (raise to refuse the request).

    Called in a worker thread for every request that needs it, so a synchronous, audited database decrypt is fine.
    """

    def __call__(self, attempt_id: str, service: Service) -> str: ...


class OnBlocked(Protocol):
    """Told about a refused request; ``reason`` reads after the address (``"is not on the allowlist"``).

    ``method`` and ``path`` are given where the proxy saw them (a plain-HTTP request on ``proxy.sock``)."""

    def __call__(
        self, attempt_id: str, host: str, port: int, reason: str, *, method: str | None = None, path: str | None = None
    ) -> None: ...


class CredentialUses(Protocol):
    """Told, when a cached credential is dropped, how many requests it served since its (recorded) decrypt."""

    def __call__(self, attempt_id: str, service: Service, uses: int) -> None: ...


class GrantLookup(Protocol):
    """Returns the grant of ``attempt_id`` when a control ``open`` names only the attempt."""

    def __call__(self, attempt_id: str) -> Grant: ...


_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*$")


@dataclass(frozen=True, order=True)
class HostPort:
    """A lower-cased host name or IP literal (IPv6 without brackets) and a port."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, default_port: int = 443) -> HostPort:
        """``example.com``, ``example.com:8443``, ``127.0.0.1:9``, ``[::1]:9``; raises ValueError otherwise."""
        text = text.strip()
        parts = urlsplit(f"//{text}")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port in {text!r}") from exc
        host = (parts.hostname or "").rstrip(".").lower()
        if parts.path or parts.query or parts.username or not host:
            raise ValueError(f"not a host[:port]: {text!r}")
        if not is_ip(host) and not _HOST.match(host):
            raise ValueError(f"not a host name: {text!r}")
        return cls(host, port if port is not None else default_port)

    @classmethod
    def of_url(cls, url: str) -> HostPort:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        return cls(parts.hostname.rstrip(".").lower(), parts.port or (443 if parts.scheme == "https" else 80))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _host_ports(entries: Iterable[str | HostPort]) -> frozenset[HostPort]:
    return frozenset(e if isinstance(e, HostPort) else HostPort.parse(e) for e in entries)


@dataclass(frozen=True)
class Grant:
    """The facts of one attempt the proxy enforces.

    ``anthropic_url``/``git_url`` are upstream base URLs (``https://api.anthropic.com``, ``https://github.com``);
    ``None`` leaves that socket out. ``git_repository`` is the one repository path git may use (``owner/repo``,
    with or without ``.git``). ``allowed`` lists the ``host:port`` a ``CONNECT`` may reach (port 443 when left out).
    ``internal`` lists the exact ``host:port`` that may resolve to loopback, private or link-local addresses
    (a GHES on a private network; the tests' 127.0.0.1 fakes); every other upstream must be public.
    ``placeholder`` is the fake credential the container's CLI sends; the proxy only swaps exactly that value.
    ``git_push`` opens ``git-receive-pack`` (the runner's push window; off otherwise), and then only
    ``refs/heads/<git_push_branch>`` may be created or updated (``shared/egress/receive_pack.py``).
    ``github_api_url`` (the operator's opt-in, ``None`` by default) opens the GitHub REST API of ``git_repository``
    only (``/repos/<owner>/<repo>…``), with the token added by the proxy: reads only, unless ``github_api_write``
    (``shared/egress/github_api_policy.py``). ``api_remote_fetch`` (the operator's opt-in) lets Messages bodies ask
    Anthropic to fetch URLs or reach MCP servers (``shared/egress/anthropic_policy.py``). ``network`` is what
    ``proxy.sock`` may reach beyond ``allowed`` (``shared/egress/network_policy.py``; ``None``: nothing more, tunnels
    only); the control socket can replace it while the attempt runs.
    """

    attempt_id: str
    placeholder: str = "anyon-egress-placeholder"
    anthropic_url: str | None = None
    api_auth: ApiAuth = ApiAuth.API_KEY
    git_url: str | None = None
    git_repository: str | None = None
    git_push: bool = False
    git_push_branch: str | None = None
    github_api_url: str | None = None
    github_api_write: bool = False
    api_remote_fetch: bool = False
    allowed: frozenset[HostPort] = field(default_factory=frozenset)
    internal: frozenset[HostPort] = field(default_factory=frozenset)
    network: NetworkPolicy | None = None

    def __post_init__(self) -> None:
        if isinstance(self.network, dict):
            object.__setattr__(self, "network", NetworkPolicy.from_json(self.network))
        object.__setattr__(self, "attempt_id", str(self.attempt_id))
        object.__setattr__(self, "api_auth", ApiAuth(self.api_auth))
        object.__setattr__(self, "allowed", _host_ports(self.allowed))
        object.__setattr__(self, "internal", _host_ports(self.internal))
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.attempt_id):
            raise ValueError(f"bad attempt id {self.attempt_id!r}")
        if len(self.placeholder) < 8 or not self.placeholder.isprintable() or " " in self.placeholder:
            raise ValueError("the placeholder must be at least 8 printable characters without spaces")
        for url in (self.anthropic_url, self.git_url, self.github_api_url):
            if url is not None:
                HostPort.of_url(url)
        if self.github_api_url is not None and self.git_url is None:
            raise ValueError("the GitHub API is granted for the run's repository: git_url and git_repository too")
        if self.git_url is not None:
            repo = (self.git_repository or "").strip("/")
            if not _REPO.match(repo) or any(part in (".", "..") for part in repo.split("/")):
                raise ValueError(f"bad git repository path {self.git_repository!r}")
            object.__setattr__(self, "git_repository", repo.removesuffix(".git"))
        branch = self.git_push_branch
        if branch is not None and (not _REPO.match(branch) or any(p in (".", "..") for p in branch.split("/"))):
            raise ValueError(f"bad push branch {branch!r}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["api_auth"] = self.api_auth.value
        data["allowed"] = sorted(str(h) for h in self.allowed)
        data["internal"] = sorted(str(h) for h in self.internal)
        data["network"] = self.network.to_json() if self.network is not None else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Grant:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown grant fields: {sorted(unknown)}")
        return cls(**data)
