# Long because the bus, the channel layer, the broker and a live viewer are tested across real processes.
"""Wake-ups between processes of one host without Redis (shared/wakeups/): the socket bus itself, the channel layer
that carries group messages across processes, the queue broker that wakes an idle worker, and a live viewer woken
by a write made in another process. The polls are set to 30 s in the end-to-end tests: only a wake-up can deliver
within the few seconds they allow."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import time

import pytest
import websockets
from django.test import Client

from shared.wakeups import sockets as wakeups
from shared.wakeups.channel_layer import TOPIC, HostChannelLayer
from tests.fixtures.processes import ROOT, start_asgi, subprocess_env
from tests.fixtures.queueing import held_from_workers
from tests.fixtures.waiting import wait_for


@pytest.fixture
def wake_dir(settings, tmp_path):
    settings.ANYON_WAKEUP_DIR = str(tmp_path / "wake")
    return tmp_path / "wake"


def received_within(listener: wakeups.Listener, timeout: float = 2) -> list[bytes]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = listener.receive_all()
        if got:
            return got
        time.sleep(0.01)
    return []


# --- the socket bus -----------------------------------------------------------------------------------------
def test_send_reaches_every_listener_of_the_topic_and_no_other(wake_dir):
    first, second, other = wakeups.Listener("web"), wakeups.Listener("web"), wakeups.Listener("queue-anyon")
    try:
        assert wakeups.send("web", b"hello") == 2
        assert received_within(first) == [b"hello"] and received_within(second) == [b"hello"]
        assert other.receive_all() == []
        assert wakeups.send("web", b"again", skip=first.path) == 1
        assert received_within(second) == [b"again"] and first.receive_all() == []
    finally:
        for listener in (first, second, other):
            listener.close()
    assert list(wake_dir.glob("*.sock")) == []  # closing removes the socket file


def test_directory_and_sockets_are_private(wake_dir):
    listener = wakeups.Listener("web")
    try:
        assert stat.S_IMODE(wake_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(listener.path.stat().st_mode) == 0o600
    finally:
        listener.close()


def test_a_dead_listeners_socket_file_is_removed_by_the_next_sender(wake_dir):
    listener = wakeups.Listener("web")
    listener.sock.close()  # the process died: its file stays, nobody is bound to it
    assert listener.path.exists()
    assert wakeups.send("web", b"x") == 0
    assert not listener.path.exists()


def test_a_full_receiver_or_an_oversized_message_loses_only_the_wakeup(wake_dir):
    listener = wakeups.Listener("web")
    try:
        assert wakeups.send("web", b"x" * (wakeups.MAX_DATAGRAM + 1)) == 0
        sent = sum(wakeups.send("web", b"y" * 4096) for _ in range(2000))  # nobody reads: the buffer fills up
        assert 0 < sent < 2000
        assert listener.path.exists()  # a full buffer is not a dead process
        assert listener.wait(0) is True and listener.receive_all() == []  # wait() consumed everything pending
    finally:
        listener.close()


def test_wait_returns_at_the_wakeup_not_at_the_timeout(wake_dir):
    listener = wakeups.Listener("queue-anyon")
    try:
        started = time.monotonic()
        assert listener.wait(0.2) is False
        assert 0.15 < time.monotonic() - started < 2
        wakeups.send("queue-anyon", b"task")
        started = time.monotonic()
        assert listener.wait(30) is True
        assert time.monotonic() - started < 1
    finally:
        listener.close()


def test_turned_off_or_unusable_directory_means_polling_only(settings, tmp_path):
    settings.ANYON_WAKEUP_DIR = ""
    assert wakeups.send("web", b"x") == 0
    with pytest.raises(OSError, match="turned off"):
        wakeups.Listener("web")
    settings.ANYON_WAKEUP_DIR = str(tmp_path / ("d" * 100))
    with pytest.raises(OSError, match="longer than 107 bytes"):
        wakeups.Listener("web")


def test_a_directory_someone_else_made_or_a_symlink_is_refused(settings, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    settings.ANYON_WAKEUP_DIR = str(tmp_path / "link")
    assert wakeups.wakeup_dir() is None
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    os.chown(foreign, 4242, 4242)  # the suite runs as root in CI; another local user could have made it first
    settings.ANYON_WAKEUP_DIR = str(foreign)
    assert wakeups.wakeup_dir() is None


def test_only_wakeup_types_can_be_sent():
    from shared.live.events import wake_group

    with pytest.raises(ValueError, match="not a wake-up type"):
        wake_group("attempt.1", {"type": "websocket.close"})


def test_the_copied_dequeue_and_enqueue_match_the_installed_django_q2():
    """WakingORMBroker copies django-q2's: an upgrade that changes them must be re-checked, not trusted."""
    import hashlib
    import inspect

    from django_q.brokers.orm import ORM

    from shared.wakeups.queue_broker import UPSTREAM_DEQUEUE_SHA256, UPSTREAM_ENQUEUE_SHA256

    installed = hashlib.sha256(inspect.getsource(ORM.dequeue).encode()).hexdigest()
    assert installed == UPSTREAM_DEQUEUE_SHA256, "django-q2 changed ORM.dequeue: re-check WakingORMBroker.dequeue"
    installed = hashlib.sha256(inspect.getsource(ORM.enqueue).encode()).hexdigest()
    assert installed == UPSTREAM_ENQUEUE_SHA256, "django-q2 changed ORM.enqueue: re-check WakingORMBroker.enqueue"


def test_a_worker_whose_clock_reads_earlier_claims_a_new_task_when_woken(db, wake_dir):
    """The process that queues and the worker that is woken need not agree on the clock to the millisecond (another
    host, or another process's clock): a worker whose clock reads a second earlier still claims the task at once."""
    from datetime import timedelta

    import time_machine
    from django.utils import timezone

    from shared.wakeups.queue_broker import WakingORMBroker

    broker = WakingORMBroker(list_key="skew")
    queued_at = timezone.now()
    with time_machine.travel(queued_at, tick=False):
        broker.enqueue("payload")
    with time_machine.travel(queued_at - timedelta(seconds=1), tick=False):
        assert [payload for _, payload in broker.dequeue()] == ["payload"]
    from django_q.models import OrmQ

    assert OrmQ.objects.get(key="skew").lock > timezone.now() + timedelta(minutes=1)  # claimed: not handed out twice


def test_topic_names_from_the_environment_are_file_name_safe():
    assert wakeups.topic_name("../../etc/passwd") == "______etc_passwd"
    assert wakeups.topic_name("gpu-host_2") == "gpu-host_2"


# --- the channel layer across processes ----------------------------------------------------------------------
NOTIFY = (
    "import django; django.setup(); from shared.live.events import wake_group; "
    "wake_group('attempt.41', {'type': 'attempt.changed', 'seq': 7})"
)


def notify_from_another_process(wake_dir) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "ANYON_WAKEUP_DIR": str(wake_dir)}
    env.pop("REDIS_URL", None)
    subprocess.run([sys.executable, "-c", NOTIFY], cwd=ROOT, env=env, check=True, timeout=60)


@pytest.mark.hostile
def test_group_message_from_another_process_reaches_this_process_consumers(wake_dir):
    async def scenario() -> dict:
        layer = HostChannelLayer()
        channel = await layer.new_channel()
        await layer.group_add("attempt.41", channel)
        # Hostile or broken datagrams first: ignored, and the layer keeps working.
        junk = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        hostile = (
            b"\xff\xfe not json",
            b'{"a": 1}',
            b'["bad group name!", {}]',
            b'["attempt.41", "x"]',
            # a message a consumer would act on, not a wake-up: never delivered from another process
            b'["attempt.41", {"type": "websocket.close"}]',
            b'["attempt.41", {"type": "attempt.changed", "records": [{"text": "forged"}]}]',
        )
        for payload in hostile:
            junk.sendto(payload, str(layer._listener.path))
        junk.close()
        await asyncio.to_thread(notify_from_another_process, wake_dir)
        return await asyncio.wait_for(layer.receive(channel), timeout=10)

    assert asyncio.run(scenario()) == {"type": "attempt.changed", "seq": 7}


def test_group_send_is_delivered_locally_once_not_echoed_back(wake_dir):
    async def scenario() -> list[dict]:
        layer = HostChannelLayer()
        channel = await layer.new_channel()
        await layer.group_add("settings.3", channel)
        await layer.group_send("settings.3", {"type": "settings.changed"})
        got = [await asyncio.wait_for(layer.receive(channel), timeout=2)]
        with pytest.raises(TimeoutError):
            got.append(await asyncio.wait_for(layer.receive(channel), timeout=0.5))
        return got

    assert asyncio.run(scenario()) == [{"type": "settings.changed"}]
    assert list(wake_dir.glob(f"{TOPIC}.*.sock"))  # it listens (and skipped its own socket when sending)


def test_a_wake_up_from_a_thread_without_an_event_loop_makes_none(wake_dir, monkeypatch):
    """An action's on-commit wake-up runs in a plain thread (a worker, a view's thread): it reaches this process's
    members on their own loop and the other processes' listeners, without an event loop of its own (asgiref's
    ``async_to_sync`` made a thread and a loop per wake-up)."""
    from shared.live import events

    def no_event_loop_please(*args, **kwargs):
        raise AssertionError("async_to_sync was used")

    monkeypatch.setattr(events, "async_to_sync", no_event_loop_please)
    layer = HostChannelLayer()
    monkeypatch.setattr(events, "get_channel_layer", lambda: layer)
    other = wakeups.listen(TOPIC)  # another process's listener
    try:

        async def scenario() -> dict:
            channel = await layer.new_channel()
            await layer.group_add("attempt.8", channel)
            await asyncio.to_thread(events._send, "attempt.8", {"type": "attempt.changed", "seq": 3})  # on commit
            return await asyncio.wait_for(layer.receive(channel), timeout=5)

        assert asyncio.run(scenario()) == {"type": "attempt.changed", "seq": 3}
        assert [json.loads(d) for d in received_within(other)] == [["attempt.8", {"type": "attempt.changed", "seq": 3}]]
    finally:
        other.close()


def test_a_process_without_members_only_sends_the_datagram(wake_dir):
    layer = HostChannelLayer()  # a worker's: it never joined a group
    other = wakeups.listen(TOPIC)
    try:
        assert layer.group_send_from_sync("settings.2", {"type": "settings.changed"})
        assert [json.loads(d) for d in received_within(other)] == [["settings.2", {"type": "settings.changed"}]]
    finally:
        other.close()


# --- end to end: a queued task and a live viewer, with 30 s polls ---------------------------------------------
def test_queueing_a_task_wakes_the_idle_worker_at_once(worker_factory, wake_dir):
    from django_q.tasks import async_task, result

    worker_factory(ANYON_QUEUE_POLL_SECONDS="30", ANYON_WAKEUP_DIR=str(wake_dir))
    # The pusher binds its socket when it first finds the queue empty, then waits 30 s.
    wait_for(lambda: list(wake_dir.glob("queue-*.sock")), timeout=30, what="the worker's pusher waiting for wake-ups")
    started = time.monotonic()
    task_id = async_task("math.floor", 2.5)
    assert result(task_id, wait=15_000) == 2
    assert time.monotonic() - started < 15


def test_a_write_in_another_process_reaches_a_live_viewer_at_once(transactional_db, alice, wake_dir):
    from execution.attempts.actions import do_create_task, do_start_attempt
    from execution.logs.writer import LogWriter

    server = start_asgi("wakeup-web", subprocess_env(ANYON_LOG_POLL_SECONDS="30", ANYON_WAKEUP_DIR=str(wake_dir)))
    port = server.url.rsplit(":", 1)[1]
    try:
        task = do_create_task(
            owner=alice, title="t", repo_url="https://github.com/acme/w", base_branch="main", prompt="p"
        )
        with held_from_workers():
            attempt = do_start_attempt(task=task, plan=[])
        client = Client()
        client.force_login(alice)
        cookie = f"sessionid={client.cookies['sessionid'].value}"

        def write_as_the_worker_does() -> None:
            writer = LogWriter(attempt.pk)
            writer.write(None, "stdout", "from the worker\n")
            writer.close()

        async def view() -> float:
            async with websockets.connect(
                f"ws://127.0.0.1:{port}/ws/attempts/{attempt.pk}/logs/",
                additional_headers={"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"},
            ) as ws:
                assert json.loads(await ws.recv())["type"] == "status"  # history (none), then the first status
                await asyncio.sleep(0.5)  # the consumer is now in its 30 s wait
                started = time.monotonic()
                await asyncio.to_thread(write_as_the_worker_does)
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
                    if message["type"] == "logs":
                        assert message["records"][0]["text"] == "from the worker\n"
                        return time.monotonic() - started

        assert asyncio.run(view()) < 5
    finally:
        server.stop()
