"""The end of a session hands its container to the worker process's remover: the attempt's final status and the
worker do not wait for the engine to remove it (execution/container_removal.py)."""

from __future__ import annotations

import threading

import pytest

from execution.attempts import do_create_task, do_start_attempt, do_transition
from execution.container_removal import ContainerRemover, wait_for_removals
from execution.models import Attempt, AttemptStatus
from execution.runner.session import AttemptSession
from tests.fakes.docker_engine import FakeEngine


class SlowRemovalEngine(FakeEngine):
    """Removal waits until the test lets it go; it notes what the container's state was when removal began."""

    def __init__(self) -> None:
        super().__init__()
        self.removal_started = threading.Event()
        self.let_go = threading.Event()
        self.final_status_when_removed: str | None = None

    def stop_and_remove(self, container_id: str, *, timeout: int = 5) -> None:
        self.removal_started.set()
        assert self.let_go.wait(10)
        attempt = Attempt.objects.filter(container_id=container_id).first()
        self.final_status_when_removed = attempt.status if attempt else None
        super().stop_and_remove(container_id, timeout=timeout)


@pytest.mark.django_db(transaction=True)
def test_the_attempt_ends_before_its_container_is_removed(alice):
    task = do_create_task(owner=alice, title="t", repo_url="https://github.com/o/r", base_branch="main", prompt="x")
    attempt = do_start_attempt(task=task, plan=[{"kind": "custom", "title": "s", "argv": ["true"]}], enqueue=False)
    assert do_transition(attempt=attempt, to=AttemptStatus.PROVISIONING)
    engine = SlowRemovalEngine()
    with AttemptSession(attempt, worker="test:1", engine=engine) as session:
        status = session.run_attempt()  # returns while the removal waits
    attempt.refresh_from_db()
    try:
        assert status == AttemptStatus.SUCCEEDED and attempt.status == AttemptStatus.SUCCEEDED
        assert engine.removal_started.wait(10)
        assert attempt.container_id in engine.containers  # still there: the worker did not wait for it
    finally:
        engine.let_go.set()
    assert wait_for_removals(10)
    assert attempt.container_id not in engine.containers
    assert engine.final_status_when_removed == AttemptStatus.SUCCEEDED


def test_a_removal_that_fails_is_logged_and_the_remover_goes_on(caplog):
    class Failing(FakeEngine):
        def stop_and_remove(self, container_id: str, *, timeout: int = 5) -> None:
            if container_id == "bad":
                raise RuntimeError("engine said no")
            super().stop_and_remove(container_id, timeout=timeout)

    engine = Failing()
    engine.containers = {"bad": {"Id": "bad"}, "good": {"Id": "good"}}
    remover = ContainerRemover()
    remover.hand_over(engine, "bad")
    remover.hand_over(engine, "good")
    assert remover.wait(10)
    assert list(engine.containers) == ["bad"]  # left for the cleanup sweep (containers of finished attempts)
    assert "could not remove container bad" in caplog.text


def test_waiting_with_nothing_handed_over_returns_at_once():
    assert ContainerRemover().wait(0)
