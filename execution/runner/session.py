"""One session of an attempt in its container (docs/ARCHITECTURE.md, "Data flow of one attempt"):

    credentials (audited) → secret dir → container → each step by docker exec → commit and diff
    finally: mask the session history → remove the secret dir (verified, alert on failure) → hand the container to
             the remover (removed in the background while the worker takes its next attempt)

An attempt's first session runs its plan; a job's session (follow-up, pull request: execution/runner/jobs.py) runs
on the same workspace. Each step is run by ``StepRunner`` (execution/runner/step_runner.py).
"""

from __future__ import annotations

import logging
import time

from django.conf import settings

from execution.attempts import secret_dir
from execution.attempts.actions import do_transition
from execution.attempts.runs import do_finish_job, do_record_results, do_touch_attempt
from execution.attempts.steps import Step
from execution.hosts.actions import do_mark_engine_lost, host_went_away
from execution.hosts.container_removal import remove_after_session
from execution.hosts.egress import sealed as sealed_mode
from execution.hosts.pool.actions import do_claim_warm_container
from execution.logs.writer import LogWriter
from execution.models import Attempt, AttemptJob, AttemptStatus, LogStream, Run, RunKind, RunStatus
from execution.runner import alert_policy, cached_start, jobs
from execution.runner.cached_start import SnapshotMiss, SnapshotStart
from execution.runner.credentials import collect_credentials
from execution.runner.history import scrub_session_history
from execution.runner.outcomes import Stop
from execution.runner.sealing import SealedEgress
from execution.runner.setup_phase import SetupPhase, load_setup_phase
from execution.runner.step_report import Commits
from execution.runner.step_runner import StepRunner
from execution.runner.workspace import WorkspaceGit
from secrets_app.errors import SecretError
from shared.docker.engine import DockerEngine, EngineError
from shared.masking import Masker

logger = logging.getLogger(__name__)


class AttemptSession(SnapshotStart, StepRunner):
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
        steps = jobs.steps_of(job, self.attempt)
        final, error = self.session(steps, need_claude=jobs.needs_claude(job), initial=False)
        status, error = jobs.finish(job, attempt=self.attempt, final=final, error=error, actor=self.actor, say=self.say)
        error = self.masker.mask(error)
        self.say(f"{job.get_kind_display()} {status}" + (f": {error}" if error else ""))
        self.writer.close()
        do_finish_job(job=job, status=status, error=error)
        return status

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
            elif self.job is not None and jobs.needs_claude(self.job):  # a follow-up: from the setup's snapshot
                self.follow_up_image = cached_start.follow_up_image(
                    attempt=self.attempt, engine=self.engine, say=self.say
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
                alert_policy.alert_secret_injection_failed(attempt=self.attempt, user=self.owner, error=str(exc))
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
            alert_policy.alert_secret_cleanup_failed(attempt=self.attempt, user=self.owner, path=path)
        elif wrote_secrets:
            self.say("Secret directory removed")
        if self.container_id and remove_container:  # removed while the worker takes its next attempt
            if self._tainted:  # what an untrusted step left stops now, not when the remover gets to it
                self.engine.kill(self.container_id)
            remove_after_session(self.engine, self.container_id)
