"""The servers the processes share: Redis (with ``REDIS_URL``) and what runs over it or over the database: the cache,
the channel layer and the task broker. Each check answers within seconds when its server is down, and says which."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

from django.conf import settings

from anyon.health.checks import CACHE_TABLE_FIX, FAIL, OK, WARN, Check, cache_error
from shared.outages import describe

#: Seconds a check waits for Redis (connect and each answer).
TIMEOUT = 2.0
REDIS_FIX = "start Redis (systemctl start redis-server) and check REDIS_URL; docs/RUNBOOK.md, 'Redis outage'"
NO_PASSWORD_FIX = (
    "set requirepass in Redis's config and put the password into REDIS_URL (redis://:<password>@host:6379/0; "
    "deploy/install.sh does both for the Redis it installs); docs/DEPLOYMENT.md, 'Redis password'"
)
DATABASE_FIX = "start the database server and check DATABASE_URL; docs/RUNBOOK.md, 'PostgreSQL outage'"


def redis_location(url: str) -> str:
    """``host:port/db`` of a Redis URL, without its password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    db = parts.path.lstrip("/") or "0"
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}/{db}"


def _fix() -> str:
    return REDIS_FIX if settings.REDIS_URL else DATABASE_FIX


def check_redis() -> Check:
    name = "redis"
    if not settings.REDIS_URL:
        detail = "not used (REDIS_URL unset): database cache and queue, wake-ups between this host's processes"
        return Check(name, OK, detail, required=False)
    import redis

    where = redis_location(settings.REDIS_URL)
    try:
        client = redis.from_url(settings.REDIS_URL, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT)
        try:
            version = client.info("server").get("redis_version", "?")
        finally:
            client.close()
    except redis.RedisError as exc:
        return Check(name, FAIL, f"not reachable at {where}: {describe(exc)}", REDIS_FIX)
    if not has_password(settings.REDIS_URL):
        return Check(
            name,
            WARN,
            f"Redis {version} at {where} without a password: every account that reaches it can read the task queue "
            "and publish on the channel layer",
            NO_PASSWORD_FIX,
            required=False,
        )
    return Check(name, OK, f"Redis {version} at {where}")


def has_password(url: str) -> bool:
    """A Redis URL that authenticates (``redis://:<password>@``, ``redis://<user>:<password>@``, ``?password=``), or
    a unix socket, whose file mode decides who reaches it."""
    parts = urlsplit(url)
    return parts.scheme == "unix" or bool(parts.password) or "password" in parse_qs(parts.query)


def check_cache() -> Check:
    """The cache (Redis or the database) keeps the worker's heartbeat and the cluster's start-up lock."""
    from django.core.cache import cache

    name = "cache"
    key, value = "anyon:health:cache", secrets.token_hex(4)
    try:
        cache.set(key, value, 30)
        answered = cache.get(key)
    except Exception as exc:
        if "anyon_cache" in cache_error(exc):  # a database set up with `migrate` alone
            return Check(name, FAIL, cache_error(exc), CACHE_TABLE_FIX)
        return Check(name, FAIL, f"not answering: {describe(exc)}", _fix())
    if answered != value:
        return Check(name, FAIL, "a value written was not read back", _fix())
    return Check(name, OK, "Redis" if settings.REDIS_URL else "database table anyon_cache")


async def _round_trip(layer) -> bool:
    import asyncio

    channel = await layer.new_channel()
    nonce = secrets.token_hex(4)
    await asyncio.wait_for(layer.send(channel, {"type": "health.check", "nonce": nonce}), TIMEOUT)
    message = await asyncio.wait_for(layer.receive(channel), TIMEOUT)
    return message.get("nonce") == nonce


def check_channel_layer() -> Check:
    """Live pages are woken through it (the data itself comes from the database)."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    name = "channel layer"
    layer = get_channel_layer()
    if layer is None:
        return Check(name, FAIL, "no channel layer configured", "check CHANNEL_LAYERS")
    kind = type(layer).__name__
    if not settings.REDIS_URL:
        return Check(name, OK, f"{kind}: groups in each process, wake-ups between this host's processes")
    try:
        if not async_to_sync(_round_trip)(layer):
            return Check(name, FAIL, "a message sent was not received back", REDIS_FIX)
    except Exception as exc:
        return Check(name, FAIL, f"{kind} not answering: {describe(exc)}", REDIS_FIX)
    return Check(name, OK, f"{kind}: a message went through Redis and back")


def check_broker() -> Check:
    """The task queue: starting an attempt puts a task here for a worker."""
    from django_q.brokers import get_broker

    name = "task queue"
    try:
        broker = get_broker()
        try:
            if settings.REDIS_URL:
                broker.connection.ping()
            waiting = broker.queue_size()
        finally:
            if settings.REDIS_URL:
                broker.connection.close()
    except Exception as exc:
        return Check(name, FAIL, f"not answering: {describe(exc)}", _fix())
    where = "Redis" if settings.REDIS_URL else "the database"
    return Check(name, OK, f"in {where}, {waiting or 0} task(s) waiting")
