"""The warm pool without Docker: one refill queued at a time per host (execution/hosts/pool/refill_queue.py)."""

from __future__ import annotations

import pytest

from execution.hosts.pool import actions as pool_actions
from execution.hosts.pool import fingerprint as pool_fingerprint
from execution.hosts.pool import refill, refill_queue
from tests.fakes.docker_engine import FakeEngine

pytestmark = pytest.mark.django_db


@pytest.fixture
def temp(settings, tmp_path):
    settings.ANYON_TEMP_DIR = tmp_path / "anyon-tmp"
    return settings.ANYON_TEMP_DIR


def test_claims_at_once_queue_one_refill_until_it_starts(
    temp, settings, monkeypatch, django_capture_on_commit_callbacks
):
    queued: list[tuple[str, dict]] = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kwargs: queued.append((func, kwargs)))
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(10):  # ten claims at once
            refill_queue.request_refill()
    assert [func for func, _ in queued] == ["execution.hosts.pool.refill.refill_pool"]
    assert queued[0][1]["cluster"] == settings.ANYON_WORKER_QUEUE and queued[0][1]["save"] is False
    settings.ANYON_POOL_SIZE = 0
    refill.refill_pool(engine=FakeEngine())  # it started (nothing to make): the next claim queues another
    with django_capture_on_commit_callbacks(execute=True):
        refill_queue.request_refill()
    assert len(queued) == 2


def test_a_refill_that_could_not_be_queued_does_not_block_the_next(
    temp, monkeypatch, django_capture_on_commit_callbacks
):
    def broker_down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr("django_q.tasks.async_task", broker_down)
    with pytest.raises(ConnectionError), django_capture_on_commit_callbacks(execute=True):
        refill_queue.request_refill()
    assert list(temp.glob("*.refill-queued")) == []


def test_a_warm_container_past_its_maximum_age_on_the_wall_clock_is_not_claimed(temp, settings, monkeypatch):
    """ANYON_POOL_MAX_AGE counts from when the warm container was made: a claim a second before the limit (here over
    a month end and midnight UTC) gets it, a claim a second after does not."""
    from datetime import UTC, datetime

    import time_machine

    from execution.models import PoolContainer
    from tests.execution.conftest import make_attempt

    monkeypatch.setattr(pool_actions, "request_refill", lambda: None)
    settings.ANYON_POOL_SIZE, settings.ANYON_POOL_MAX_AGE = 2, 600
    engine = FakeEngine()
    engine.containers["warm-1"] = {"Id": "warm-1", "Name": "warm-1", "running": True, "Labels": {}}

    made = datetime(2027, 4, 30, 23, 55, tzinfo=UTC)
    PoolContainer.objects.create(
        queue=settings.ANYON_WORKER_QUEUE, container_id="warm-1", name="warm-1", workspace_volume="v",
        secret_dir="pool-1", fingerprint=pool_fingerprint.fingerprint(engine), created_at=made,
    )  # fmt: skip
    with time_machine.travel(datetime(2027, 5, 1, 0, 5, 1, tzinfo=UTC), tick=False):
        assert pool_actions.do_claim_warm_container(attempt=make_attempt("late"), engine=engine) is None
    with time_machine.travel(datetime(2027, 5, 1, 0, 4, 59, tzinfo=UTC), tick=False):
        claimed = pool_actions.do_claim_warm_container(attempt=make_attempt("in-time"), engine=engine)
    assert claimed is not None and claimed.container_id == "warm-1"
