"""django-q2's ORM broker with wake-ups: queueing a task wakes this host's idle worker of that queue at once.

The stock ORM broker's pusher sleeps ``poll`` seconds whenever the queue is empty, so every attempt waited half a
poll interval on average before a worker looked. Here the pusher waits on a wake-up socket
(:mod:`shared.wakeups.sockets`) for at most that long, and :meth:`enqueue` wakes it. Workers on other hosts
(PostgreSQL without Redis) still find the task by polling. Used when ``REDIS_URL`` is unset (with Redis,
django-q2's Redis broker blocks on the list).
"""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta

from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf

from shared.wakeups import sockets as wakeups

logger = logging.getLogger(__name__)


#: SHA-256 of the source of django-q2's ``ORM.dequeue`` that :meth:`WakingORMBroker.dequeue` copies (django-q2
#: 1.11.1). A test compares it with the installed django-q2, so an upgrade that changes it fails until re-checked.
UPSTREAM_DEQUEUE_SHA256 = "c4e346b7cb21e6fff155cf553e12bd72fcb56064c468dc956590269796d93b01"
#: The same for ``ORM.enqueue``, which :meth:`WakingORMBroker.enqueue` copies with an earlier lock.
UPSTREAM_ENQUEUE_SHA256 = "fed90e1fc44623221aa2fc010971aa1837b6574defcab15c8481e73a9196c6d0"


def queue_topic(list_key: str) -> str:
    return "queue-" + wakeups.topic_name(list_key)


#: How far behind the enqueuing process's clock a worker's may be and still see a new task when it is woken. The
#: stock broker stamps a new task's lock with "now" and claims tasks whose lock is strictly earlier than its own
#: "now": a worker on another host, or in a process whose clock reads a millisecond earlier, woken at once, found
#: nothing and slept a whole poll interval. New tasks are stamped this much in the past instead; a claimed task's
#: lock is "now + retry", far beyond it, so claiming stays exclusive.
CLOCK_SKEW_ALLOWANCE = timedelta(seconds=5)


class WakingORMBroker(ORM):
    _listener: wakeups.Listener | None = None
    _listener_failed = False

    def enqueue(self, task):
        package = self.get_connection().create(
            key=self.list_key or Conf.CLUSTER_NAME, payload=task, lock=timezone.now() - CLOCK_SKEW_ALLOWANCE
        )
        task_id = package.pk
        wakeups.send(queue_topic(self.list_key or Conf.CLUSTER_NAME), b"task")
        return task_id

    def dequeue(self):
        """Claim up to ``bulk`` tasks whose lock has passed; with none, wait for a wake-up (at most ``poll``)."""
        tasks = list(self.get_connection().filter(key=self.list_key, lock__lt=timezone.now())[: Conf.BULK])
        claimed = [
            (task.pk, task.payload)
            for task in tasks
            # a conditional update: when another cluster claimed the task first, it changes no row
            if self.get_connection().filter(id=task.pk, lock=task.lock).update(lock=self.timeout(task))
        ]
        if claimed:
            return claimed
        listener = self._wake_listener()
        if listener is None:
            time.sleep(Conf.POLL)
        else:
            listener.wait(Conf.POLL)
        return None

    def _wake_listener(self) -> wakeups.Listener | None:
        """Bound in the process that dequeues (the cluster's pusher), on first use."""
        if self._listener_failed:
            return None
        if self._listener is None or self._listener.pid != os.getpid():
            self._listener = wakeups.listen(queue_topic(self.list_key))
            if self._listener is None:
                logger.info("queue %s: no wake-ups, polling every %s s", self.list_key, Conf.POLL)
                self._listener_failed = True
        return self._listener
