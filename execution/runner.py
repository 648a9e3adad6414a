"""Running one attempt in its container (the django-q2 task ``execution.runner.run_attempt``).

    decrypt (audited) → secret dir → container → docker exec each step → masked, batched log records
    finally: remove the secret dir (verified, alert on failure) → remove the container → final status

A reader thread pulls the exec's output into a bounded queue; the main thread masks and stores it and, between
chunks, heartbeats, honours cancel and the run timeout (by killing the container), and flushes pending output.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import queue
import re
import socket
import threading
import time
from dataclasses import dataclass

import docker
from django.conf import settings
from django.utils import timezone

from execution import diffs, secret_dir
from execution.attempts import AGENT_ARGV, STDIN_FROM_TASK_PROMPT, do_transition
from execution.claude_events import AgentOutcome, render_event
from execution.containers import HOME, AttemptContainers, home_volume, labels_for
from execution.log_writer import LogWriter, wake_attempt_viewers
from execution.models import Attempt, AttemptJob, AttemptStatus, JobKind, JobStatus, LogStream, Run, RunKind, RunStatus
from execution.prompts import printable
from execution.pull_requests import PullRequestError, open_pull_request
from secrets_app.errors import SecretError
from secrets_app.models import Kind, Provider, Secret, SecretState
from secrets_app.secret_store import do_mark_secret_state, fetch_secret
from secrets_app.selectors import GITHUB_PRECEDENCE
from shared.alerts import AlertKind, do_raise_alert
from shared.docker.engine import DockerEngine, EngineError, ExecResult
from shared.masking import Masker, StreamMasker

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5
CONTROL_SECONDS = 0.1  # how often the main loop looks at cancel / timeout when output is quiet
QUEUE_CHUNKS = 64  # bound on output chunks in flight between reader and writer (backpressure)
IDLE_RELEASE_SECONDS = 0.25  # an incomplete line is shown after output has paused this long
EXEC_ENV = {"HOME": "/home/anyon"}
#: What Claude Code says when the credential is refused (e.g. "Invalid API key · Please run /login").
CLAUDE_AUTH_ERROR = re.compile(
    r"invalid api key|please run /login|authentication_error|invalid bearer token|oauth token has expired|\b401\b",
    re.IGNORECASE,
)


@dataclass
class StepOutcome:
    status: str
    error: str = ""


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_attempt(attempt_id: int) -> str:
    """Entry point of the queue task. Idempotent: an attempt that is no longer queued is left alone."""
    attempt = Attempt.objects.select_related("task", "task__owner").get(pk=attempt_id)
    if not do_transition(
        attempt=attempt,
        to=AttemptStatus.PROVISIONING,
        only_from=(AttemptStatus.QUEUED,),
        worker=worker_identity(),
        heartbeat_at=timezone.now(),
    ):
        logger.info("attempt %s is %s, not queued: not running it", attempt_id, attempt.status)
        return attempt.status
    runner = AttemptRunner(attempt)
    try:
        return runner.run()
    finally:
        runner.writer.close()  # idempotent: stops the writer's thread on the way out of an exception too


def run_job(job_id: int) -> str:
    """Entry point of a follow-up or pull-request job on a finished attempt's workspace."""
    job = AttemptJob.objects.select_related("attempt", "attempt__task", "attempt__task__owner").get(pk=job_id)
    if not AttemptJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(status=JobStatus.RUNNING):
        return job.status
    runner = AttemptRunner(job.attempt, job=job)
    try:
        return runner.run_job()
    finally:
        runner.writer.close()


COMMIT_SCRIPT = (
    'git add -A && if git diff --cached --quiet; then echo "No changes to commit"; '
    'else git -c user.name="$2" -c user.email="$3" commit -q -m "$1" && git log -1 --format="Committed %h: %s"; fi'
)


#: Replaces every line of standard input (the secrets' masked forms) in the files under $ARGV[0]; prints how many
#: files changed. Perl is in every Debian image (perl-base is essential); the values travel on stdin, never in argv.
SCRUB_SCRIPT = r"""
use strict; use warnings; use File::Find;
my @values = grep { length } map { s/\r?\n\z//r } <STDIN>;
my $changed = 0;
if (@values) {
  my $any = join "|", map { quotemeta } sort { length $b <=> length $a } @values;
  find({ no_chdir => 1, wanted => sub {
    return unless -f $_ && !-l $_ && -s _ < 64 * 1024 * 1024;
    open(my $in, "<:raw", $_) or return; local $/; my $text = <$in>; close $in;
    return unless defined $text && $text =~ s/$any/***/g;
    open(my $out, ">:raw", $_) or return; print $out $text; close $out; $changed++;
  }}, $ARGV[0]);
}
print "$changed\n";
"""


class AttemptRunner:
    def __init__(self, attempt: Attempt, *, job: AttemptJob | None = None, engine: DockerEngine | None = None) -> None:
        self.attempt = attempt
        self.job = job
        self.owner = attempt.task.owner
        self._engine = engine
        self.writer = LogWriter(attempt.pk)
        self.masker = Masker()
        self.container_id = ""
        self._last_heartbeat = 0.0
        self._last_cancel_check = 0.0
        self.claude_secret_id: int | None = None

    # --- logging helpers ---------------------------------------------------------------------------------------
    def system(self, text: str, run: Run | None = None) -> None:
        """A line of Anyon's own; it goes out with the next batch (at most FLUSH_SECONDS later)."""
        self.writer.write(run.pk if run else None, LogStream.SYSTEM, self.masker.mask(text.rstrip("\n") + "\n"))
        self.writer.flush_if_due()

    # --- secrets -----------------------------------------------------------------------------------------------
    def collect_secrets(self, *, need_claude: bool) -> dict[str, str]:
        """Decrypt the owner's credentials for this attempt (each decrypt audited). GitHub is optional (public
        repositories clone without it); Claude is required for agent steps."""
        files: dict[str, str] = {}
        actor = f"worker:{worker_identity()}"
        common = {"owner": self.owner, "actor": actor, "attempt_id": self.attempt.pk, "purpose": "attempt run"}
        try:
            github = fetch_secret(provider=Provider.GITHUB, kinds=GITHUB_PRECEDENCE, **common)
            files[secret_dir.GITHUB_TOKEN] = github.value
        except SecretError as exc:
            self.system(f"GitHub: {exc} Cloning without a token (works for public repositories only).")
            self._alert_lookup(exc)
        if need_claude:
            try:
                claude = fetch_secret(provider=Provider.CLAUDE, kinds=(Kind.OAUTH_TOKEN, Kind.API_KEY), **common)
            except SecretError as exc:
                self._alert_lookup(exc)
                raise
            self.claude_secret_id = claude.secret_id
            name = secret_dir.CLAUDE_OAUTH_TOKEN if claude.kind == Kind.OAUTH_TOKEN else secret_dir.ANTHROPIC_API_KEY
            files[name] = claude.value
        return files

    def _alert_lookup(self, exc: SecretError) -> None:
        if exc.outcome in ("expired", "undecryptable"):
            do_raise_alert(
                kind=AlertKind.SECRET_LOOKUP_FAILED,
                message=f"attempt {self.attempt.pk}: {exc}",
                attempt=self.attempt,
                user=self.owner,
            )

    # --- the attempt -------------------------------------------------------------------------------------------
    def run(self) -> str:
        """The attempt's first session: its plan (clone, branch, agent), then commit and diff."""
        need_claude = any(step["kind"] == RunKind.AGENT for step in self.attempt.plan)
        final, error = self.session(self.attempt.plan, need_claude=need_claude, initial=True)
        self.writer.close()  # every record is stored before the final status: a viewer's last look sees them
        do_transition(attempt=self.attempt, to=final, error=error)
        wake_attempt_viewers(self.attempt.pk, status=final)
        return final

    def run_job(self) -> str:
        """A later session on the same workspace: a follow-up prompt, or push + pull request."""
        job = self.job
        self.system(f"{job.get_kind_display()} started")
        if job.kind == JobKind.FOLLOW_UP:
            steps = [self.follow_up_step(job.prompt)]
        else:
            steps = [
                {
                    "kind": RunKind.CUSTOM,
                    "title": "Push branch",
                    "argv": ["git", "push", "--porcelain", "origin", f"HEAD:refs/heads/{self.attempt.branch}"],
                }
            ]
        final, error = self.session(steps, need_claude=job.kind == JobKind.FOLLOW_UP, initial=False)
        if final == AttemptStatus.SUCCEEDED and job.kind == JobKind.PULL_REQUEST:
            error = self.open_pull_request()
            final = AttemptStatus.FAILED if error else final
        status = {
            AttemptStatus.SUCCEEDED: JobStatus.SUCCEEDED,
            AttemptStatus.CANCELLED: JobStatus.CANCELLED,
        }.get(final, JobStatus.FAILED)
        self.system(f"{job.get_kind_display()} {status}" + (f": {error}" if error else ""))
        self.writer.close()
        AttemptJob.objects.filter(pk=job.pk).update(status=status, error=error[:4000], finished_at=timezone.now())
        wake_attempt_viewers(self.attempt.pk, status=status)
        return status

    def follow_up_step(self, prompt: str) -> dict:
        argv = list(AGENT_ARGV)
        session_id = (
            Run.objects.filter(attempt=self.attempt, kind=RunKind.AGENT)
            .exclude(session_id="")
            .order_by("-id")
            .values_list("session_id", flat=True)
            .first()
        )
        if session_id:
            argv += ["--resume", session_id]
        return {"kind": RunKind.AGENT, "title": "Claude Code (follow-up)", "argv": argv, "stdin": prompt}

    def open_pull_request(self) -> str:
        task = self.attempt.task
        try:
            pr = open_pull_request(
                attempt=self.attempt,
                title=task.title,
                body=f"{printable(task.prompt)}\n\n---\nOpened by Anyon Cloud from attempt {self.attempt.pk}.",
                actor=f"worker:{worker_identity()}",
            )
        except (PullRequestError, SecretError) as exc:
            return str(exc)
        Attempt.objects.filter(pk=self.attempt.pk).update(pr_number=pr.number, pr_url=pr.url, pr_state=pr.state)
        self.system(f"Pull request #{pr.number} opened: {pr.url}")
        return ""

    def session(self, steps: list[dict], *, need_claude: bool, initial: bool) -> tuple[str, str]:
        """Secrets → container → steps (each agent step followed by a commit) → results; cleanup whatever
        happened. Returns the outcome as an attempt status and an error message."""
        final, error = AttemptStatus.FAILED, ""
        wrote_secrets = False
        try:
            self.system(f"Provisioning a container from {settings.ANYON_CLOUD_IMAGE}")
            files = self.collect_secrets(need_claude=need_claude)
            self.masker = Masker(files.values())
            try:
                path = secret_dir.write_secret_dir(self.attempt.pk, files)
                wrote_secrets = True
            except secret_dir.SecretDirError as exc:
                do_raise_alert(
                    kind=AlertKind.SECRET_INJECTION_FAILED, message=str(exc), attempt=self.attempt, user=self.owner
                )
                raise
            service = AttemptContainers(self.engine)
            self.container_id = service.provision(self.attempt, secret_dir=path)
            Attempt.objects.filter(pk=self.attempt.pk).update(container_id=self.container_id)
            if initial and not do_transition(attempt=self.attempt, to=AttemptStatus.RUNNING):
                raise _Stop(AttemptStatus.CANCELLED, "Cancelled while provisioning.")
            self.system(f"Container {self.container_id[:12]} started; {len(steps)} step(s)")
            final = AttemptStatus.SUCCEEDED
            for step in steps:
                if self._cancel_requested():
                    raise _Stop(AttemptStatus.CANCELLED, "Cancelled by the user.")
                outcome = self.run_step(step)
                if outcome.status != RunStatus.SUCCEEDED:
                    final = {
                        RunStatus.CANCELLED: AttemptStatus.CANCELLED,
                        RunStatus.TIMED_OUT: AttemptStatus.TIMED_OUT,
                    }.get(outcome.status, AttemptStatus.FAILED)
                    error = outcome.error
                    break
            self.record_results()
        except _Stop as stop:
            final, error = stop.status, stop.error
        except SecretError as exc:
            final, error = AttemptStatus.FAILED, str(exc)
        except (secret_dir.SecretDirError, EngineError) as exc:
            final, error = AttemptStatus.FAILED, str(exc)
        except Exception as exc:  # never leave an attempt hanging in "running"
            logger.exception("attempt %s crashed", self.attempt.pk)
            final, error = AttemptStatus.FAILED, f"internal error: {type(exc).__name__}"
        finally:
            try:
                if need_claude:
                    self.scrub_home()
            finally:  # the secret dir goes whatever the scrub met
                self.cleanup(wrote_secrets)
            Attempt.objects.filter(pk=self.attempt.pk).update(last_activity_at=timezone.now())
        if initial:
            label = final.replace("_", " ")
            self.system(f"Attempt {label}: {error}" if error else f"Attempt {label}")
        return final, error

    def _cancel_requested(self) -> bool:
        if self.job is not None:
            return AttemptJob.objects.filter(pk=self.job.pk, cancel_requested=True).exists()
        return Attempt.objects.filter(pk=self.attempt.pk, cancel_requested=True).exists()

    # --- results: commits and the diff ---------------------------------------------------------------------
    def git(self, *args: str, limit: int = 64 * 1024) -> tuple[int | None, str, bool]:
        return self.engine.exec_capture(
            self.container_id, ["git", *args], limit=limit, environment=EXEC_ENV, user=str(settings.ANYON_CONTAINER_UID)
        )

    def head(self) -> str:
        code, out, _ = self.git("rev-parse", "--verify", "-q", "HEAD")
        return out.strip() if code == 0 else ""

    def commit_step(self) -> dict:
        task = self.attempt.task
        login = (
            self.owner.secrets.filter(provider=Provider.GITHUB, state="active")
            .exclude(account_login="")
            .values_list("account_login", flat=True)
            .first()
        ) or self.owner.get_username()
        message = task.title if self.job is None else f"{task.title}: follow-up\n\n{printable(self.job.prompt[:2000])}"
        email = f"{login}@users.noreply.github.com"
        return {
            "kind": RunKind.CUSTOM,
            "title": "Commit changes",
            "argv": ["sh", "-c", COMMIT_SCRIPT, "commit", message, login, email],
        }

    def record_results(self) -> None:
        """Base commit (once), head commit and the diff since base, read from the workspace's git repository."""
        if not self.engine.is_running(self.container_id):
            return  # killed (cancel, timeout, from outside): the next session records the results
        try:
            self._record_results()
        except EngineError:
            logger.warning("could not read the results of attempt %s", self.attempt.pk, exc_info=True)

    def _record_results(self) -> None:
        if self.git("rev-parse", "--git-dir")[0] != 0:
            return  # a plan without a repository (custom steps only)
        attempt = self.attempt
        if not attempt.base_commit:
            code, out, _ = self.git("rev-parse", "--verify", "-q", f"refs/remotes/origin/{attempt.task.base_branch}")
            attempt.base_commit = out.strip() if code == 0 else ""
        head = self.head()
        files, truncated = [], False
        if attempt.base_commit and head:
            _, numstat, _ = self.git("diff", "--numstat", "--no-renames", attempt.base_commit, head, limit=512 * 1024)
            files = diffs.parse_numstat(numstat)
            _, patch, complete = self.git(
                "diff", "--no-color", "--no-ext-diff", "--no-renames", attempt.base_commit, head, limit=2 * 1024 * 1024
            )
            truncated = diffs.attach_patches(files, self.masker.mask(patch), complete=complete)
        Attempt.objects.filter(pk=attempt.pk).update(
            base_commit=attempt.base_commit, head_commit=head, diff=files, diff_truncated=truncated
        )

    @property
    def engine(self) -> DockerEngine:
        if self._engine is None:
            self._engine = DockerEngine()
        return self._engine

    def scrub_home(self) -> None:
        """The Claude CLI keeps each session's history, tool output included, under ~/.claude in the home volume,
        which outlives the container (for --resume). Every injected secret there is masked, as in the log."""
        if not self.container_id or not self.masker.variants:
            return
        values = ("\n".join(self.masker.variants) + "\n").encode()
        argv, user = ["perl", "-e", SCRUB_SCRIPT, HOME], str(settings.ANYON_CONTAINER_UID)
        code: int | None = None
        try:
            with contextlib.suppress(EngineError):  # not running (any more): the engine refuses the exec
                code, out, _ = self.engine.exec_capture(self.container_id, argv, user=user, stdin=values)
            if code != 0:
                # Stopped (cancel, timeout, kill), removed (docker rm -f, perhaps still under way), or gone during
                # the exec: the volume outlives the container, so a throw-away container with only it masks it.
                code, out = self.engine.run_once(
                    settings.ANYON_CLOUD_IMAGE,
                    argv,
                    mounts=[docker.types.Mount(HOME, home_volume(self.attempt.workspace_volume), type="volume")],
                    user=user,
                    labels=labels_for(self.attempt),
                    stdin=values,
                )
        except Exception as exc:  # EngineError, or the engine gone mid-call: say so, never skip the cleanup
            code, out = None, str(exc)
        if code != 0:
            logger.warning("attempt %s: session history not checked for secrets: %s", self.attempt.pk, out[-300:])
            self.system("WARNING: the agent's session history could not be checked for secrets.")
        elif out.strip() not in ("", "0"):
            self.system(f"Masked secrets in {out.strip()} file(s) of the agent's session history")

    def cleanup(self, wrote_secrets: bool) -> None:
        """Whatever happened: the secret dir goes first (verified), then the container."""
        if not secret_dir.remove_secret_dir(self.attempt.pk):
            path = secret_dir.secret_dir_path(self.attempt.pk)
            self.system(f"WARNING: the secret directory {path} could not be removed; an operator was alerted.")
            do_raise_alert(
                kind=AlertKind.SECRET_CLEANUP_FAILED,
                message=f"secret dir {path} of attempt {self.attempt.pk} still exists after removal",
                attempt=self.attempt,
                user=self.owner,
            )
        elif wrote_secrets:
            self.system("Secret directory removed")
        if self.container_id:
            try:
                AttemptContainers(self.engine).remove(self.container_id)
            except Exception:
                logger.exception("could not remove container %s", self.container_id[:12])

    # --- one step --------------------------------------------------------------------------------------------
    def run_step(self, step: dict) -> StepOutcome:
        agent = step["kind"] == RunKind.AGENT
        commit_before = self.head() if agent else ""
        outcome, run = self._exec_step(step)
        if agent and outcome.status == RunStatus.SUCCEEDED and commit_before:
            outcome, _ = self._exec_step(self.commit_step())
            Run.objects.filter(pk=run.pk).update(commit_before=commit_before, commit_after=self.head())
        return outcome

    def _exec_step(self, step: dict) -> tuple[StepOutcome, Run]:
        argv = ["anyon-exec", *step["argv"]]
        run = Run.objects.create(
            attempt=self.attempt, job=self.job, kind=step["kind"], title=step.get("title", ""), argv=argv
        )
        wake_attempt_viewers(self.attempt.pk)
        stdin = self.attempt.task.prompt if step.get("stdin_from") == STDIN_FROM_TASK_PROMPT else step.get("stdin")
        shown = f"$ {' '.join(step['argv'])[:500]}"
        if stdin is not None:
            shown += f"  (prompt on stdin, {len(stdin.encode()):,} bytes)"
        self.system(shown, run)
        outcome = self.exec_and_stream(
            run, argv, agent=step["kind"] == RunKind.AGENT, stdin=stdin.encode() if stdin is not None else None
        )
        Run.objects.filter(pk=run.pk).update(
            status=outcome.status,
            exit_code=run.exit_code,
            error=outcome.error[:4000],
            session_id=run.session_id,
            finished_at=timezone.now(),
        )
        if outcome.status == RunStatus.FAILED and run.exit_code not in (None, 0):
            do_raise_alert(
                kind=AlertKind.EXEC_NONZERO_EXIT,
                message=f"attempt {self.attempt.pk}: {run.title or run.kind} exited with {run.exit_code}",
                attempt=self.attempt,
                user=self.owner,
                dedupe_key=f"exec_nonzero_exit:{self.attempt.pk}:{run.pk}",
            )
        wake_attempt_viewers(self.attempt.pk)
        return outcome, run

    def exec_and_stream(self, run: Run, argv: list[str], *, agent: bool, stdin: bytes | None = None) -> StepOutcome:
        chunks: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
        result = ExecResult()
        failure: list[BaseException] = []

        def reader() -> None:
            try:
                for item in self.engine.exec_stream(
                    self.container_id,
                    argv,
                    result,
                    environment=EXEC_ENV,
                    user=str(settings.ANYON_CONTAINER_UID),
                    stdin=stdin,
                ):
                    chunks.put(item)
            except BaseException as exc:  # reported to the main thread
                failure.append(exc)
            finally:
                chunks.put(None)

        thread = threading.Thread(target=reader, name=f"exec-reader-{run.pk}", daemon=True)
        thread.start()
        decoders = {s: codecs.getincrementaldecoder("utf-8")(errors="replace") for s in ("stdout", "stderr")}
        maskers = {s: StreamMasker(self.masker) for s in ("stdout", "stderr")}
        agent_outcome = AgentOutcome()
        agent_line = ""
        deadline = time.monotonic() + settings.RUN_TIMEOUT
        stopped: str = ""
        last_output = time.monotonic()
        while True:
            try:
                item = chunks.get(timeout=CONTROL_SECONDS)
            except queue.Empty:
                item = ""
            if item is None:
                break
            now = time.monotonic()
            if item:
                stream, data = item
                text = decoders[stream].decode(data)
                last_output = now
                if agent and stream == "stdout":
                    agent_line += text
                    lines = agent_line.split("\n")
                    agent_line = lines.pop()
                    self._write_agent_lines(run, lines, maskers["stdout"], agent_outcome)
                    if len(agent_line) > 1024 * 1024:  # not a JSON event: treat as plain output
                        self.writer.write(run.pk, LogStream.STDOUT, maskers["stdout"].feed(agent_line))
                        agent_line = ""
                else:
                    self.writer.write(run.pk, stream, maskers[stream].feed(text))
            elif now - last_output > IDLE_RELEASE_SECONDS:
                for stream, masker in maskers.items():
                    if masker.pending:
                        self.writer.write(run.pk, stream, masker.release())
            self.writer.flush_if_due(quiet=chunks.empty())
            if not stopped:
                stopped = self._control(now, deadline)
                if stopped:
                    self.engine.kill(self.container_id)
        thread.join(timeout=10)
        for stream in ("stdout", "stderr"):
            tail = decoders[stream].decode(b"", final=True)
            if agent and stream == "stdout":
                lines = (agent_line + tail).split("\n")
                self._write_agent_lines(run, lines, maskers["stdout"], agent_outcome)
            else:
                self.writer.write(run.pk, stream, maskers[stream].feed(tail))
            self.writer.write(run.pk, stream, maskers[stream].finish())
        self.writer.flush()
        run.exit_code = result.exit_code
        run.session_id = agent_outcome.session_id
        if stopped == "cancelled":
            return StepOutcome(RunStatus.CANCELLED, "Cancelled by the user.")
        if stopped == "timed_out":
            return StepOutcome(RunStatus.TIMED_OUT, f"Stopped after ANYON_RUN_TIMEOUT ({settings.RUN_TIMEOUT} s).")
        if failure:
            with contextlib.suppress(EngineError):  # the engine cannot say: report the exec's own error
                if not self.engine.is_running(self.container_id):  # the exec failed as the container went away
                    return StepOutcome(RunStatus.FAILED, "The container stopped unexpectedly during the step.")
            return StepOutcome(RunStatus.FAILED, f"exec failed: {failure[0]}")
        if agent and agent_outcome.is_error:
            self._agent_error(agent_outcome)
        if result.exit_code is None or self._container_died(result.exit_code):
            return StepOutcome(RunStatus.FAILED, "The container stopped unexpectedly during the step.")
        if result.exit_code != 0:
            return StepOutcome(RunStatus.FAILED, f"{run.title or run.kind} exited with code {result.exit_code}.")
        if agent:
            if agent_outcome.is_error:
                return StepOutcome(RunStatus.FAILED, f"Claude reported an error: {agent_outcome.result_text}")
            if not agent_outcome.result_seen:
                return StepOutcome(RunStatus.FAILED, "Claude Code ended without a result event.")
        return StepOutcome(RunStatus.SUCCEEDED)

    def _agent_error(self, outcome: AgentOutcome) -> None:
        """An error result of the CLI: alert, and when Claude rejected the credential, mark it expired so the
        card and the banner tell the user to reconnect."""
        text = self.masker.mask("; ".join(outcome.errors))[:500]
        do_raise_alert(
            kind=AlertKind.CLAUDE_CLI_ERROR,
            message=f"attempt {self.attempt.pk}: {text}",
            attempt=self.attempt,
            user=self.owner,
        )
        if self.claude_secret_id and CLAUDE_AUTH_ERROR.search(text):
            secret = Secret.objects.defer("value").get(pk=self.claude_secret_id)
            do_mark_secret_state(
                secret=secret,
                state=SecretState.EXPIRED,
                reason=f"Claude rejected it during attempt {self.attempt.pk} ({text[:120]})",
            )
            self.system("Claude rejected the credential: it is marked expired. Reconnect Claude in Settings.")

    def _container_died(self, exit_code: int) -> bool:
        """Whether the container itself went away (killed from outside, out of memory), not just the step."""
        checks = 10 if exit_code == 137 else 1  # SIGKILL: the engine may need a moment to report the container
        for check in range(checks):
            if check:
                time.sleep(0.1)
            if not self.engine.is_running(self.container_id):
                return True
        return False

    def _write_agent_lines(self, run: Run, lines: list[str], masker: StreamMasker, outcome: AgentOutcome) -> None:
        for line in lines:
            if not line.strip():
                continue
            rendered = render_event(line, outcome)
            if rendered is None:
                self.writer.write(run.pk, LogStream.STDOUT, masker.feed(line + "\n"))
            elif rendered:
                self.writer.write(run.pk, LogStream.AGENT, self.masker.mask(rendered))

    def _control(self, now: float, deadline: float) -> str:
        """Heartbeat, and whether the run must stop: ``cancelled``, ``timed_out`` or ``""``."""
        if now - self._last_heartbeat >= HEARTBEAT_SECONDS:
            Attempt.objects.filter(pk=self.attempt.pk).update(heartbeat_at=timezone.now())
            self._last_heartbeat = now
        if now >= deadline:
            return "timed_out"
        if now - self._last_cancel_check >= CONTROL_SECONDS:
            self._last_cancel_check = now
            if self._cancel_requested():
                return "cancelled"
        return ""


class _Stop(Exception):
    def __init__(self, status: str, error: str) -> None:
        super().__init__(error)
        self.status, self.error = status, error
