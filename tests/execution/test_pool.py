"""The warm pool's refill requests without Docker: one refill queued at a time per host (execution/pool.py)."""

from __future__ import annotations

import pytest

from execution import pool
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
            pool.request_refill()
    assert [func for func, _ in queued] == ["execution.pool.refill_pool"]
    assert queued[0][1]["cluster"] == settings.ANYON_WORKER_QUEUE and queued[0][1]["save"] is False
    settings.ANYON_POOL_SIZE = 0
    pool.refill_pool(engine=FakeEngine())  # it started (nothing to make): the next claim queues another
    with django_capture_on_commit_callbacks(execute=True):
        pool.request_refill()
    assert len(queued) == 2


def test_a_refill_that_could_not_be_queued_does_not_block_the_next(
    temp, monkeypatch, django_capture_on_commit_callbacks
):
    def broker_down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr("django_q.tasks.async_task", broker_down)
    with pytest.raises(ConnectionError), django_capture_on_commit_callbacks(execute=True):
        pool.request_refill()
    assert list(temp.glob("*.refill-queued")) == []
