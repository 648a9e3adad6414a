"""A sealed session's sockets on its host's egress proxy (docs/ARCHITECTURE.md, "Egress")."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

from django.conf import settings

from execution.hosts import egress, network
from execution.models import Attempt, AttemptStatus
from execution.runner.outcomes import Stop
from shared.alerts import AlertKind, do_raise_alert
from shared.egress import EgressError
from shared.egress.network_policy import NetworkPolicy


class SealedEgress:
    def __init__(self, attempt: Attempt, *, claude_kind: str | None, directory: Path) -> None:
        self.attempt, self.directory = attempt, directory
        self.grant = egress.grant_for(attempt, claude_kind=claude_kind)
        self.environment = egress.container_environment(claude_kind=claude_kind)
        self.policy = NetworkPolicy()  # the phase's network policy (an environment's; "off": the operator's hosts)

    def open(self, *, push: bool = False) -> None:
        """Open (or replace) the attempt's sockets; ``push`` lets its git connection push. A proxy that is down
        ends the session with an alert."""
        # The hosts allowed for this attempt hold in every phase and every session of it (a follow-up, a push).
        grant = dataclasses.replace(
            self.grant, git_push=push, network=network.with_allowances(self.attempt, self.policy)
        )
        try:
            egress.client().open(
                grant, self.directory, uid=settings.ANYON_CONTAINER_UID, gid=settings.ANYON_CONTAINER_GID
            )
        except EgressError as exc:
            message = f"The egress proxy is not answering on {settings.ANYON_EGRESS_CONTROL} ({exc})."
            self._alert(message)
            raise Stop(AttemptStatus.FAILED, message + " Sealed runs cannot start until it runs again.") from exc

    def set_policy(self, policy: NetworkPolicy, *, ended_phase: str = "") -> None:
        """Switch the phase's network policy (the setup's, then the agent's); its next request uses it. A policy the
        operator's bounds forbid (or a proxy that does not answer) ends the session with the reason. ``ended_phase``:
        the network record so far is that phase's, stored now (the next phase starts its own)."""
        if ended_phase:
            with contextlib.suppress(EgressError):
                record = egress.fetch_network_record(self.attempt.pk, reset=True)
                network.do_record_network_record(attempt=self.attempt, record=record, phase=ended_phase)
        if policy == self.policy:
            return
        try:
            egress.set_attempt_policy(self.attempt.pk, network.with_allowances(self.attempt, policy))
        except EgressError as exc:
            raise Stop(
                AttemptStatus.FAILED, f"The egress proxy refused the environment's network policy: {exc}"
            ) from exc
        self.policy = policy

    @contextlib.contextmanager
    def pushing(self):
        """Only a push step's own connection may push; the agent's steps may fetch."""
        self.open(push=True)
        try:
            yield
        finally:
            with contextlib.suppress(Stop):
                self.open(push=False)

    def alive(self) -> bool:
        try:
            problem = "" if egress.client().ping() else "no answer to ping"
        except EgressError as exc:
            problem = str(exc)
        if problem:
            self._alert(f"attempt {self.attempt.pk}: the egress proxy stopped answering mid-run ({problem})")
        return not problem

    def close(self, *, phase: str) -> None:
        """Close the sockets and store the network record of this session (``phase``) with the attempt."""
        with contextlib.suppress(EgressError):  # a proxy that is down has no sockets left to close
            record = egress.close_attempt(self.attempt.pk)
            if record is not None:
                network.do_record_network_record(attempt=self.attempt, record=record, phase=phase)

    def allowance_lines(self) -> list[str]:
        """Hosts the owner allowed for this attempt since the last look, added on the proxy now (log lines)."""
        return network.apply_pending_allowances(attempt=self.attempt)

    def block_lines(self) -> list[str]:
        return egress.do_take_unlogged_blocks(attempt=self.attempt)

    def _alert(self, message: str) -> None:
        do_raise_alert(
            kind=AlertKind.EGRESS_PROXY_DOWN,
            message=message,
            attempt=self.attempt,
            user=self.attempt.task.owner,
            dedupe_key=f"egress_proxy_down:{settings.ANYON_WORKER_QUEUE}",
        )
