"""Observe mode's proposed setup policy, read back: the latest attempt of a user on a repository whose setup ran in
observe mode, its proposal (the smallest policy covering every host the setup used) as entries, and the diff of
those entries against the environment's current setup policy. The stored proposal came from the egress proxy's
record of what the agent's container asked for: its host text is the attacker's, so it is parsed again here (a line
that is not a valid entry is left out) and only ever shown escaped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from execution.environments.policy import phase_policy
from execution.environments.selectors import repository_of
from execution.models import Attempt, Environment
from shared.egress.network_policy import PRESETS, NetworkPolicy, NetworkRule, parse_rule

#: The phase name the runner stores the setup's network record under (``session._run_setup``).
SETUP_PHASE = "clone and setup"
#: How many of the user's attempts with a setup proposal are looked through for the repository's latest.
SCAN = 200


@dataclass(frozen=True)
class Proposal:
    attempt: Attempt
    at: datetime
    presets: tuple[str, ...]
    rules: tuple[NetworkRule, ...]

    @property
    def rules_text(self) -> str:
        return "".join(f"{rule}\n" for rule in self.rules)


@dataclass(frozen=True)
class DiffLine:
    sign: str  # "+", "-" or " "
    entry: str


def entries(presets, rules) -> list[str]:
    """A policy's entries as the page shows them: ``preset: name`` lines, then one line a rule."""
    return [f"preset: {name}" for name in presets] + [str(rule) for rule in rules]


def _parsed(stored) -> tuple[tuple[str, ...], tuple[NetworkRule, ...]]:
    """Presets Anyon knows, and each rule that parses again as a typed entry would; anything else is left out."""
    policy = stored.get("policy") if isinstance(stored, dict) else None
    policy = policy if isinstance(policy, dict) else {}
    presets = policy.get("presets") if isinstance(policy.get("presets"), list) else []
    rules: list[NetworkRule] = []
    for data in policy.get("rules") if isinstance(policy.get("rules"), list) else []:
        try:
            rule = parse_rule(str(NetworkRule.from_json(data)))
        except (AttributeError, TypeError, ValueError):
            continue
        if rule not in rules:
            rules.append(rule)
    return tuple(dict.fromkeys(p for p in presets if isinstance(p, str) and p in PRESETS)), tuple(rules)


def latest_setup_proposal(*, user, repository: str) -> Proposal | None:
    """The setup-phase proposal of ``user``'s latest attempt on ``repository`` whose setup ran in observe mode."""
    attempts = (
        Attempt.objects.filter(task__owner=user, network_record__proposals__has_key=SETUP_PHASE)
        .select_related("task")
        .order_by("-created_at", "-pk")[:SCAN]
    )
    for attempt in attempts:
        if repository_of(attempt.task.repo_url) != repository.lower():
            continue
        parsed = _parsed(attempt.network_record["proposals"][SETUP_PHASE])
        return Proposal(attempt, attempt.finished_at or attempt.created_at, *parsed)
    return None


def diff(proposal: Proposal, environment: Environment | None) -> list[DiffLine]:
    """The proposal against the current setup policy: kept lines, ``+`` lines it adds, ``-`` lines it removes."""
    current = phase_policy(environment, "setup") if environment is not None else NetworkPolicy()
    old = entries(current.presets, current.rules) if current.mode == "rules" else []
    new = entries(proposal.presets, proposal.rules)
    lines = [DiffLine(" " if entry in old else "+", entry) for entry in new]
    return lines + [DiffLine("-", entry) for entry in old if entry not in new]
