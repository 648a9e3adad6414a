"""git in the attempt's workspace: the head commit, and the diff since the base branch."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.conf import settings

from execution import diffs
from execution.models import Attempt
from shared.docker.engine import DockerEngine, EngineError
from shared.masking import Masker

logger = logging.getLogger(__name__)


def exec_environment() -> dict[str, str]:
    """The environment of every exec (visible in ``docker inspect`` of the exec: nothing secret). git's credential
    helper offers the token to the configured GitHub host only."""
    return {"HOME": "/home/anyon", "ANYON_GIT_CREDENTIAL_HOSTS": urlsplit(settings.ANYON_GITHUB_URL).netloc}


@dataclass
class Results:
    base_commit: str
    head_commit: str
    diff: list[dict] = field(default_factory=list)
    diff_truncated: bool = False


class WorkspaceGit:
    def __init__(self, engine: DockerEngine, container_id: str) -> None:
        self.engine, self.container_id = engine, container_id

    def git(self, *args: str, limit: int = 64 * 1024) -> tuple[int | None, str, bool]:
        return self.engine.exec_capture(
            self.container_id,
            ["git", *args],
            limit=limit,
            environment=exec_environment(),
            user=str(settings.ANYON_CONTAINER_UID),
        )

    def head(self) -> str:
        code, out, _ = self.git("rev-parse", "--verify", "-q", "HEAD")
        return out.strip() if code == 0 else ""

    def results(self, attempt: Attempt, masker: Masker) -> Results | None:
        """Base commit (kept once known), head and the masked diff; None when the container is not running (the
        next session records them) or the workspace holds no repository (a plan of custom steps)."""
        try:
            if not self.engine.is_running(self.container_id) or self.git("rev-parse", "--git-dir")[0] != 0:
                return None
            return self._results(attempt, masker)
        except EngineError:
            logger.warning("could not read the results of attempt %s", attempt.pk, exc_info=True)
            return None

    def _results(self, attempt: Attempt, masker: Masker) -> Results:
        base = attempt.base_commit
        if not base:
            code, out, _ = self.git("rev-parse", "--verify", "-q", f"refs/remotes/origin/{attempt.task.base_branch}")
            base = out.strip() if code == 0 else ""
        results = Results(base_commit=base, head_commit=self.head())
        if base and results.head_commit:
            head = results.head_commit
            _, numstat, _ = self.git("diff", "--numstat", "--no-renames", base, head, limit=512 * 1024)
            results.diff = diffs.parse_numstat(numstat)
            _, patch, complete = self.git(
                "diff", "--no-color", "--no-ext-diff", "--no-renames", base, head, limit=2 * 1024 * 1024
            )
            results.diff_truncated = diffs.attach_patches(results.diff, masker.mask(patch), complete=complete)
        return results
