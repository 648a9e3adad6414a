"""Writes of environments: keyword-only ``do_*`` actions, each in a transaction, waking the owner's environment
pages on commit. A setup secret's value goes into the secret store (encrypted, audited) and never comes back here."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction

from execution.live import wake_environment_pages
from execution.models import Environment, EnvironmentSecret
from secrets_app.models import Secret
from secrets_app.secret_store import do_revoke_secret, do_store_setup_secret
from shared.egress.network_policy import PRESETS, Bounds, NetworkRule, format_rules, rule_refusal

logger = logging.getLogger(__name__)


def _wake(environment: Environment) -> None:
    wake_environment_pages(environment.owner_id, repository=environment.repository)


@dataclass(frozen=True)
class PhaseNetwork:
    mode: str = "off"
    presets: tuple[str, ...] = ()
    rules: str = ""
    read_only: bool = False


def do_save_environment(
    *,
    owner,
    repository: str,
    setup_script: str,
    maintenance_script: str = "",
    variables: dict[str, str] | None = None,
    setup_network: PhaseNetwork = PhaseNetwork(),
    agent_network: PhaseNetwork = PhaseNetwork(),
) -> Environment:
    """Create or update the owner's environment of ``repository`` (checked values: see ``forms``)."""
    fields = {
        "setup_script": setup_script,
        "maintenance_script": maintenance_script,
        "variables": dict(variables or {}),
    }
    for phase, network in (("setup", setup_network), ("agent", agent_network)):
        fields |= {
            f"{phase}_network_mode": network.mode,
            f"{phase}_network_presets": list(network.presets),
            f"{phase}_network_rules": network.rules,
            f"{phase}_network_read_only": network.read_only,
        }
    with transaction.atomic():
        environment, _ = Environment.objects.select_for_update().update_or_create(
            owner=owner, repository=repository.lower(), defaults=fields
        )
        _wake(environment)
    return environment


def do_add_agent_rule(*, owner, repository: str, line: str) -> Environment:
    """Add one entry (checked by the caller against the operator's bounds) to the agent phase's network policy of the
    owner's environment of ``repository``, making one if there is none; a policy that was "off" becomes "rules"
    (the operator's hosts stay reachable there too)."""
    with transaction.atomic():
        environment, _ = Environment.objects.select_for_update().get_or_create(
            owner=owner, repository=repository.lower()
        )
        lines = [entry.strip() for entry in environment.agent_network_rules.splitlines()]
        if environment.agent_network_mode != "rules":
            environment.agent_network_mode = "rules"
        if line not in lines:
            environment.agent_network_rules = "\n".join([*filter(None, lines), line])
        environment.save(update_fields=["agent_network_mode", "agent_network_rules", "updated_at"])
        _wake(environment)
    return environment


def do_accept_proposed_policy(
    *, owner, repository: str, presets: tuple[str, ...], rules: tuple[NetworkRule, ...], bounds: Bounds
) -> list[str]:
    """Make the setup phase of the owner's environment of ``repository`` (made if there is none) a "rules" policy
    with exactly ``presets`` and ``rules`` (observe mode's proposal), bounded by the operator's ``bounds``: an entry
    they forbid is left out. Returns why each left-out entry was (empty when all were taken)."""
    refused = [(rule, problem) for rule in rules if (problem := rule_refusal(rule, bounds))]
    kept = [rule for rule in rules if rule not in {rule for rule, _ in refused}]
    with transaction.atomic():
        environment, _ = Environment.objects.select_for_update().get_or_create(
            owner=owner, repository=repository.lower()
        )
        environment.setup_network_mode = "rules"
        environment.setup_network_presets = [name for name in presets if name in PRESETS]
        environment.setup_network_rules = format_rules(kept)
        environment.setup_network_read_only = False  # the proposal covers every method the setup used
        environment.save(
            update_fields=[
                "setup_network_mode", "setup_network_presets", "setup_network_rules", "setup_network_read_only",
                "updated_at",
            ]
        )  # fmt: skip
        _wake(environment)
    return [problem for _, problem in refused]


def do_set_setup_secret(*, environment: Environment, name: str, value: str) -> EnvironmentSecret:
    """Store (or replace) the setup secret ``name``: the old value is revoked in the store, the new one encrypted."""
    with transaction.atomic():
        old = EnvironmentSecret.objects.select_for_update().filter(environment=environment, name=name).first()
        secret = do_store_setup_secret(
            owner=environment.owner, value=value, note=f"setup secret {name} of {environment.repository}"
        )
        if old is not None:
            replaced = Secret.objects.defer("value").get(pk=old.secret_id)  # never decrypted here
            old.secret = secret
            old.save(update_fields=["secret"])
            do_revoke_secret(secret=replaced, actor=environment.owner.get_username(), reason="replaced")
            item = old
        else:
            item = EnvironmentSecret.objects.create(environment=environment, name=name, secret=secret)
        _wake(environment)
    logger.info("setup secret %s of environment %s saved", name, environment.pk)
    return item


def do_delete_setup_secret(*, item: EnvironmentSecret, actor: str) -> None:
    """Forget a setup secret: its stored value is revoked (ciphertext dropped) and its name removed."""
    with transaction.atomic():
        environment = item.environment
        secret = Secret.objects.defer("value").get(pk=item.secret_id)  # the revoked row stays for the audit trail
        do_revoke_secret(secret=secret, actor=actor, reason="setup secret deleted")
        item.delete()
        _wake(environment)


def do_delete_environment(*, environment: Environment, actor: str) -> None:
    with transaction.atomic():
        for item in list(environment.secrets.all()):
            do_delete_setup_secret(item=item, actor=actor)
        environment.delete()
        _wake(environment)
