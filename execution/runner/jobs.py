"""The kinds of job on a finished attempt's workspace (docs/ARCHITECTURE.md, "Data flow of one attempt"): what a
follow-up's or a pull request's session runs, and how its outcome becomes the job's status. The session itself is
execution/runner/session.py."""

from __future__ import annotations

from collections.abc import Callable

from execution.attempts.runs import do_record_pull_request
from execution.attempts.selectors import last_agent_session_id
from execution.attempts.steps import Step, follow_up_step, push_step
from execution.git.pull_requests import PullRequestError, open_pull_request, pull_request_body
from execution.models import Attempt, AttemptJob, AttemptStatus, JobKind, JobStatus
from secrets_app.errors import SecretError

#: A job's session ends as an attempt status would; the job's own status follows it.
JOB_STATUS = {AttemptStatus.SUCCEEDED: JobStatus.SUCCEEDED, AttemptStatus.CANCELLED: JobStatus.CANCELLED}


def steps_of(job: AttemptJob, attempt: Attempt) -> list[Step]:
    """A follow-up resumes the agent's last session with its prompt; a pull request pushes the recorded head."""
    if job.kind == JobKind.FOLLOW_UP:
        return [follow_up_step(prompt=job.prompt, session_id=last_agent_session_id(attempt=attempt))]
    return [push_step(url=attempt.task.repo_url, commit=attempt.head_commit, branch=attempt.branch)]


def needs_claude(job: AttemptJob) -> bool:
    return job.kind == JobKind.FOLLOW_UP


def finish(
    job: AttemptJob, *, attempt: Attempt, final: str, error: str, actor: str, say: Callable[[str], None]
) -> tuple[str, str]:
    """The job's status and error from its session's outcome; a pull request's push is followed by its pull
    request."""
    if final == AttemptStatus.SUCCEEDED and job.kind == JobKind.PULL_REQUEST:
        error = _open_pull_request(attempt=attempt, actor=actor, say=say)
        final = AttemptStatus.FAILED if error else final
    return JOB_STATUS.get(final, JobStatus.FAILED), error


def _open_pull_request(*, attempt: Attempt, actor: str, say: Callable[[str], None]) -> str:
    task = attempt.task
    # The network record of every session of the attempt, this push's included (stored at its close).
    attempt.refresh_from_db(fields=["network_record"])
    try:
        pr = open_pull_request(
            attempt=attempt,
            title=task.title,
            body=pull_request_body(attempt),
            actor=actor,
        )
    except (PullRequestError, SecretError) as exc:
        return str(exc)
    do_record_pull_request(attempt=attempt, number=pr.number, url=pr.url, state=pr.state)
    say(f"Pull request #{pr.number} opened: {pr.url}")
    return ""
