"""The environment's setup phase of an attempt (docs/ARCHITECTURE.md, "Environments"): what it runs, with which
variables and setup secrets, under which network policy, and the check that no setup secret was left on disk.

Setup secrets are decrypted for every session of an attempt whose environment has them (each decrypt audited): the
setup step gets them in its exec's environment (that exec only); every session masks them in logs and guards pushes
against them. No other step's environment ever holds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from execution.attempts.steps import Step
from execution.environments.selectors import environment_of_attempt, network_policies
from execution.models import Attempt, RunKind
from secrets_app.secret_store import fetch_secret_by_id
from shared.egress.network_policy import NetworkPolicy

MAX_PATHS_SHOWN = 5


@dataclass
class SetupPhase:
    #: The environment's id (its snapshots are looked up by it), None without one.
    environment_id: int | None = None
    script: str = ""
    #: Run instead of the setup script on a start from a snapshot (execution/runner/cached_start.py).
    maintenance: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    #: Setup secret name → value. Never in any exec's environment but the setup step's.
    secrets: dict[str, str] = field(default_factory=dict)
    setup_policy: NetworkPolicy = field(default_factory=NetworkPolicy)
    agent_policy: NetworkPolicy = field(default_factory=NetworkPolicy)

    @property
    def runs(self) -> bool:
        return bool(self.script.strip())

    def step(self) -> Step:
        """``bash -e`` in the workspace: the first failing command fails the setup."""
        return Step(RunKind.SETUP, ["bash", "-e", "-c", self.script], "Setup script")

    def maintenance_step(self) -> Step:
        return Step(RunKind.MAINTENANCE, ["bash", "-e", "-c", self.maintenance], "Maintenance script")

    def setup_environment(self) -> dict[str, str]:
        return {**self.variables, **self.secrets}


def load_setup_phase(*, attempt: Attempt, actor: str) -> SetupPhase:
    environment = environment_of_attempt(attempt)
    if environment is None:
        return SetupPhase()
    setup_policy, agent_policy = network_policies(environment)
    secrets = {
        item.name: fetch_secret_by_id(
            owner=attempt.task.owner,
            secret_id=item.secret_id,
            purpose=f"setup secret {item.name} of {environment.repository}",
            actor=actor,
            attempt_id=attempt.pk,
        ).value
        for item in environment.secrets.all()
    }
    return SetupPhase(
        environment_id=environment.pk,
        script=environment.setup_script,
        maintenance=environment.maintenance_script,
        variables=dict(environment.variables),
        secrets=secrets,
        setup_policy=setup_policy,
        agent_policy=agent_policy,
    )


def written_secrets_message(found: dict[str, list[str]]) -> str:
    parts = []
    for name, paths in sorted(found.items()):
        shown = ", ".join(paths[:MAX_PATHS_SHOWN]) + (
            f" and {len(paths) - MAX_PATHS_SHOWN} more" if len(paths) > MAX_PATHS_SHOWN else ""
        )
        parts.append(f"{name} in {shown}")
    return (
        "The setup script wrote setup secrets to files the agent could read: " + "; ".join(parts) + ". The agent did "
        "not start. Change the setup script so that it keeps them out of files (pass them on, don't store them)."
    )
