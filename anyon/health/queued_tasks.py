"""Whether every task waiting in the queue names a function this code has (docs/RUNBOOK.md, "Upgrading: drain the
queue first"): a queued task stores its function as a dotted path, and an upgrade that moved the module leaves it
failing to import when a worker takes it."""

from __future__ import annotations

from collections import Counter

from django.conf import settings
from django.utils.module_loading import import_string

from anyon.health.checks import OK, WARN, Check

#: At most this many queued tasks are read (per queue with Redis): a cheap look, not an audit.
LOOK_AT = 1000
FIX = (
    "let a worker of the version that queued them run them, or delete them (Admin → Django Q → Queued tasks) and "
    "start the attempts again: docs/RUNBOOK.md, 'Upgrading: drain the queue first'"
)


def _payloads() -> list[str]:
    if settings.REDIS_URL:
        from django_q.brokers import get_broker

        payloads = []
        for queue in settings.ANYON_WORKER_QUEUES:
            broker = get_broker(list_key=queue)
            try:
                payloads += broker.connection.lrange(broker.list_key, 0, LOOK_AT - 1)
            finally:
                broker.connection.close()
        return payloads
    from django_q.models import OrmQ

    return list(OrmQ.objects.order_by("id").values_list("payload", flat=True)[:LOOK_AT])


def _missing(payload) -> str:
    """The function a queued task names that does not import here; "" when it does."""
    from django_q.signing import SignedPackage

    try:
        func = SignedPackage.loads(payload).get("func")
    except Exception as exc:  # pickled by reference to a module that is gone, or signed with another key
        return f"(unreadable: {type(exc).__name__})"
    if not isinstance(func, str):
        return ""
    try:
        import_string(func)
    except ImportError:
        return func
    return ""


def check_queued_tasks() -> Check:
    name = "queued tasks"
    try:
        payloads = _payloads()
    except Exception as exc:
        return Check(name, WARN, f"cannot read the queue: {type(exc).__name__}", required=False)
    missing = Counter(filter(None, map(_missing, payloads)))
    if missing:
        listed = ", ".join(f"{func} ({count})" for func, count in sorted(missing.items()))
        return Check(name, WARN, f"waiting tasks name what this code lacks: {listed}", FIX, required=False)
    return Check(name, OK, f"{len(payloads)} waiting, each naming a function this code has", required=False)
