"""How a finished exec becomes a run status and an error message (pure: no Django, no engine, no database; the
contract "The runner's pure rules" in pyproject.toml keeps it so)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from execution.logs.claude_events import AgentOutcome
from execution.runner.step_report import Commits

#: What Claude Code says when the credential is refused (e.g. "Invalid API key · Please run /login").
CLAUDE_AUTH_ERROR = re.compile(
    r"invalid api key|please run /login|authentication_error|invalid bearer token|oauth token has expired|\b401\b",
    re.IGNORECASE,
)
CONTAINER_GONE = "The container stopped unexpectedly during the step."
EGRESS_DOWN = (
    "The egress proxy of this host stopped during the step, so the run lost its only way out; an operator was alerted."
)


class StopReason(StrEnum):
    """Why the runner stopped a step before it ended by itself."""

    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    EGRESS_DOWN = "egress_down"


class Ending(StrEnum):
    """How a step ended: the value of its ``RunStatus`` and, when the step ends the session, of the attempt's
    ``AttemptStatus`` (execution/models.py; the same four values, pinned by a test)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


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
        return self.status if self.status in (Ending.SUCCEEDED, Ending.CANCELLED, Ending.TIMED_OUT) else Ending.FAILED


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


def step_outcome(end: ExecEnd, *, run_timeout: int) -> StepOutcome:
    """The rules, in order: the runner's own stop; a broken exec; a container that went away; the exit code; for
    an agent, the CLI's own verdict (an error result, or no result at all). ``run_timeout``: for the message."""
    if end.stopped == StopReason.CANCELLED:
        return StepOutcome(Ending.CANCELLED, "Cancelled by the user.")
    if end.stopped == StopReason.EGRESS_DOWN:
        return StepOutcome(Ending.FAILED, EGRESS_DOWN)
    if end.stopped == StopReason.TIMED_OUT:
        return StepOutcome(Ending.TIMED_OUT, f"Stopped after ANYON_RUN_TIMEOUT ({run_timeout} s).")
    if end.failure:
        return StepOutcome(Ending.FAILED, CONTAINER_GONE if end.container_gone else f"exec failed: {end.failure}")
    if end.exit_code is None or end.container_gone:
        return StepOutcome(Ending.FAILED, CONTAINER_GONE)
    if end.exit_code != 0:
        return StepOutcome(Ending.FAILED, f"{end.title} exited with code {end.exit_code}.")
    if end.agent is not None:
        if end.agent.is_error:
            return StepOutcome(Ending.FAILED, f"Claude reported an error: {end.agent.result_text}")
        if not end.agent.result_seen:
            return StepOutcome(Ending.FAILED, "Claude Code ended without a result event.")
    return StepOutcome(Ending.SUCCEEDED)


def is_auth_failure(errors_text: str) -> bool:
    return bool(CLAUDE_AUTH_ERROR.search(errors_text))
