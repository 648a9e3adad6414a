"""The host-side egress proxy of sealed runs: per-attempt UNIX sockets that add credentials and allowlist hosts.

A container without a network reaches the outside only through the sockets the proxy creates in its attempt's
directory: ``api.sock`` (Anthropic API, placeholder swapped for the real credential), ``git.sock`` (git smart HTTP of
one repository, token added), ``proxy.sock`` (``CONNECT`` to allowlisted hosts) and, when the operator enables it,
``github-api.sock`` (the GitHub REST API of that one repository, token added). What ``proxy.sock`` may reach is the
attempt's :class:`NetworkPolicy` within the operator's :class:`Bounds`. This package knows nothing of
Django: the wiring passes a :class:`Grant` per attempt and a :class:`CredentialSource` that returns credentials.
"""

from shared.egress.address_policy import AddressPolicy, Refused, Resolver, address_problem, system_resolver
from shared.egress.attempt_sockets import API_SOCKET, GIT_SOCKET, GITHUB_API_SOCKET, PROXY_SOCKET, SOCKET_NAMES
from shared.egress.control_client import EgressClient, EgressError
from shared.egress.grant import (
    ApiAuth,
    CredentialSource,
    CredentialUses,
    Grant,
    GrantLookup,
    HostPort,
    OnBlocked,
    Service,
)
from shared.egress.limits import Limits
from shared.egress.network_policy import (
    PRESETS,
    Bounds,
    Decision,
    NetworkPolicy,
    NetworkRule,
    decide,
    parse_rules,
    propose_policy,
    rule_refusal,
)
from shared.egress.proxy import EgressProxy
from shared.egress.serve import run, serve

#: Loopback ports the container's bridge (runtime-image/files/anyon-egress-bridge) listens on, per socket.
BRIDGE_PORTS = {API_SOCKET: 18080, GIT_SOCKET: 18081, PROXY_SOCKET: 18082, GITHUB_API_SOCKET: 18083}

__all__ = [
    "API_SOCKET",
    "BRIDGE_PORTS",
    "GITHUB_API_SOCKET",
    "GIT_SOCKET",
    "PRESETS",
    "PROXY_SOCKET",
    "SOCKET_NAMES",
    "AddressPolicy",
    "ApiAuth",
    "Bounds",
    "CredentialSource",
    "CredentialUses",
    "Decision",
    "EgressClient",
    "EgressError",
    "EgressProxy",
    "Grant",
    "GrantLookup",
    "HostPort",
    "Limits",
    "NetworkPolicy",
    "NetworkRule",
    "OnBlocked",
    "Refused",
    "Resolver",
    "Service",
    "address_problem",
    "decide",
    "parse_rules",
    "propose_policy",
    "rule_refusal",
    "run",
    "serve",
    "system_resolver",
]
