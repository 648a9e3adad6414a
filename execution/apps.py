from django.apps import AppConfig


class ExecutionConfig(AppConfig):
    name = "execution"
    verbose_name = "Execution"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        post_spawn.connect(cleanup_when_worker_starts, dispatch_uid="anyon-cleanup-on-start")


def cleanup_when_worker_starts(sender, proc_name: str, **kwargs) -> None:
    """A worker that starts after a crash first clears what the crash left: once per cluster start (the cache
    lock keeps the cluster's other worker processes from queueing it again)."""
    from django.core.cache import cache
    from django_q.tasks import async_task

    if cache.add("anyon:cleanup-on-start", proc_name, timeout=60):
        async_task("execution.cleanup.run_scheduled_cleanup", task_name="cleanup-on-start", group="maintenance")
