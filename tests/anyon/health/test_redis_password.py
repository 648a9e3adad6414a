"""Doctor's Redis line: a warning when the Redis in use takes no password and is not a unix socket, against real
redis-servers on 127.0.0.1 (the session's, which has a password, and one without, started here)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from anyon.health import OK, WARN
from anyon.health.scaleout import check_redis, has_password
from tests.fixtures.processes import free_port
from tests.fixtures.services import require_service


@contextmanager
def open_redis(*args: str) -> Iterator[None]:
    """A redis-server without a password (Debian's default), up until the block ends."""
    if not shutil.which("redis-server"):
        require_service("redis-server is not installed (apt-get install redis-server)")
    proc = subprocess.Popen(["redis-server", "--save", "", "--appendonly", "no", *args], stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            redis.from_url(url).ping()
            return
        except redis.ConnectionError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


def test_a_redis_with_a_password_is_ok_and_the_password_is_never_shown(settings, redis_url):
    settings.REDIS_URL = redis_url
    check = check_redis()
    password = redis_url.split(":")[2].split("@")[0]
    assert check.status == OK and "127.0.0.1" in check.detail
    assert password not in check.detail + check.fix


def test_a_redis_without_a_password_on_tcp_is_a_warning_with_the_fix(settings):
    port = free_port()
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    with open_redis("--bind", "127.0.0.1", "--port", str(port)):
        wait_until_up(settings.REDIS_URL)
        check = check_redis()
    assert check.status == WARN and not check.required  # doctor still passes: it works, it is not closed
    assert "without a password" in check.detail and "channel layer" in check.detail
    assert "requirepass" in check.fix and "REDIS_URL" in check.fix


def test_a_unix_socket_needs_no_password(settings, tmp_path: Path):
    socket = tmp_path / "redis.sock"
    settings.REDIS_URL = f"unix://{socket}?db=0"
    with open_redis("--port", "0", "--unixsocket", str(socket), "--unixsocketperm", "700"):
        wait_until_up(settings.REDIS_URL)
        check = check_redis()
    assert check.status == OK


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", False),
        ("redis://anyon@127.0.0.1:6379/0", False),  # a user name alone
        ("redis://:pw@127.0.0.1:6379/0", True),
        ("rediss://anyon:pw@redis.internal:6380/1", True),
        ("redis://127.0.0.1:6379/0?password=pw", True),
        ("unix:///run/redis/redis.sock?db=2", True),
    ],
)
def test_what_counts_as_a_password(url, expected):
    assert has_password(url) is expected
