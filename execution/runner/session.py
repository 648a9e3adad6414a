# Long because one attempt's session runs here in order: credentials, container, steps, push (to be split).
"""One session of an attempt in its container (docs/ARCHITECTURE.md, "Data flow of one attempt"):

    credentials (audited) → secret dir → container → each step by docker exec → commit and diff
    finally: mask the session history → remove the secret dir (verified, alert on failure) → hand the container to
             the remover (removed in the background while the worker takes its next attempt)

An attempt's first session runs its plan; a job's session (follow-up, pull request) runs on the same workspace.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings

from execution.attempts import secret_dir
from execution.attempts.actions import do_transition
from execution.attempts.runs import (
    do_finish_job,
    do_finish_run,
    do_heartbeat,
    do_record_base_commit,
    do_record_pull_request,
    do_record_results,
    do_record_run_commits,
    do_start_run,
    do_touch_attempt,
)
from execution.attempts.steps import STDIN_FROM_TASK_PROMPT, Step, commit_step, follow_up_step, push_step
from execution.git.pull_requests import PullRequestError, open_pull_request, pull_request_body
from execution.hosts.actions import do_mark_engine_lost, host_went_away
from execution.hosts.container_removal import remove_after_session
from execution.hosts.egress import sealed as sealed_mode
from execution.hosts.pool.actions import do_claim_warm_container
from execution.logs.writer import LogWriter
from execution.models import Attempt, AttemptJob, AttemptStatus, JobKind, JobStatus, LogStream, Run, RunKind, RunStatus
from execution.prompts import printable
from execution.runner import cached_start, push_guard, step_report
from execution.runner.cached_start import SnapshotMiss, SnapshotStart
from execution.runner.credentials import collect_credentials
from execution.runner.history import scrub_session_history
from execution.runner.outcomes import ExecEnd, StepOutcome, Stop, StopReason, is_auth_failure, step_outcome
from execution.runner.sealing import SealedEgress
from execution.runner.setup_phase import SetupPhase, load_setup_phase, secrets_on_disk, written_secrets_message
from execution.runner.step_report import Commits
from execution.runner.stream import ExecStream
from execution.runner.workspace import WorkspaceGit, base_branch_to_read
from secrets_app.errors import SecretError
from secrets_app.models import Secret, SecretState
from secrets_app.secret_store import do_mark_secret_state
from secrets_app.selectors import github_account_login
from shared.alerts import AlertKind, do_raise_alert
from shared.docker.engine import DockerEngine, EngineError
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


class AttemptSession(SnapshotStart):
    def __init__(
        self, attempt: Attempt, *, worker: str, job: AttemptJob | None = None, engine: DockerEngine | None = None
    ) -> None:
        self.attempt, self.job, self.owner = attempt, job, attempt.task.owner
        asker = job.requested_by if job is not None and job.requested_by_id else attempt.task.owner
        self.actor = f"worker:{worker} for {asker.get_username()}"  # the accesses name who asked
        self._engine = engine
        self.writer = LogWriter(attempt.pk)
        self.masker = Masker()
        self.container_id = ""
        self.claude_secret_id: int | None = None
        self._last_heartbeat = time.monotonic()  # the pick-up wrote the first (entry.run_attempt)
        self._last_cancel_check = 0.0
        self._last_egress_check = 0.0
        self.sealed = sealed_mode()
        self.egress: SealedEgress | None = None  # set once the session's sockets are open on the egress proxy
        self._bridge_ready = False  # the container's egress listeners were seen up (by the session's first exec)
        self._reported: Commits | None = None  # the workspace's commits as the latest exec reported them
        #: An untrusted step (the agent's, a plan's) ran since the container (re)started: its processes may still
        #: run, so Anyon's own steps wait for a restart (docs/ARCHITECTURE.md, "Trust boundary").
        self._tainted = False
        self.setup = SetupPhase()  # the environment of the attempt's repository (execution/runner/setup_phase.py)
        #: The owner's snapshot this session starts from (execution/runner/cached_start.py), until it does not fit.
        self.snapshot = None

    def __enter__(self) -> AttemptSession:
        return self

    def __exit__(self, *exc_info) -> None:
        self.writer.close()  # idempotent: stops the writer's thread on the way out of an exception too

    @property
    def engine(self) -> DockerEngine:
        if self._engine is None:
            self._engine = DockerEngine()
        return self._engine

    def say(self, text: str, run: Run | None = None) -> None:
        """A line of Anyon's own; it goes out with the next batch (at most FLUSH_SECONDS later)."""
        self.writer.write(run.pk if run else None, LogStream.SYSTEM, self.masker.mask(text.rstrip("\n") + "\n"))
        self.writer.flush_if_due()

    # --- the two kinds of session ------------------------------------------------------------------------------
    def run_attempt(self) -> str:
        steps = [Step.from_plan(item) for item in self.attempt.plan]
        final, error = self.session(steps, need_claude=any(s.is_agent for s in steps), initial=True)
        self.writer.close()  # every record is stored before the final status: a viewer's last look sees them
        do_transition(attempt=self.attempt, to=final, error=error)
        return final

    def run_job(self) -> str:
        job = self.job
        self.say(f"{job.get_kind_display()} started")
        if job.kind == JobKind.FOLLOW_UP:
            steps = [follow_up_step(prompt=job.prompt, session_id=self._last_session_id())]
        else:
            attempt = self.attempt
            steps = [push_step(url=attempt.task.repo_url, commit=attempt.head_commit, branch=attempt.branch)]
        final, error = self.session(steps, need_claude=job.kind == JobKind.FOLLOW_UP, initial=False)
        if final == AttemptStatus.SUCCEEDED and job.kind == JobKind.PULL_REQUEST:
            error = self._open_pull_request()
            final = AttemptStatus.FAILED if error else final
        status = {AttemptStatus.SUCCEEDED: JobStatus.SUCCEEDED, AttemptStatus.CANCELLED: JobStatus.CANCELLED}.get(
            final, JobStatus.FAILED
        )
        error = self.masker.mask(error)
        self.say(f"{job.get_kind_display()} {status}" + (f": {error}" if error else ""))
        self.writer.close()
        do_finish_job(job=job, status=status, error=error)
        return status

    def _last_session_id(self) -> str:
        return (
            Run.objects.filter(attempt=self.attempt, kind=RunKind.AGENT)
            .exclude(session_id="")
            .order_by("-id")
            .values_list("session_id", flat=True)
            .first()
        ) or ""

    def _open_pull_request(self) -> str:
        task = self.attempt.task
        # The network record of every session of the attempt, this push's included (stored at its close).
        self.attempt.refresh_from_db(fields=["network_record"])
        try:
            pr = open_pull_request(
                attempt=self.attempt,
                title=task.title,
                body=pull_request_body(self.attempt),
                actor=self.actor,
            )
        except (PullRequestError, SecretError) as exc:
            return str(exc)
        do_record_pull_request(attempt=self.attempt, number=pr.number, url=pr.url, state=pr.state)
        self.say(f"Pull request #{pr.number} opened: {pr.url}")
        return ""

    # --- one session -------------------------------------------------------------------------------------------
    def session(self, steps: list[Step], *, need_claude: bool, initial: bool) -> tuple[str, str]:
        """Credentials → container → steps (each agent step followed by a commit) → results; cleanup whatever
        happened. Returns the outcome as an attempt status and an error message."""
        final, error = AttemptStatus.FAILED, ""
        wrote_secrets = False
        try:
            self.say(f"Provisioning a container from {settings.ANYON_CLOUD_IMAGE}")
            credentials = collect_credentials(
                attempt=self.attempt,
                actor=self.actor,
                need_claude=need_claude,
                say=self.say,
                guard_claude=any(step.pushes for step in steps),
            )
            self.claude_secret_id = credentials.claude_secret_id
            self.setup = load_setup_phase(attempt=self.attempt, actor=self.actor)  # setup secrets: audited decrypts
            self.masker = Masker([*credentials.values(), *self.setup.secrets.values()])
            # A warm container of the pool, when there is one: it already runs, with its own volumes and empty
            # secret dir, which become the attempt's now (docs/ARCHITECTURE.md, "Warm pool").
            if initial:  # the container of a start from a snapshot is made from its image: no warm one then
                self.snapshot = cached_start.candidate(
                    attempt=self.attempt, setup=self.setup, engine=self.engine, say=self.say
                )
            warm = None
            if initial and self.snapshot is None:
                warm = do_claim_warm_container(attempt=self.attempt, engine=self.engine)
            if warm is not None:  # from now on it is this attempt's: removed at its end whatever happens next
                self.container_id = warm.container_id
            key = secret_dir.key_of(self.attempt)
            files = {} if self.sealed else credentials.files
            try:  # sealed: the directory holds the egress sockets, never a credential
                path = secret_dir.fill_secret_dir(key, files) if warm else secret_dir.write_secret_dir(key, files)
                wrote_secrets = not self.sealed
            except secret_dir.SecretDirError as exc:
                do_raise_alert(
                    kind=AlertKind.SECRET_INJECTION_FAILED, message=str(exc), attempt=self.attempt, user=self.owner
                )
                raise
            if self.sealed:
                self.egress = SealedEgress(self.attempt, claude_kind=credentials.claude_kind, directory=path)
                self.egress.policy = self.setup.agent_policy
                self.egress.open()
                self.say("Sealed run: no credential in the container; it reaches the outside only through the proxy")
            if warm is None:
                self._provision(path)
            if initial and not do_transition(attempt=self.attempt, to=AttemptStatus.RUNNING):
                raise Stop(AttemptStatus.CANCELLED, "Cancelled while provisioning.")
            how = "warm from the pool" if warm is not None else "started"
            self.say(f"Container {self.container_id[:12]} {how}; {len(steps)} step(s)")
            try:
                planned = cached_start.plan(steps, attempt=self.attempt, snapshot=self.snapshot)
                final, error = self._run_steps(planned, initial=initial)
            except SnapshotMiss as miss:
                self.say(str(miss))
                self._start_over(path)
                final, error = self._run_steps(steps, initial=initial)
            self._record_results()
        except Stop as stop:
            final, error = stop.status, stop.error
        except (SecretError, secret_dir.SecretDirError, EngineError) as exc:
            final, error = AttemptStatus.FAILED, str(exc)
        except Exception as exc:  # never leave an attempt hanging in "running"
            logger.exception("attempt %s crashed", self.attempt.pk)
            final, error = AttemptStatus.FAILED, f"internal error: {type(exc).__name__}"
        finally:
            lost = final == AttemptStatus.FAILED and self._engine_lost()
            if lost:  # nothing more to ask that engine: the scrub and the container wait for its return (sweeps)
                final, error = AttemptStatus.FAILED, host_went_away(settings.ANYON_WORKER_QUEUE, lost)
                do_mark_engine_lost(name=settings.ANYON_WORKER_QUEUE, detail=lost, attempt=self.attempt)
            try:
                if need_claude and not lost:
                    self._scrub_history()
            finally:  # the secret dir goes whatever the scrub met
                self._clean_up(wrote_secrets, remove_container=not lost)
            do_touch_attempt(attempt=self.attempt)
        error = self.masker.mask(error)
        if initial:
            label = final.replace("_", " ")
            self.say(f"Attempt {label}: {error}" if error else f"Attempt {label}")
        return final, error

    def _run_steps(self, steps: list[Step], *, initial: bool) -> tuple[str, str]:
        for index, step in enumerate(steps):
            if self._cancel_requested():
                raise Stop(AttemptStatus.CANCELLED, "Cancelled by the user.")
            outcome = self.run_step(step, last=index == len(steps) - 1)
            if outcome.status == RunStatus.SUCCEEDED and initial and step.kind == RunKind.CLONE and self.setup.runs:
                outcome = self._prepare()  # setup (then a snapshot), or the maintenance of a start from one
            if outcome.status != RunStatus.SUCCEEDED:
                return outcome.attempt_status, outcome.error
        return AttemptStatus.SUCCEEDED, ""

    def _engine_lost(self) -> str:
        """Why the engine is gone when it no longer answers (it stopped, its host went away), else "". Asked only
        after a failure, and only when this session used the engine."""
        return self._engine.unreachable() if self._engine is not None else ""

    def _cancel_requested(self) -> bool:
        self._last_cancel_check = time.monotonic()  # a step starts with a look: its stream's first is not due yet
        if self.job is not None:
            return AttemptJob.objects.filter(pk=self.job.pk, cancel_requested=True).exists()
        return Attempt.objects.filter(pk=self.attempt.pk, cancel_requested=True).exists()

    def _record_results(self) -> None:
        if self._tainted:
            if self._reported is not None and not self._reported.repository:
                return  # no repository: nothing to read
            if not self.container_id or not self.engine.is_running(self.container_id):
                return  # stopped (cancel, timeout): the next session records them, as before
            self._untainted()
        results = WorkspaceGit(self.engine, self.container_id).results(
            self.attempt, self.masker, reported=self._reported
        )
        if results is not None:
            do_record_results(
                attempt=self.attempt,
                base_commit=results.base_commit,
                head_commit=results.head_commit,
                diff=results.diff,
                diff_truncated=results.diff_truncated,
                push_summary=results.push_summary,
            )

    def _scrub_history(self) -> None:
        if not self.container_id:  # no container was made (engine down, image missing): no history, no engine to ask
            return
        line = scrub_session_history(
            engine=self.engine,
            attempt=self.attempt,
            container_id=self.container_id,
            masker=self.masker,
            sealed=self.sealed,
        )
        if line:
            self.say(line)

    def _clean_up(self, wrote_secrets: bool, *, remove_container: bool = True) -> None:
        """Whatever happened: the egress sockets close, the secret dir goes (verified), then the container is handed
        to the process's remover (execution/hosts/container_removal.py)."""
        if self.egress is not None:
            self.egress.close(phase=self.job.get_kind_display().lower() if self.job else "attempt")
            self._log_blocks()
        if not secret_dir.remove_secret_dir(secret_dir.key_of(self.attempt)):
            path = secret_dir.secret_dir_path(secret_dir.key_of(self.attempt))
            self.say(f"WARNING: the secret directory {path} could not be removed; an operator was alerted.")
            do_raise_alert(
                kind=AlertKind.SECRET_CLEANUP_FAILED,
                message=f"secret dir {path} of attempt {self.attempt.pk} still exists after removal",
                attempt=self.attempt,
                user=self.owner,
            )
        elif wrote_secrets:
            self.say("Secret directory removed")
        if self.container_id and remove_container:  # removed while the worker takes its next attempt
            if self._tainted:  # what an untrusted step left stops now, not when the remover gets to it
                self.engine.kill(self.container_id)
            remove_after_session(self.engine, self.container_id)

    # --- one step ----------------------------------------------------------------------------------------------
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
            self.say("No setup secret is in a file of the home, the workspace or /tmp")
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
            do_raise_alert(
                kind=AlertKind.PUSH_REFUSED_SECRET,
                message=f"attempt {self.attempt.pk}: {reason}",
                attempt=self.attempt,
                user=self.owner,
            )
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
        if outcome.status == RunStatus.FAILED and end.stopped is None and end.exit_code not in (None, 0):
            do_raise_alert(
                kind=AlertKind.EXEC_NONZERO_EXIT,
                message=f"attempt {self.attempt.pk}: {run.title or run.kind} exited with {end.exit_code}",
                attempt=self.attempt,
                user=self.owner,
                dedupe_key=f"exec_nonzero_exit:{self.attempt.pk}:{run.pk}",
            )
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
        do_raise_alert(
            kind=AlertKind.CLAUDE_CLI_ERROR,
            message=f"attempt {self.attempt.pk}: {text}",
            attempt=self.attempt,
            user=self.owner,
        )
        if self.claude_secret_id and is_auth_failure(text):
            secret = Secret.objects.defer("value").get(pk=self.claude_secret_id)
            do_mark_secret_state(
                secret=secret,
                state=SecretState.EXPIRED,
                reason=f"Claude rejected it during attempt {self.attempt.pk} ({text[:120]})",
            )
            self.say("Claude rejected the credential: it is marked expired. Reconnect Claude in Settings.")

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
