"""The end of a session hands its container to the worker process's remover: the attempt's final status and the
worker do not wait for the engine to remove it (execution/hosts/container_removal.py)."""

from __future__ import annotations

import threading
import time

import pytest

from execution.attempts.actions import do_create_task, do_start_attempt, do_transition
from execution.hosts import container_removal
from execution.hosts.container_removal import ContainerRemover, wait_for_removals
from execution.models import Attempt, AttemptStatus
from execution.runner.session import AttemptSession
from tests.fakes.docker_engine import FakeEngine
from tests.fixtures.queueing import held_from_workers


class SlowRemovalEngine(FakeEngine):
    """Removal waits until the test lets it go; it notes what the container's state was when removal began."""

    def __init__(self) -> None:
        super().__init__()
        self.removal_started = threading.Event()
        self.let_go = threading.Event()
        self.final_status_when_removed: str | None = None

    def remove_now(self, container_id: str) -> None:
        self.removal_started.set()
        assert self.let_go.wait(10)
        attempt = Attempt.objects.filter(container_id=container_id).first()
        self.final_status_when_removed = attempt.status if attempt else None
        super().remove_now(container_id)


@pytest.mark.django_db(transaction=True)
def test_the_attempt_ends_before_its_container_is_removed(alice):
    task = do_create_task(owner=alice, title="t", repo_url="https://github.com/o/r", base_branch="main", prompt="x")
    with held_from_workers():
        attempt = do_start_attempt(task=task, plan=[{"kind": "custom", "title": "s", "argv": ["true"]}])
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
        def remove_now(self, container_id: str) -> None:
            if container_id == "bad":
                raise RuntimeError("engine said no")
            super().remove_now(container_id)

    engine = Failing()
    engine.containers = {"bad": {"Id": "bad"}, "good": {"Id": "good"}}
    remover = ContainerRemover(busy=lambda: False)
    remover.hand_over(engine, "bad")
    remover.hand_over(engine, "good")
    assert remover.wait(10)
    assert list(engine.containers) == ["bad"]  # left for the cleanup sweep (containers of finished attempts)
    assert "could not remove container bad" in caplog.text


def test_waiting_with_nothing_handed_over_returns_at_once():
    assert ContainerRemover(busy=lambda: False).wait(0)


def test_a_removal_waits_while_the_host_starts_attempts_then_goes():
    """Removing costs the engine as much as an exec: it waits until no attempt of the host is on its way to its first
    step, so a burst's first lines do not share the engine with the last attempts' removals."""
    engine = FakeEngine()
    engine.containers = {"done": {"Id": "done"}}
    starting = threading.Event()
    starting.set()
    looks = []

    def busy() -> bool:
        looks.append(starting.is_set())
        return starting.is_set()

    remover = ContainerRemover(busy=busy)
    remover.hand_over(engine, "done")
    assert not remover.wait(3 * container_removal.YIELD_CHECK_SECONDS)  # still yielding
    assert "done" in engine.containers and len(looks) >= 2
    starting.clear()
    assert remover.wait(5)
    assert "done" not in engine.containers and looks[-1] is False


def test_a_removal_yields_for_a_bounded_time(monkeypatch):
    """A host that never stops starting attempts does not keep an ended attempt's container alive past the bound."""
    monkeypatch.setattr(container_removal, "YIELD_AT_MOST_SECONDS", 0.3)
    engine = FakeEngine()
    engine.containers = {"done": {"Id": "done"}}
    remover = ContainerRemover(busy=lambda: True)
    began = time.monotonic()
    remover.hand_over(engine, "done")
    assert remover.wait(5)
    assert "done" not in engine.containers
    assert 0.3 <= time.monotonic() - began < 2


@pytest.mark.django_db(transaction=True)
def test_starting_attempts_are_those_of_this_queue_waiting_for_a_worker_or_provisioning(alice, settings):
    task = do_create_task(owner=alice, title="t", repo_url="https://github.com/o/r", base_branch="main", prompt="x")
    assert not container_removal.host_is_starting_attempts()
    with held_from_workers():
        attempt = do_start_attempt(task=task, plan=[{"kind": "custom", "title": "s", "argv": ["true"]}])
    Attempt.objects.filter(pk=attempt.pk).update(waiting_for_slot=True)
    assert not container_removal.host_is_starting_attempts()  # no queue task: it waits for a slot, not a worker
    Attempt.objects.filter(pk=attempt.pk).update(waiting_for_slot=False)
    assert container_removal.host_is_starting_attempts()
    assert do_transition(attempt=attempt, to=AttemptStatus.PROVISIONING)
    assert container_removal.host_is_starting_attempts()
    settings.ANYON_WORKER_QUEUE = "another-host"
    assert not container_removal.host_is_starting_attempts()
    settings.ANYON_WORKER_QUEUE = attempt.queue
    assert do_transition(attempt=attempt, to=AttemptStatus.RUNNING)
    assert not container_removal.host_is_starting_attempts()
