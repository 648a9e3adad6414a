"""Sealed runs, the Django side of the egress proxy (``shared/egress``; docs/ARCHITECTURE.md, "Egress").

The worker builds each attempt's :class:`Grant` (what it may reach) and opens it on its host's proxy; the proxy
process asks :func:`credential_for` for a credential at each request (an audited decrypt) and reports refusals
through :func:`record_block`.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import F

from execution.attempts.selectors import attempt_is_working
from execution.git.repo_urls import repo_owner_and_name
from execution.logs.writer import wake_attempt_viewers
from execution.models import Attempt, EgressBlock
from secrets_app.errors import SecretError, SecretUndecryptable
from secrets_app.key_rotation import reload_secret_key
from secrets_app.models import Kind, Provider
from secrets_app.secret_store import do_note_secret_uses, fetch_secret
from secrets_app.selectors import GITHUB_PRECEDENCE
from shared.alerts import AlertKind, do_raise_alert
from shared.credential_mode import CredentialMode
from shared.egress import (
    API_SOCKET,
    BRIDGE_PORTS,
    GIT_SOCKET,
    GITHUB_API_SOCKET,
    PROXY_SOCKET,
    ApiAuth,
    Bounds,
    EgressClient,
    Grant,
    HostPort,
    Limits,
    NetworkPolicy,
    NetworkRule,
    Service,
)

logger = logging.getLogger(__name__)

#: What the CLI inside a sealed container holds instead of a credential; the proxy swaps exactly this value.
PLACEHOLDER = "anyon-sealed-placeholder"
CLAUDE_KINDS = (Kind.OAUTH_TOKEN, Kind.API_KEY)


def sealed() -> bool:
    return settings.ANYON_CREDENTIAL_MODE == CredentialMode.SEALED


def client() -> EgressClient:
    return EgressClient(settings.ANYON_EGRESS_CONTROL, timeout=5)


def grant_for(attempt: Attempt, *, claude_kind: str | None, network: NetworkPolicy | None = None) -> Grant:
    """The Anthropic API (when the session runs the agent), git of the task's own repository on the configured
    GitHub host (pushes: only the attempt's branch, only in a push window), its REST API when the operator enables
    it, the hosts the operator allows, and what ``network`` allows within the operator's bounds (``None``: only
    those hosts, by ``CONNECT``)."""
    owner, repo = repo_owner_and_name(attempt.task.repo_url)
    return Grant(
        attempt_id=str(attempt.pk),
        placeholder=PLACEHOLDER,
        anthropic_url=settings.ANYON_ANTHROPIC_API_URL if claude_kind else None,
        api_auth=ApiAuth.BEARER if claude_kind == Kind.OAUTH_TOKEN else ApiAuth.API_KEY,
        git_url=settings.ANYON_GITHUB_URL,
        git_repository=f"{owner}/{repo}",
        git_push_branch=attempt.branch or None,  # pushable only in the push window the runner opens (git_push)
        github_api_url=settings.ANYON_GITHUB_API_URL if settings.ANYON_AGENT_GITHUB_API else None,
        github_api_write=settings.ANYON_AGENT_GITHUB_API_WRITE,
        api_remote_fetch=settings.ANYON_AGENT_API_REMOTE_FETCH,
        allowed=settings.ANYON_EGRESS_ALLOW,
        internal=settings.ANYON_EGRESS_ALLOW_INTERNAL,
        network=network,
    )


def bounds() -> Bounds:
    """The operator's limits on every network policy, given to the proxy process."""
    return Bounds.of(
        allow=settings.ANYON_EGRESS_ALLOW, deny=settings.ANYON_EGRESS_DENY, user_hosts=settings.ANYON_EGRESS_USER_HOSTS
    )


def set_attempt_policy(attempt_id: int | str, policy: NetworkPolicy) -> NetworkPolicy:
    """Replace a running attempt's network policy (setup phase → agent phase); its next request uses it.
    Raises EgressError (with the reason) when the operator's bounds forbid a rule of it."""
    return client().set_policy(attempt_id, policy)


def allow_for_attempt(attempt_id: int | str, rule: NetworkRule) -> NetworkPolicy:
    """ "Allow for this attempt": one more rule until the attempt ends (EgressError, why: the operator forbids it)."""
    return client().allow(attempt_id, rule)


def fetch_network_record(attempt_id: int | str, *, reset: bool = False) -> dict[str, Any]:
    """The attempt's network record (per host: requests, tunnels, bytes, credential added, refusals; in observe mode
    a proposed policy), to store at the end of a phase (``reset``: start the next phase's) or of the attempt."""
    return client().record(attempt_id, reset=reset)


def close_attempt(attempt_id: int | str) -> dict[str, Any] | None:
    """Close the attempt's sockets on the proxy; returns its last network record (None: it was not open)."""
    return client().command({"op": "close", "attempt": str(attempt_id)}).get("record")


def container_environment(*, claude_kind: str | None) -> dict[str, str]:
    """What a sealed container is told (visible in ``docker inspect`` by design: no value here is a secret)."""
    api, git, proxy = (f"http://127.0.0.1:{BRIDGE_PORTS[name]}" for name in (API_SOCKET, GIT_SOCKET, PROXY_SOCKET))
    env = {
        # git speaks plain HTTP to the bridge; the proxy speaks TLS to GitHub and adds the token there.
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"url.{git}/.insteadOf",
        "GIT_CONFIG_VALUE_0": settings.ANYON_GITHUB_URL.rstrip("/") + "/",
        "HTTPS_PROXY": proxy,
        "HTTP_PROXY": proxy,
        "https_proxy": proxy,
        "http_proxy": proxy,
        "NO_PROXY": "127.0.0.1,localhost",
        "ANYON_EGRESS_LISTEN": "all",  # the bridge listens before the sockets exist (runtime-image/files/…-bridge)
        "no_proxy": "127.0.0.1,localhost",
    }
    if settings.ANYON_AGENT_GITHUB_API:
        env["GITHUB_API_URL"] = f"http://127.0.0.1:{BRIDGE_PORTS[GITHUB_API_SOCKET]}"
    if claude_kind:
        env["ANTHROPIC_BASE_URL"] = api
        env["CLAUDE_CODE_OAUTH_TOKEN" if claude_kind == Kind.OAUTH_TOKEN else "ANTHROPIC_API_KEY"] = PLACEHOLDER
    return env


# --- called in the proxy process ---------------------------------------------------------------------------------
def credential_for(attempt_id: str, service: Service) -> str:
    """The real credential for one request of a working attempt (decrypted now, recorded as that attempt's)."""
    close_old_connections()
    attempt = Attempt.objects.select_related("task__owner").get(pk=int(attempt_id))
    if not attempt_is_working(attempt):
        raise PermissionError(f"attempt {attempt_id} is not running")
    provider, kinds = (
        (Provider.CLAUDE, CLAUDE_KINDS) if service == Service.ANTHROPIC else (Provider.GITHUB, GITHUB_PRECEDENCE)
    )

    def fetch() -> str:
        return fetch_secret(
            owner=attempt.task.owner,
            provider=provider,
            kinds=kinds,
            purpose=f"egress proxy: {service.value} requests",
            actor=_actor(),
            attempt_id=attempt.pk,
        ).value

    try:
        try:
            return fetch()
        except SecretUndecryptable:
            if not reload_secret_key():  # the key was rotated under this process: the settings file has the new one
                raise
            return fetch()
    except SecretUndecryptable:
        _refuse_undecryptable(attempt, service)
        raise  # never anonymous instead: git would ask for a user name and the run would fail for no clear reason
    except SecretError:
        if service == Service.GITHUB:
            return ""  # as in mounted mode: without a GitHub credential, git goes out anonymously (public repos)
        raise


def _actor() -> str:
    return f"egress:{socket.gethostname()}"


def limits() -> Limits:
    return Limits(
        max_connections=settings.ANYON_EGRESS_MAX_CONNECTIONS,
        requests_per_second=settings.ANYON_EGRESS_REQUESTS_PER_SECOND,
        request_burst=settings.ANYON_EGRESS_REQUEST_BURST,
        head_timeout=settings.ANYON_EGRESS_HEAD_TIMEOUT,
        idle_timeout=settings.ANYON_EGRESS_IDLE_TIMEOUT,
        credential_ttl=settings.ANYON_EGRESS_CREDENTIAL_TTL,
    )


def record_credential_uses(attempt_id: str, service: Service, uses: int) -> None:
    """How many requests one decrypt served (the proxy keeps it ``ANYON_EGRESS_CREDENTIAL_TTL`` seconds)."""
    close_old_connections()
    provider = Provider.CLAUDE if service == Service.ANTHROPIC else Provider.GITHUB
    do_note_secret_uses(attempt_id=int(attempt_id), provider=provider, actor=_actor(), uses=uses)


def _refuse_undecryptable(attempt: Attempt, service: Service) -> None:
    """The proxy's key does not decrypt the credential: the attempt's log says so (as a refusal) and an operator is
    alerted; the request is refused."""
    what = "Anthropic" if service == Service.ANTHROPIC else "GitHub"
    url = settings.ANYON_ANTHROPIC_API_URL if service == Service.ANTHROPIC else settings.ANYON_GITHUB_URL
    target = HostPort.of_url(url)
    do_raise_alert(
        kind=AlertKind.SECRET_LOOKUP_FAILED,
        message=f"attempt {attempt.pk}: the egress proxy on {socket.gethostname()} cannot decrypt the stored {what} "
        f"credential: its ANYON_SECRET_KEY is not the store's key and {settings.ANYON_ENV_FILE} has no other "
        "(docs/RUNBOOK.md, Rotating the secret key)",
        attempt=attempt,
        user=attempt.task.owner,
        dedupe_key=f"secret_lookup_failed:egress:{attempt.pk}:{service.value}",
    )
    do_record_egress_block(
        attempt_id=attempt.pk,
        host=target.host,
        port=target.port,
        reason=f"refused: the egress proxy cannot decrypt your stored {what} credential (its secret key is not the "
        "store's); an operator was alerted",
    )


def record_block(
    attempt_id: str, host: str, port: int, reason: str, *, method: str | None = None, path: str | None = None
) -> None:
    close_old_connections()
    do_record_egress_block(attempt_id=int(attempt_id), host=host, port=port, reason=reason, method=method, path=path)


#: Distinct refusals itemised per attempt (each is one row and one log line); past it, further new hosts count on one
#: "other hosts" row. A repeat of an itemised refusal only counts up. Bounded whatever an agent tries.
MAX_BLOCK_ROWS = 100
OVERFLOW_HOST = "(other hosts)"


def do_record_egress_block(
    *, attempt_id: int, host: str, port: int, reason: str, method: str | None = None, path: str | None = None
) -> None:
    """Record one refusal: a new row (and, later, a log line) for a host, port, request and reason not seen before
    in this attempt; a count for a repeat; past ``MAX_BLOCK_ROWS`` rows, a count on the attempt's overflow row.
    ``method`` and ``path``: where the proxy saw them (plain HTTP), printable characters only."""
    host, reason = host[:255], reason[:200]
    method = _printable(method or "")[:16]
    path = _printable(path or "")[:200] if method else ""
    with transaction.atomic():
        Attempt.objects.select_for_update().only("pk").get(pk=attempt_id)  # one recorder of this attempt at a time
        blocks = EgressBlock.objects.filter(attempt_id=attempt_id)
        if blocks.filter(host=host, port=port, reason=reason, method=method, path=path).update(count=F("count") + 1):
            return  # a repeat: counted, nothing new to show
        if blocks.count() >= MAX_BLOCK_ROWS:
            updated = blocks.filter(host=OVERFLOW_HOST).update(count=F("count") + 1)
            if updated:
                return
            host, port, method, path = OVERFLOW_HOST, 0, "", ""
            reason = f"more hosts were refused; only the first {MAX_BLOCK_ROWS} are itemised (the page counts them all)"
        EgressBlock.objects.create(attempt_id=attempt_id, host=host, port=port, reason=reason, method=method, path=path)
        wake_attempt_viewers(attempt_id)


def _printable(text: str) -> str:
    """What the agent sent, safe to show: control characters (a hostile request line) become ``?``."""
    return "".join(c if c.isprintable() else "?" for c in text)


def do_take_unlogged_blocks(*, attempt: Attempt) -> list[str]:
    """The refusals not yet in the attempt's log, as log lines; marked logged."""
    with transaction.atomic():
        blocks = list(EgressBlock.objects.select_for_update().filter(attempt=attempt, logged=False))
        EgressBlock.objects.filter(pk__in=[b.pk for b in blocks]).update(logged=True)
    return [str(block) for block in blocks]
