"""The steps of a session (docs/ARCHITECTURE.md, "Data flow of one attempt"): one step's exec with its stream, its
outcome and the alerts it raises; the checks between steps (a push's guard, the restart before Anyon's own steps,
the commit after an agent step, an environment's setup step); and the control loop a running exec calls (heartbeat,
timeout, egress, cancel).

``StepRunner`` is part of ``AttemptSession`` (execution/runner/session.py), whose state it shares: the container,
the masker, the egress sockets and whether an untrusted step ran since the container (re)started.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings

from execution.attempts.runs import (
    do_finish_run,
    do_heartbeat,
    do_record_base_commit,
    do_record_run_commits,
    do_start_run,
)
from execution.attempts.selectors import cancel_requested
from execution.attempts.steps import STDIN_FROM_TASK_PROMPT, Step, commit_step
from execution.logs.writer import LogWriter
from execution.models import Attempt, AttemptJob, Run, RunKind, RunStatus
from execution.prompts import printable
from execution.runner import alert_policy, push_guard, step_report
from execution.runner.credential_expiry import REJECTED, expire_rejected_credential
from execution.runner.outcomes import ExecEnd, StepOutcome, StopReason, step_outcome
from execution.runner.sealing import SealedEgress
from execution.runner.secret_search import secrets_on_disk
from execution.runner.setup_phase import SetupPhase, written_secrets_message
from execution.runner.step_report import Commits
from execution.runner.stream import ExecStream
from execution.runner.workspace import WorkspaceGit, base_branch_to_read
from secrets_app.selectors import github_account_login
from shared.docker.engine import DockerEngine
from shared.masking import Masker

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5
EGRESS_CHECK_SECONDS = 1.0
CANCEL_CHECK_SECONDS = 0.1
#: Said when a step exited with 0 but its exec's output lacks the report printed last: a Docker engine under load
#: can drop a short exec's output (moby/moby#27289, reproduced here on Docker 20.10 for plain execs too).
ENGINE_LOST_OUTPUT = (
    "The Docker engine did not return all of this step's output (it exited with 0). The engine can lose the "
    "output of a short step under heavy load; the step itself ran."
)


class StepRunner:
    """The session's steps (mixed into ``AttemptSession``, which sets every attribute below)."""

    attempt: Attempt
    job: AttemptJob | None
    owner: object  # the task's owner (a user)
    engine: DockerEngine
    writer: LogWriter
    masker: Masker
    container_id: str
    claude_secret_id: int | None
    egress: SealedEgress | None
    setup: SetupPhase
    _last_heartbeat: float
    _last_cancel_check: float
    _last_egress_check: float
    _bridge_ready: bool
    _reported: Commits | None
    _tainted: bool
    say: Callable[..., None]  # a line of Anyon's own in the log (``AttemptSession.say``)

    def run_step(self, step: Step, *, last: bool = False) -> StepOutcome:
        """The step; after an agent step that succeeded, a commit of what it changed. A push is checked first. The
        session's ``last`` exec reports the workspace's commits as it ends (execution/runner/step_report.py)."""
        if step.pushes:
            return self._push(step, last=last)
        git = WorkspaceGit(self.engine, self.container_id)
        commit_before = git.head() if step.is_agent else ""
        clone = step.kind == RunKind.CLONE
        outcome, run = self._exec_step(step, report=last or clone)
        if clone and outcome.status == RunStatus.SUCCEEDED:
            self._record_base()
            if self.snapshot is not None:
                self._check_snapshot()
        if step.is_agent and outcome.status == RunStatus.SUCCEEDED and commit_before:
            self._untainted()
            agent_head = git.head()  # what Anyon's commit builds on: a new head after it is Anyon's own commit
            outcome, _ = self._exec_step(self._commit_step(), report=last)
            reported = self._reported
            commit_after = reported.head if reported is not None and reported.repository else git.head()
            committed = outcome.status == RunStatus.SUCCEEDED and agent_head and commit_after != agent_head
            own = commit_after if committed else ""
            do_record_run_commits(run=run, commit_before=commit_before, commit_after=commit_after, own_commit=own)
        return outcome

    def _record_base(self) -> None:
        """The base branch's commit as the clone fetched it, before any untrusted step could move a ref."""
        if self.attempt.base_commit:
            return
        reported = self._reported
        if reported is None:  # the engine lost the clone's report: asked before any untrusted step runs
            reported = WorkspaceGit(self.engine, self.container_id).commits(self.attempt)
        if reported is not None and reported.repository and reported.base:
            do_record_base_commit(attempt=self.attempt, base_commit=reported.base)

    def _untainted(self) -> None:
        """Before Anyon's own steps: no process an untrusted step started is left. The container is killed (the
        kernel ends every process of its PID namespace, detached, double-forked and stopped ones too) and started
        again; the engine checks that none of the processes from before is there."""
        if not self._tainted:
            return
        self.engine.restart(self.container_id)
        self._tainted, self._bridge_ready = False, False  # a sealed container's bridge starts over
        self.say("Stopped every process the earlier steps left in the container (it was restarted)")

    def _run_setup(self, step: Step) -> StepOutcome:
        """The environment's setup script (or, on a start from a snapshot, its maintenance script), right after the
        clone: its own step, with the setup secrets in its exec's environment and the setup phase's network policy.
        Then no process of it is left (restart), no setup secret is in a file the agent could read, and the agent
        phase's policy holds."""
        if self.egress is not None:
            self.egress.set_policy(self.setup.setup_policy)
        elif self.setup.setup_policy.mode != "off" or self.setup.agent_policy.mode != "off":
            self.say("The environment's network policy applies to sealed runs only; this run's network is the host's.")
        outcome, _ = self._exec_step(step, environment=self.setup.setup_environment())
        if outcome.status == RunStatus.FAILED:
            outcome.error = f"The environment's {step.title.lower()} failed: {outcome.error} See its log."
        if outcome.status != RunStatus.SUCCEEDED:  # failed, or stopped (cancel, timeout): its own message
            return outcome
        self._untainted()
        if self.egress is not None:
            self.egress.set_policy(self.setup.agent_policy, ended_phase="clone and setup")
        if self.setup.secrets:
            found = secrets_on_disk(self.engine, self.container_id, self.setup.secrets)
            if found is None:
                return StepOutcome(
                    RunStatus.FAILED, "Could not check the files for setup secrets; the agent did not start."
                )
            if found:
                message = self.masker.mask(written_secrets_message(found))
                self.say(message)
                return StepOutcome(RunStatus.FAILED, message)
            self.say("No setup secret is in a file the setup left (the volumes and every path the container changed)")
        return outcome

    def _push(self, step: Step, *, last: bool) -> StepOutcome:
        self._untainted()
        base = self.attempt.base_commit
        # Anyon's push sends the head whose diff was recorded; a plan's pushing step, whatever HEAD is now.
        head = self.attempt.head_commit if step.own else WorkspaceGit(self.engine, self.container_id).head()
        if not head:
            reason = "Push refused: there is no commit to push."
            self.say(reason)
            return StepOutcome(RunStatus.FAILED, reason)
        reason = push_guard.refusal(
            engine=self.engine, container_id=self.container_id, masker=self.masker, base=base, head=head
        )
        if reason:
            self.say(reason)
            alert_policy.alert_push_refused(attempt=self.attempt, user=self.owner, reason=reason)
            return StepOutcome(RunStatus.FAILED, reason)
        if self.egress is None:
            return self._exec_step(step, report=last)[0]
        with self.egress.pushing():
            return self._exec_step(step, report=last)[0]

    def _log_blocks(self) -> None:
        for line in self.egress.block_lines():
            self.say(line)

    def _commit_step(self) -> Step:
        title = self.attempt.task.title
        message = title if self.job is None else f"{title}: follow-up\n\n{printable(self.job.prompt[:2000])}"
        return commit_step(message=message, login=github_account_login(owner=self.owner) or self.owner.get_username())

    def _exec_step(
        self, step: Step, *, report: bool = False, environment: dict[str, str] | None = None
    ) -> tuple[StepOutcome, Run]:
        """``report``: the exec also reports the workspace's commits at its end (never an agent's: its output is
        events). An untrusted step gets the environment's variables (``environment``: the setup step's, with its
        secrets); Anyon's own steps get none."""
        self._reported = None
        argv = list(step.argv) if step.own else ["anyon-exec", *step.argv]  # Anyon's git needs no credential
        if self.egress is not None and not self._bridge_ready:  # the first exec waits for the listeners, no later one
            argv, self._bridge_ready = ["anyon-egress-bridge", *argv], True
        run = do_start_run(attempt=self.attempt, job=self.job, step=step, argv=argv)
        catcher, executed = None, argv
        if report and not step.is_agent:
            nonce = step_report.new_nonce()
            catcher = step_report.ReportCatcher(nonce)
            executed = step_report.reporting(argv, nonce=nonce, base_branch=base_branch_to_read(self.attempt))
        stdin = self.attempt.task.prompt if step.stdin_from == STDIN_FROM_TASK_PROMPT else step.stdin
        shown = (
            f"{step.title}: Anyon's own git (none of the repository's hooks or configuration)"
            if step.own
            else f"$ {' '.join(step.argv)[:500]}"
        )
        if stdin is not None:
            shown += f"  (prompt on stdin, {len(stdin.encode()):,} bytes)"
        self.say(shown, run)
        stream = ExecStream(
            engine=self.engine,
            container_id=self.container_id,
            writer=self.writer,
            masker=self.masker,
            environment=self._exec_environment(step, environment),
        )
        end = stream.run(
            run,
            executed,
            agent=step.is_agent,
            stdin=stdin.encode() if stdin is not None else None,
            control=self._control,
            report=catcher,
        )
        self._reported = end.commits
        if not step.own:
            self._tainted = True
        if catcher is not None and end.commits is None and end.stopped is None and end.exit_code == 0:
            # The reporting sh ran to its end (exit code 0) and printed the report last: the engine lost output.
            logger.warning("attempt %s: the engine lost the end of run %s's output", self.attempt.pk, run.pk)
            self.say(ENGINE_LOST_OUTPUT, run)
        if end.stopped is None and not end.failure and end.agent is not None and end.agent.is_error:
            self._agent_error(end)
        outcome = step_outcome(end, run_timeout=settings.RUN_TIMEOUT)
        outcome.error = self.masker.mask(outcome.error)  # every field that can hold output is stored masked
        session_id = end.agent.session_id if end.agent is not None else ""
        do_finish_run(
            run=run, status=outcome.status, exit_code=end.exit_code, error=outcome.error, session_id=session_id
        )
        alert_policy.alert_nonzero_exit(attempt=self.attempt, user=self.owner, run=run, outcome=outcome, end=end)
        return outcome, run

    def _exec_environment(self, step: Step, environment: dict[str, str] | None) -> dict[str, str] | None:
        """The exec's variables: the sealed container's (a warm one lacks them) over the environment's variables,
        which only untrusted steps get."""
        own = {} if step.own else (environment if environment is not None else self.setup.variables)
        merged = {**own, **(self.egress.environment if self.egress else {})}
        return merged or None

    def _agent_error(self, end: ExecEnd) -> None:
        """An error result of the CLI: alert, and when Claude rejected the credential, mark it expired so the
        card and the banner tell the user to reconnect."""
        text = self.masker.mask("; ".join(end.agent.errors))[:500]
        alert_policy.alert_claude_cli_error(attempt=self.attempt, user=self.owner, text=text)
        if expire_rejected_credential(attempt=self.attempt, secret_id=self.claude_secret_id, text=text):
            self.say(REJECTED)

    def _control(self, now: float, deadline: float) -> StopReason | None:
        """Heartbeat, and whether the run must stop."""
        if now - self._last_heartbeat >= HEARTBEAT_SECONDS:
            do_heartbeat(attempt=self.attempt)
            self._last_heartbeat = now
        if now >= deadline:
            return StopReason.TIMED_OUT
        if self.egress is not None and now - self._last_egress_check >= EGRESS_CHECK_SECONDS:
            self._last_egress_check = now
            for line in self.egress.allowance_lines():
                self.say(line)
            self._log_blocks()
            if not self.egress.alive():
                return StopReason.EGRESS_DOWN
        if now - self._last_cancel_check >= CANCEL_CHECK_SECONDS and self._cancel_requested():
            return StopReason.CANCELLED
        return None

    def _cancel_requested(self) -> bool:
        self._last_cancel_check = time.monotonic()  # a step starts with a look: its stream's first is not due yet
        return cancel_requested(attempt=self.attempt, job=self.job)
