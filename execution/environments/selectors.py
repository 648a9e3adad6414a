"""Reads of environments. Scoped by owner: another user's environment is simply not found. Setup secrets are read as
names and dates only; their values come out of the secret store (audited) in the runner alone."""

from __future__ import annotations

from django.db.models import QuerySet

from execution.environments.policy import phase_policy
from execution.git.repo_urls import repo_owner_and_name
from execution.models import Attempt, Environment, EnvironmentSecret
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
