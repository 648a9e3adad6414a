"""A sealed attempt's network from the Django side: "allow for this attempt" and the network record it keeps
(docs/ARCHITECTURE.md, "Network policies").

The web only writes what the owner asked for (:func:`do_allow_host_for_attempt`, checked against the operator's
bounds at once); the worker running the attempt, on the attempt's Docker host, adds the rule on that host's egress
proxy (:func:`apply_pending_allowances`, about once a second), since only it reaches that proxy's control socket.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from execution.attempts.selectors import attempt_is_working
from execution.environments.proposals import SETUP_PHASE
from execution.hosts import egress
from execution.live import wake_environment_pages
from execution.logs.writer import wake_attempt_viewers
from execution.models import AllowanceState, Attempt, NetworkAllowance
from shared.egress import EgressError, HostPort, NetworkPolicy, NetworkRule, address_problem, rule_refusal

#: Examples of requests kept per host in the stored record (the proxy keeps up to 20 per phase).
STORED_EXAMPLES = 5


class AllowRefused(Exception):
    """Why a host may not be allowed for this attempt, as a sentence for the page."""


def user_hosts_note() -> str:
    """What the page says when users may not add hosts: who can."""
    return (
        "This installation does not let users add hosts (ANYON_EGRESS_USER_HOSTS is off): ask an operator (a staff "
        "member) to add it to ANYON_EGRESS_ALLOW or to a preset."
    )


def may_allow(*, attempt: Attempt, user) -> bool:
    """Whether the page offers "allow for this attempt": to its owner, while it works, where users may add hosts."""
    return (
        egress.sealed()
        and settings.ANYON_EGRESS_USER_HOSTS
        and attempt.task.owner_id == user.pk
        and attempt_is_working(attempt)
    )


def allow_refusal(host: str, port: int) -> str:
    """Why the operator's bounds or address policy forbid ``host:port`` for "allow for this attempt" ("" if not)."""
    if not egress.sealed():
        return "Only sealed runs go through the egress proxy: there is nothing to allow."
    try:
        rule = NetworkRule(host, port)
    except ValueError as exc:
        return f"Not a host to allow: {exc}."
    refusal = rule_refusal(rule, egress.bounds())
    if refusal:
        return f"The operator does not allow {host}:{port}: {refusal}."
    try:
        address = ipaddress.ip_address(rule.host)
    except ValueError:
        return ""  # a name: the proxy checks each address it resolves to when the agent connects
    target = HostPort(rule.host, port)
    internal = {HostPort.parse(entry) for entry in settings.ANYON_EGRESS_ALLOW_INTERNAL}
    problem = address_problem(address, frozenset())
    if problem and target not in internal:
        return (
            f"{target} is {problem}: the egress proxy never connects there unless the operator lists it in "
            "ANYON_EGRESS_ALLOW_INTERNAL."
        )
    return ""


def do_allow_host_for_attempt(*, attempt: Attempt, user, host: str, port: int) -> NetworkAllowance:
    """The owner lets the running attempt reach ``host:port`` until it ends. Recorded either way (who asked for
    what); raises :class:`AllowRefused` when it may not be, else the worker adds it on its egress proxy."""
    if attempt.task.owner_id != user.pk:  # views find the attempt as its owner's; staff never act for another
        raise PermissionError("only the attempt's owner may allow hosts for it")
    host, port = host.strip()[:255], int(port)
    if not 0 < port < 65536:
        raise AllowRefused(f"Not a port: {port}.")
    refusal = allow_refusal(host, port)
    if not refusal and not attempt_is_working(attempt):
        refusal = "The attempt is not running any more: a host can be allowed only while it runs."
    with transaction.atomic():
        if not refusal:
            rule = NetworkRule(host, port)
            host = rule.host
            found = NetworkAllowance.objects.filter(
                attempt=attempt, host=host, port=port, state__in=[AllowanceState.PENDING, AllowanceState.APPLIED]
            ).first()
            if found is not None:
                return found
        allowance = NetworkAllowance.objects.create(
            attempt=attempt,
            host=host,
            port=port,
            allowed_by=user,
            state=AllowanceState.REFUSED if refusal else AllowanceState.PENDING,
            detail=refusal[:300],
            decided_at=timezone.now() if refusal else None,
        )
        wake_attempt_viewers(attempt.pk)
    if refusal:
        raise AllowRefused(refusal)
    return allowance


def do_add_host_to_repository_policy(*, attempt: Attempt, user, host: str, port: int) -> NetworkAllowance | None:
    """ "Add to this repository's policy": ``host:port`` joins the agent phase's policy of the owner's environment of
    the attempt's repository (its later runs reach it), and is allowed for this attempt at once. Raises
    :class:`AllowRefused` (nothing saved) when the operator forbids it."""
    from execution.environments.actions import do_add_agent_rule
    from execution.environments.selectors import repository_of

    if attempt.task.owner_id != user.pk:
        raise PermissionError("only the attempt's owner may change its repository's policy")
    refusal = allow_refusal(host, int(port))
    if refusal:
        raise AllowRefused(refusal)
    rule = NetworkRule(host.strip(), int(port))
    do_add_agent_rule(owner=user, repository=repository_of(attempt.task.repo_url), line=str(rule))
    if not attempt_is_working(attempt):
        return None
    return do_allow_host_for_attempt(attempt=attempt, user=user, host=rule.host, port=int(port))


def do_decide_allowance(*, allowance: NetworkAllowance, applied: bool, detail: str = "") -> None:
    with transaction.atomic():
        NetworkAllowance.objects.filter(pk=allowance.pk, state=AllowanceState.PENDING).update(
            state=AllowanceState.APPLIED if applied else AllowanceState.REFUSED,
            detail=detail[:300],
            decided_at=timezone.now(),
        )
        wake_attempt_viewers(allowance.attempt_id)


def apply_pending_allowances(*, attempt: Attempt) -> list[str]:
    """The worker's side: add each pending allowance on this host's egress proxy; returns log lines."""
    lines = []
    for allowance in NetworkAllowance.objects.filter(attempt=attempt, state=AllowanceState.PENDING).select_related(
        "allowed_by"
    ):
        who = allowance.allowed_by.get_username() if allowance.allowed_by else "a deleted user"
        target = HostPort(allowance.host, allowance.port)
        try:
            egress.allow_for_attempt(attempt.pk, NetworkRule(allowance.host, allowance.port))
        except (EgressError, ValueError) as exc:
            do_decide_allowance(allowance=allowance, applied=False, detail=f"The egress proxy refused it: {exc}")
            lines.append(f"network: {who} asked to allow {target} for this attempt; the egress proxy refused: {exc}")
            continue
        do_decide_allowance(allowance=allowance, applied=True)
        lines.append(f"network: {who} allowed {target} for this attempt")
    return lines


def with_allowances(attempt: Attempt, policy: NetworkPolicy | None = None) -> NetworkPolicy | None:
    """``policy`` and the hosts the owner allowed for this attempt before (a follow-up's or a pull request's
    session opens a new grant: what was allowed for the attempt holds there too)."""
    for host, port in NetworkAllowance.objects.filter(attempt=attempt, state=AllowanceState.APPLIED).values_list(
        "host", "port"
    ):
        policy = (policy or NetworkPolicy()).with_rule(NetworkRule(host, port))
    return policy


def merge_records(stored: dict, record: dict, *, phase: str) -> dict:
    """The attempt's stored network record with one more session's (or phase's) added: per host the sums, the
    refusals counted together, a few examples kept. Bounded like the proxy's record it sums."""
    hosts = {(h["host"], h["port"], h["credential"]): dict(h) for h in stored.get("hosts", [])}
    for use in record.get("hosts", []):
        key = (use["host"], use["port"], use.get("credential", "none"))
        into = hosts.setdefault(
            key,
            {"host": key[0], "port": key[1], "credential": key[2], "requests": 0, "tunnels": 0, "bytes_in": 0,
             "bytes_out": 0, "blocked": 0, "examples": []},
        )  # fmt: skip
        for field in ("requests", "tunnels", "bytes_in", "bytes_out", "blocked"):
            into[field] += int(use.get(field) or 0)
        for example in use.get("examples", []):
            if len(into["examples"]) < STORED_EXAMPLES and example not in into["examples"]:
                into["examples"].append(example)
    blocked = {
        (b["host"], b["port"], b.get("method"), b.get("path"), b["reason"]): dict(b) for b in stored.get("blocked", [])
    }
    for block in record.get("blocked", []):
        key = (block["host"], block["port"], block.get("method"), block.get("path"), block["reason"])
        if key in blocked:
            blocked[key]["count"] += int(block.get("count") or 1)
        elif len(blocked) < 100:
            blocked[key] = {**block, "count": int(block.get("count") or 1)}
    phases = [*stored.get("phases", []), phase][-20:]
    merged = {
        "hosts": sorted(hosts.values(), key=lambda h: (h["host"], h["port"], h["credential"]))[:200],
        "blocked": list(blocked.values()),
        "phases": phases,
    }
    proposals = dict(stored.get("proposals", {}))
    if record.get("proposal"):  # observe mode: the smallest policy covering what this phase used
        proposals[phase] = record["proposal"]
    if proposals:
        merged["proposals"] = proposals
    return merged


def do_record_network_record(*, attempt: Attempt, record: dict, phase: str) -> None:
    """Store what the egress proxy recorded for one session (or phase) of the attempt with it."""
    with transaction.atomic():
        locked = Attempt.objects.select_for_update().only("pk", "network_record").get(pk=attempt.pk)
        merged = merge_records(locked.network_record or {}, record, phase=phase)
        Attempt.objects.filter(pk=attempt.pk).update(network_record=merged)
        attempt.network_record = merged
        wake_attempt_viewers(attempt.pk)
        if record.get("proposal") and phase == SETUP_PHASE:  # the environment page shows the new proposal
            owner_id = Attempt.objects.filter(pk=attempt.pk).values_list("task__owner_id", flat=True).get()
            wake_environment_pages(owner_id)
