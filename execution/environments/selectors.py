"""Reads of environments. Scoped by owner: another user's environment is simply not found. Setup secrets are read as
names and dates only; their values come out of the secret store (audited) in the runner alone."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from execution.environments.policy import phase_policy
from execution.git.repo_urls import repo_owner_and_name
from execution.models import (
    ACTIVE_STATUSES,
    Attempt,
    AttemptStatus,
    Environment,
    EnvironmentSecret,
    Run,
    RunKind,
    RunStatus,
)
from shared.egress.network_policy import NetworkPolicy


def repository_of(repo_url: str) -> str:
    """``owner/name`` of a task's repository URL, lower-cased: how environments are keyed."""
    owner, name = repo_owner_and_name(repo_url)
    return f"{owner}/{name}".lower()


def environments_for(*, user) -> QuerySet[Environment]:
    return Environment.objects.filter(owner=user)


def environment_for(*, user, repository: str) -> Environment:
    """The user's environment of ``repository``, or ``Environment.DoesNotExist``."""
    return Environment.objects.get(owner=user, repository=repository.lower())


def setup_secret_for(*, user, environment_id: int, secret_id: int) -> EnvironmentSecret:
    """One setup secret of the user's environment, or ``EnvironmentSecret.DoesNotExist`` (another user's too)."""
    return EnvironmentSecret.objects.select_related("environment").get(
        pk=secret_id, environment_id=environment_id, environment__owner=user
    )


def setup_secrets(*, environment: Environment) -> list[EnvironmentSecret]:
    return list(environment.secrets.all())


def environment_of_attempt(attempt: Attempt) -> Environment | None:
    """The environment the attempt's owner keeps for its repository, if any."""
    task = attempt.task
    return Environment.objects.filter(owner_id=task.owner_id, repository=repository_of(task.repo_url)).first()


def network_policies(environment: Environment | None) -> tuple[NetworkPolicy, NetworkPolicy]:
    """The setup phase's and the agent phase's network policy ("off" for both without an environment)."""
    if environment is None:
        return NetworkPolicy(), NetworkPolicy()
    return phase_policy(environment, "setup"), phase_policy(environment, "agent")


#: How many of the user's latest attempts are looked through for a repository's recent runs.
RECENT_SCAN = 200


@dataclass(frozen=True)
class RecentRun:
    """One of the repository's recent attempts as the environment page shows it: ``setup`` is ``queued``,
    ``running``, ``failed``, ``cached`` (started from a snapshot), ``done``, ``none`` (no setup step) or ``waiting``
    (not there yet); ``agent`` is ``running`` while an agent step runs."""

    attempt: Attempt
    setup: str
    agent_running: bool


def recent_runs(*, user, repository: str, limit: int = 8) -> list[RecentRun]:
    """The user's latest attempts on ``repository`` (another user's are never read), newest first, with their
    setup state."""
    name = repository.lower()
    attempts = [
        attempt
        for attempt in Attempt.objects.filter(task__owner=user, task__repo_url__icontains=name)
        .select_related("task")
        .order_by("-created_at", "-pk")[:RECENT_SCAN]
        if repository_of(attempt.task.repo_url) == name
    ][:limit]
    latest: dict[tuple[int, str], str] = {}
    runs = Run.objects.filter(attempt__in=attempts, kind__in=[RunKind.SETUP, RunKind.AGENT]).order_by("pk")
    for attempt_id, kind, status in runs.values_list("attempt_id", "kind", "status"):
        latest[(attempt_id, kind)] = status  # the last run of each kind wins
    rows = []
    for attempt in attempts:
        setup_run = latest.get((attempt.pk, RunKind.SETUP))
        if attempt.status == AttemptStatus.QUEUED:
            setup = "queued"
        elif attempt.from_snapshot_of is not None:
            setup = "cached"
        elif setup_run == RunStatus.RUNNING:
            setup = "running"
        elif setup_run is not None:
            setup = "done" if setup_run == RunStatus.SUCCEEDED else "failed"
        elif attempt.status in ACTIVE_STATUSES and (attempt.pk, RunKind.AGENT) not in latest:
            setup = "waiting"
        else:
            setup = "none"
        agent_running = latest.get((attempt.pk, RunKind.AGENT)) == RunStatus.RUNNING
        rows.append(RecentRun(attempt, setup, agent_running and attempt.status in ACTIVE_STATUSES))
    return rows
