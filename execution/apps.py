import logging
import os

from django.apps import AppConfig


class ExecutionConfig(AppConfig):
    name = "execution"
    verbose_name = "Execution"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        post_spawn.connect(cleanup_when_worker_starts, dispatch_uid="anyon-cleanup-on-start")


def cleanup_when_worker_starts(sender, proc_name: str, **kwargs) -> None:
    """A worker that starts after a crash first clears what the crash left: once per cluster start (the cache
    lock keeps the cluster's other worker processes from queueing it again). Each worker process also imports the
    runner now, so that its first attempt does not wait for the imports, and starts the host heartbeat."""
    from django.conf import settings
    from django.core.cache import cache
    from django_q.conf import Conf
    from django_q.tasks import async_task

    if Conf.SYNC:  # django-q2's sync mode runs a task in the caller's process: no worker started, nothing to do
        return

    warm_up_worker()
    from execution.sweeps.host_beat import start_host_beat
    from execution.sweeps.schedules import POOL_REFILL, do_reconcile_schedules

    start_host_beat()  # every worker process; one of them at a time beats (a lock in ANYON_TEMP_DIR)

    queue = settings.ANYON_WORKER_QUEUE
    # The worker processes of one cluster share its sentinel as parent: one cleanup per cluster start.
    try:
        first = cache.add(f"anyon:cleanup-on-start:{queue}:{os.getppid()}", proc_name, timeout=3600)
    except Exception as exc:  # the cache (Redis) away: the scheduled sweeps do this work once it is back
        from shared.outages import is_connection_error, outage, part_of

        if not is_connection_error(exc):
            raise
        outage(part_of(exc)).failed("worker start", exc)
        return
    if first:
        changed = do_reconcile_schedules(queue=queue)  # the registry's, with today's settings
        if changed:
            logging.getLogger(__name__).info("schedules reconciled: %s", changed.line())
        check_store_key()
        async_task(
            "execution.sweeps.cleanup.run_scheduled_cleanup",
            task_name="cleanup-on-start",
            group="maintenance",
            cluster=queue,
        )
        # The warm pool fills (or, at size 0, empties) now, then every minute and after each claim.
        async_task(POOL_REFILL, task_name="pool-refill", group="maintenance", cluster=queue)


def warm_up_worker() -> None:
    """What every attempt needs, made ready before the first one comes: the session's modules (the queue's entry
    points import them lazily; 25 ms idle, three times that with ten attempts starting at once) and this process's
    Docker client (an API-version round trip). An engine that does not answer yet is asked again by the attempt."""
    import contextlib

    import execution.runner.session  # noqa: F401
    from shared.docker.client import shared_docker_client

    with contextlib.suppress(Exception):
        shared_docker_client()


def check_store_key() -> None:
    """A worker that cannot decrypt the store fails every run that needs a credential: an alert now, at its start."""
    import logging

    from secrets_app.key_canary import alert_if_undecryptable, do_ensure_canary

    try:
        do_ensure_canary()
        problem = alert_if_undecryptable("worker")
    except Exception:
        logging.getLogger(__name__).exception("could not check the secret store's key")
        return
    if problem:
        logging.getLogger(__name__).error("worker: %s", problem)
