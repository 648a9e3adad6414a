"""How a finished exec becomes a run status and an error message (pure: no engine, no database)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings

from execution.claude_events import AgentOutcome
from execution.models import AttemptStatus, RunStatus
from execution.runner.step_report import Commits
from execution.steps import StopReason

#: What Claude Code says when the credential is refused (e.g. "Invalid API key · Please run /login").
CLAUDE_AUTH_ERROR = re.compile(
    r"invalid api key|please run /login|authentication_error|invalid bearer token|oauth token has expired|\b401\b",
    re.IGNORECASE,
)
CONTAINER_GONE = "The container stopped unexpectedly during the step."
EGRESS_DOWN = (
    "The egress proxy of this host stopped during the step, so the run lost its only way out; an operator was alerted."
)


class Stop(Exception):
    """The session ends early with this attempt status and message."""

    def __init__(self, status: str, error: str) -> None:
        super().__init__(error)
        self.status, self.error = status, error


@dataclass
class StepOutcome:
    status: str
    error: str = ""

    @property
    def attempt_status(self) -> str:
        """The attempt's final status when this step ends the session."""
        return {
            RunStatus.SUCCEEDED: AttemptStatus.SUCCEEDED,
            RunStatus.CANCELLED: AttemptStatus.CANCELLED,
            RunStatus.TIMED_OUT: AttemptStatus.TIMED_OUT,
        }.get(self.status, AttemptStatus.FAILED)


@dataclass
class ExecEnd:
    """Everything known when a step's exec stopped producing output."""

    title: str
    exit_code: int | None
    stopped: StopReason | None = None
    #: The error that ended the output stream early (engine gone, connection lost), as text.
    failure: str = ""
    container_gone: bool = False
    agent: AgentOutcome | None = None
    #: The workspace's commits, when the exec was asked to report them and did (execution/runner/step_report.py).
    commits: Commits | None = None


def step_outcome(end: ExecEnd) -> StepOutcome:
    """The rules, in order: the runner's own stop; a broken exec; a container that went away; the exit code; for
    an agent, the CLI's own verdict (an error result, or no result at all)."""
    if end.stopped == StopReason.CANCELLED:
        return StepOutcome(RunStatus.CANCELLED, "Cancelled by the user.")
    if end.stopped == StopReason.EGRESS_DOWN:
        return StepOutcome(RunStatus.FAILED, EGRESS_DOWN)
    if end.stopped == StopReason.TIMED_OUT:
        return StepOutcome(RunStatus.TIMED_OUT, f"Stopped after ANYON_RUN_TIMEOUT ({settings.RUN_TIMEOUT} s).")
    if end.failure:
        return StepOutcome(RunStatus.FAILED, CONTAINER_GONE if end.container_gone else f"exec failed: {end.failure}")
    if end.exit_code is None or end.container_gone:
        return StepOutcome(RunStatus.FAILED, CONTAINER_GONE)
    if end.exit_code != 0:
        return StepOutcome(RunStatus.FAILED, f"{end.title} exited with code {end.exit_code}.")
    if end.agent is not None:
        if end.agent.is_error:
            return StepOutcome(RunStatus.FAILED, f"Claude reported an error: {end.agent.result_text}")
        if not end.agent.result_seen:
            return StepOutcome(RunStatus.FAILED, "Claude Code ended without a result event.")
    return StepOutcome(RunStatus.SUCCEEDED)


def is_auth_failure(errors_text: str) -> bool:
    return bool(CLAUDE_AUTH_ERROR.search(errors_text))
