"""A session's start from a snapshot of its environment's setup, and the snapshot after a setup (docs/ARCHITECTURE.md,
"Snapshots").

An attempt whose environment has a setup script, without a snapshot: clone → setup (its own step, then a restart and
the setup-secret check: execution/runner/setup_phase.py) → … → agent; the prepared state is then kept as a snapshot.
With the owner's snapshot for this environment, setup (script and variables) and runtime image: the container is
made from the snapshot's image on fresh volumes the engine fills from it, the clone becomes a fetch of the base branch
by Anyon's own git, the lockfiles at the fetched base are compared with the snapshot's (a mismatch starts the attempt
over without it), and the maintenance script, if any, runs in the setup's place.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from django.conf import settings

from execution.attempts.containers import AttemptContainers
from execution.attempts.runs import do_forget_workspace, do_record_setup, do_set_container
from execution.attempts.steps import Step, fetch_step
from execution.models import Attempt, RunKind, RunStatus, Snapshot
from execution.runner.outcomes import StepOutcome
from execution.runner.setup_phase import SetupPhase
from execution.snapshots.actions import (
    SnapshotError,
    do_drop_snapshot,
    do_take_snapshot,
    do_use_snapshot,
    find_snapshot,
    lockfiles_match,
    new_volumes,
)
from execution.snapshots.selectors import snapshot_of_attempt
from shared.docker.engine import DockerEngine, EngineError

logger = logging.getLogger(__name__)


class SnapshotMiss(Exception):
    """The snapshot's lockfiles are not those of the fetched base: the attempt starts over without it."""


def setup_fingerprint(setup: SetupPhase) -> str:
    """What of the environment shapes the setup's result: its script and its variables (never a secret's value)."""
    return json.dumps([setup.script, setup.variables], sort_keys=True)


def candidate(*, attempt: Attempt, setup: SetupPhase, engine: DockerEngine, say: Callable[[str], None]):
    """The owner's snapshot to start from, or None. One whose image is gone is dropped on the way."""
    if not setup.runs or setup.environment_id is None or not settings.ANYON_SNAPSHOTS:
        return None
    snapshot = find_snapshot(
        owner=attempt.task.owner,
        environment_id=setup.environment_id,
        setup=setup_fingerprint(setup),
        runtime_image_id=engine.image_id(settings.ANYON_CLOUD_IMAGE),
    )
    if snapshot is None:
        return None
    try:
        engine.image_config(snapshot.image_id or snapshot.image)
    except EngineError:
        say(f"The snapshot of {when(snapshot)} is gone from this Docker host: setup runs")
        do_drop_snapshot(snapshot=snapshot, engine=engine)
        return None
    return snapshot


def follow_up_image(*, attempt: Attempt, engine: DockerEngine, say: Callable[[str], None]) -> str:
    """The image a follow-up's container is made from (on the attempt's own volumes): the snapshot the attempt
    started from or made, so what its setup left outside the workspace and home is there again; "" (the runtime
    image) without one, or when it is gone, which the log says."""
    if attempt.from_snapshot_of is None and not attempt.snapshot_saved:
        return ""
    snapshot = snapshot_of_attempt(attempt=attempt, queue=settings.ANYON_WORKER_QUEUE)
    if snapshot is not None:
        try:
            engine.image_config(snapshot.image_id or snapshot.image)
            say(f"The container is made from the snapshot of {when(snapshot)}, which this attempt's setup prepared")
            return snapshot.image_id or snapshot.image
        except EngineError:
            pass
    say(
        "The snapshot this attempt's setup prepared is gone: the container is made from the runtime image, without "
        "what the setup left outside the workspace and the home"
    )
    return ""


def when(snapshot: Snapshot) -> str:
    return f"{snapshot.created_at:%Y-%m-%d %H:%M} UTC"


def plan(steps: list[Step], *, attempt: Attempt, snapshot: Snapshot | None) -> list[Step]:
    """The steps as they run: from a snapshot, the (first) clone is a fetch of the base branch."""
    if snapshot is None:
        return steps
    task, out = attempt.task, list(steps)
    for index, step in enumerate(out):
        if step.kind == RunKind.CLONE:
            out[index] = fetch_step(url=task.repo_url, branch=task.base_branch)
            break
    return out


class SnapshotStart:
    """The session's part of snapshots (mixed into ``AttemptSession``, whose attributes it uses)."""

    snapshot: Snapshot | None
    #: A follow-up's: the image of the snapshot its attempt's setup prepared ("" the runtime image).
    follow_up_image: str = ""

    def _provision(self, path) -> None:
        """The attempt's container: from its snapshot's image (on fresh volumes the engine fills from it), a
        follow-up's on the attempt's volumes from the snapshot its setup prepared, or the runtime image."""
        image = self.follow_up_image
        if self.snapshot is not None:
            new_volumes(attempt=self.attempt)
            image = self.snapshot.image_id or self.snapshot.image
        self.container_id = AttemptContainers(self.engine).provision(
            self.attempt,
            secret_dir=path,
            sealed_environment=self.egress.environment if self.egress else None,
            image=image,
        )
        do_set_container(attempt=self.attempt, container_id=self.container_id)

    def _start_over(self, path) -> None:
        """The container and volumes made for a snapshot that did not fit go; a fresh container follows."""
        if self.container_id:
            self.engine.remove_now(self.container_id)
        if self.attempt.workspace_volume:
            self.engine.remove_volume(self.attempt.workspace_volume)
            self.engine.remove_volume(f"{self.attempt.workspace_volume}-home")
        do_forget_workspace(attempt=self.attempt)
        self.snapshot, self.container_id, self._tainted, self._bridge_ready = None, "", False, False
        self._provision(path)
        self.say(f"Container {self.container_id[:12]} started")

    def _check_snapshot(self) -> None:
        """After the fetch: the snapshot fits when the lockfiles at the fetched base are those it was made with.
        Read before any untrusted step ran in the container: only Anyon's own fetch did."""
        snapshot = self.snapshot
        if self._tainted:
            raise SnapshotMiss("An untrusted step ran before the snapshot's check: setup runs")
        if not self.attempt.base_commit or not lockfiles_match(
            engine=self.engine, snapshot=snapshot, attempt=self.attempt, container_id=self.container_id
        ):
            raise SnapshotMiss(
                f"The dependency lockfiles changed since the snapshot of {when(snapshot)}: a fresh clone and setup"
            )
        do_use_snapshot(snapshot=snapshot, attempt=self.attempt)
        self.say(f"Started from the snapshot of {when(snapshot)}: the setup script does not run")

    def _prepare(self) -> StepOutcome:
        """After the clone (or the fetch): the maintenance script on a start from a snapshot, else the setup script,
        whose result is then kept."""
        if self.snapshot is not None:
            if not self.setup.maintenance.strip():
                return StepOutcome(RunStatus.SUCCEEDED)
            return self._run_setup(self.setup.maintenance_step())
        started = time.monotonic()
        outcome = self._run_setup(self.setup.step())
        if outcome.status == RunStatus.SUCCEEDED:
            self._save_snapshot(time.monotonic() - started)
        return outcome

    def _save_snapshot(self, seconds: float) -> None:
        """The setup's result as a snapshot. The container was restarted after the setup (no process of it is
        left) and holds no setup secret in a file the check searched."""
        do_record_setup(attempt=self.attempt, seconds=seconds)
        if not (settings.ANYON_SNAPSHOTS and self.job is None and self.attempt.base_commit):
            self.say(f"Setup ran (took {seconds:.0f} s)")
            return
        try:
            snapshot = do_take_snapshot(
                attempt=self.attempt,
                engine=self.engine,
                container_id=self.container_id,
                environment_id=self.setup.environment_id,
                setup=setup_fingerprint(self.setup),
                sealed=self.sealed,
            )
            self.say(f"Setup ran (took {seconds:.0f} s); snapshot saved ({snapshot.size_bytes / 1e6:,.1f} MB)")
        except Exception as exc:  # a cache: its failure never fails the attempt
            logger.warning(
                "attempt %s: no snapshot: %s", self.attempt.pk, exc, exc_info=not isinstance(exc, SnapshotError)
            )
            reason = (
                str(exc) if isinstance(exc, SnapshotError | EngineError) else f"internal error: {type(exc).__name__}"
            )
            self.say(f"Setup ran (took {seconds:.0f} s); no snapshot was saved: {reason}")
