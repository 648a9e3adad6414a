"""What an attempt runs: its steps. A plan is stored as JSON on the attempt; :class:`Step` is its typed form."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from execution.git import anyon_git
from execution.models import RunKind

WORKSPACE = "/workspace"

#: ``claude -p`` without a prompt argument reads the prompt from standard input.
AGENT_ARGV = ["claude", "-p", "--output-format", "stream-json", "--verbose", "--dangerously-skip-permissions"]
#: A step's ``stdin_from``: the attempt's task prompt is its standard input.
STDIN_FROM_TASK_PROMPT = "task.prompt"


@dataclass(frozen=True)
class Step:
    kind: str
    argv: list[str]
    title: str = ""
    #: Standard input given literally (follow-up prompts), or named (``stdin_from``) to avoid a second copy.
    stdin: str | None = None
    stdin_from: str = ""
    #: The step pushes: the commits to push are checked for secrets first, and in sealed mode only this step's
    #: connection to the git host may push.
    pushes: bool = False
    #: Anyon's own step (commit, push): it runs without the credentials' environment (``anyon-exec``), and only once
    #: no process of an earlier untrusted step is left in the container. Never read from a plan.
    own: bool = False

    @property
    def is_agent(self) -> bool:
        return self.kind == RunKind.AGENT

    @classmethod
    def from_plan(cls, item: dict) -> Step:
        return cls(
            kind=item["kind"],
            argv=list(item["argv"]),
            title=item.get("title", ""),
            stdin=item.get("stdin"),
            stdin_from=item.get("stdin_from", ""),
            pushes=bool(item.get("pushes", False)),
        )

    def to_plan(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "", False) and k != "own"}


def branch_name(attempt_id: int) -> str:
    return f"anyon/attempt-{attempt_id}"


def default_plan(*, repo_url: str, base_branch: str, attempt_id: int) -> list[Step]:
    """Clone (the token is added outside the repository URL), create the attempt's branch, run Claude Code."""
    return [
        Step(
            RunKind.CLONE, ["git", "clone", "--branch", base_branch, "--", repo_url, "/workspace"], "Clone repository"
        ),
        Step(RunKind.CUSTOM, ["git", "checkout", "-b", branch_name(attempt_id)], "Create branch"),
        # The prompt goes to standard input, never into a command line; the plan names it rather than holding a
        # second copy (up to 1 MB, and NUL, which JSON columns on PostgreSQL refuse).
        Step(RunKind.AGENT, AGENT_ARGV, "Claude Code", stdin_from=STDIN_FROM_TASK_PROMPT),
    ]


def follow_up_step(*, prompt: str, session_id: str) -> Step:
    argv = [*AGENT_ARGV, "--resume", session_id] if session_id else list(AGENT_ARGV)
    return Step(RunKind.AGENT, argv, "Claude Code (follow-up)", stdin=prompt)


def push_step(*, url: str, commit: str, branch: str) -> Step:
    """The commit whose diff the user reviewed, by id, to the attempt's branch only (execution/git/anyon_git.py)."""
    argv = anyon_git.push_argv(url=url, commit=commit, branch=branch)
    return Step(RunKind.CUSTOM, argv, "Push branch", pushes=True, own=True)


def commit_step(*, message: str, login: str) -> Step:
    email = f"{login}@users.noreply.github.com"
    argv = anyon_git.commit_argv(message=message, name=login, email=email)
    return Step(RunKind.CUSTOM, argv, "Commit changes", own=True)


def fetch_step(*, url: str, branch: str) -> Step:
    """A start from a snapshot: the fresh base instead of a clone, by Anyon's own git (execution/git/anyon_git.py)."""
    return Step(RunKind.CLONE, anyon_git.fetch_argv(url=url, branch=branch), "Fetch base branch", own=True)
