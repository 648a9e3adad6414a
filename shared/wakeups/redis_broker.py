"""django-q2's Redis broker, patient with Redis: used when ``REDIS_URL`` is set.

Stock, a Redis outage made the worker write an error twice a second (the cluster's status, saved every guard cycle
of 0.5 s) and a traceback from the pusher, which then gave up and was restarted by the sentinel. Here the pusher
waits out the outage with a growing pause, the status is skipped while Redis is away, and the whole outage is two
lines (shared/outages.py): one when Redis stops answering, one when it answers again. Its connections use the
client settings of every Redis connection of the app (``REDIS_CLIENT_OPTIONS``).
"""

from __future__ import annotations

import time

import redis
from django.conf import settings
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf

from shared.outages import outage

#: Longest pause between two tries of a pusher while Redis does not answer (it also bounds how late it stops).
MAX_PAUSE_SECONDS = 5.0


class PatientRedisBroker(Redis):
    _pause = 0.0

    @staticmethod
    def get_connection(list_key: str | None = None) -> redis.Redis:
        # BLPOP blocks for 1 s: the socket timeout only has to exceed that, and a dead connection shows sooner.
        options = {**settings.REDIS_CLIENT_OPTIONS, "socket_timeout": 10}
        if isinstance(Conf.REDIS, str):
            return redis.from_url(Conf.REDIS, **options)
        return redis.Redis(**{**options, **Conf.REDIS})

    def dequeue(self):
        try:
            task = super().dequeue()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            outage("redis").failed("task queue", exc)
            self._pause = min(max(self._pause * 2, 0.5), MAX_PAUSE_SECONDS)
            time.sleep(self._pause)
            return None
        self._pause = 0.0
        outage("redis").answered()
        return task

    def set_stat(self, key: str, value: str, timeout: int) -> None:
        """The cluster's status for ``doctor`` and the admin: skipped (not logged each time) while Redis is away."""
        if not outage("redis").should_try():
            return
        try:
            super().set_stat(key, value, timeout)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            outage("redis").failed("worker status", exc)
        else:
            outage("redis").answered()
