"""git in the attempt's workspace: the head commit, and the diff since the base branch, by Anyon's own git
(execution/git/anyon_git.py: none of the agent's hooks, config, attributes or replace refs)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.conf import settings

from execution.git import anyon_git, commit_list, diffs
from execution.models import Attempt, Run
from execution.runner import step_report
from execution.runner.step_report import Commits
from shared.docker.engine import DockerEngine, EngineError
from shared.masking import Masker

logger = logging.getLogger(__name__)


def exec_environment() -> dict[str, str]:
    """The environment of every exec (visible in ``docker inspect`` of the exec: nothing secret). git's credential
    helper offers the token to the configured GitHub host only."""
    return {"HOME": "/home/anyon", "ANYON_GIT_CREDENTIAL_HOSTS": urlsplit(settings.ANYON_GITHUB_URL).netloc}


def own_exec_environment() -> dict[str, str]:
    """The environment of an exec of Anyon's own (its git, the report of the commits): the image's root-owned
    directories only, nothing preloaded (execution/git/anyon_git.py)."""
    return {**exec_environment(), **anyon_git.own_environment()}


#: What is read of a diff (its counts and its patches): the rest is cut, and the attempt says so.
DIFF_LIMIT = 2 * 1024 * 1024 + 512 * 1024


def base_branch_to_read(attempt: Attempt) -> str:
    """The base branch whose remote-tracking commit is the base, or "" once the attempt knows its base."""
    return "" if attempt.base_commit else attempt.task.base_branch


@dataclass
class Results:
    base_commit: str
    head_commit: str
    diff: list[dict] = field(default_factory=list)
    diff_truncated: bool = False
    #: The branch and the commits a push sends (execution/git/commit_list.py); {} when unknown.
    push_summary: dict = field(default_factory=dict)


class WorkspaceGit:
    def __init__(self, engine: DockerEngine, container_id: str) -> None:
        self.engine, self.container_id = engine, container_id

    def run(self, argv: list[str], *, limit: int = 64 * 1024) -> tuple[int | None, str, bool]:
        return self.engine.exec_capture(
            self.container_id,
            argv,
            limit=limit,
            environment=own_exec_environment(),
            user=str(settings.ANYON_CONTAINER_UID),
        )

    def head(self) -> str:
        code, out, _ = self.run(anyon_git.head_argv())
        return out.strip() if code == 0 else ""

    def results(self, attempt: Attempt, masker: Masker, *, reported: Commits | None = None) -> Results | None:
        """Base commit (kept once known), head and the masked diff; None when the container is not running (the
        next session records them) or the workspace holds no repository (a plan of custom steps). ``reported``:
        the commits the session's last exec reported as it ended; without them an exec asks."""
        try:
            commits = reported if reported is not None else self.commits(attempt)
            if commits is None or not commits.repository:
                return None
            base, head = attempt.base_commit or commits.base, commits.head
            summary = self.push_summary(attempt, masker, base, head) if base and head else {}
            results = self._results(masker, base, head)
            results.push_summary = summary
            return results
        except EngineError as exc:  # also: the container is not running (killed at a timeout or cancel)
            logger.info("results of attempt %s not read: %s", attempt.pk, exc)
            return None

    def push_summary(self, attempt: Attempt, masker: Masker, base: str, head: str) -> dict:
        """The attempt's branch, where the agent's HEAD is, and the commits ``base..head`` with their authors."""
        code, out, _ = self.run(anyon_git.commits_argv(base, head, commit_list.MAX_COMMITS))
        if code != 0:
            return {}
        own = set(Run.objects.filter(attempt=attempt).exclude(own_commit="").values_list("own_commit", flat=True))
        return commit_list.parse(out, masker=masker, branch=attempt.branch, head=head, own_commits=own)

    def commits(self, attempt: Attempt) -> Commits | None:
        """The commits as a session's last exec reports them (step_report), asked by an exec of their own: the
        session's last exec did not report them. None when the engine returned no report."""
        nonce = step_report.new_nonce()
        _, out, _ = self.engine.exec_capture(
            self.container_id,
            step_report.reporting(["true"], nonce=nonce, base_branch=base_branch_to_read(attempt)),
            environment=own_exec_environment(),
            user=str(settings.ANYON_CONTAINER_UID),
        )
        catcher = step_report.ReportCatcher(nonce)
        catcher.feed(out)
        catcher.finish()
        return catcher.commits

    def _results(self, masker: Masker, base: str, head: str) -> Results:
        results = Results(base_commit=base, head_commit=head)
        if base and head:
            # The counts and the patches in one exec: git prints the numstat lines, an empty line, then the patch.
            _, out, complete = self.run(anyon_git.diff_argv(base, head), limit=DIFF_LIMIT)
            numstat, separator, patch = out.partition("\n\n")
            if not complete and not separator:  # cut within the counts: the last line may be a part of one
                numstat = numstat.rpartition("\n")[0]
            results.diff = diffs.parse_numstat(numstat)
            results.diff_truncated = diffs.attach_patches(results.diff, masker.mask(patch), complete=complete)
        return results
