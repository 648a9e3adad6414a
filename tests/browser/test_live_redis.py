"""An attempt page on a web server whose channel layer is Redis: its connection cut thirty times, then held for a
minute of a quiet run. The page reconnects after each cut and catches up, keeps its socket through the quiet minute
(no error in the web server's log), shows the attempt's end, and the user's count of open live views is what it was
before."""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from playwright.sync_api import expect

from tests.fixtures.browser import login
from tests.fixtures.processes import ARTIFACTS, ROOT, free_port, github_env, start_asgi, start_process, subprocess_env

pytestmark = [pytest.mark.browser, pytest.mark.docker]

RECONNECTS = 30
LIMIT = 3  # ANYON_MAX_WEBSOCKETS_PER_USER of this web server
HOLD_SECONDS = 60


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 in front of the web server whose open connections can be cut, as a network drop
    does: the browser sees its socket end without a closing handshake (1006), the server sees the connection lost."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", free_port()))
        self.port = self.listener.getsockname()[1]
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.pairs.append((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the pipe threads' reads, ends the connection
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()


SETUP = """
from django.conf import settings
from django.contrib.auth.models import User
from execution.attempts.actions import do_create_task, do_start_attempt
user = User.objects.create_user("lena", password="lena password 123")
repo = settings.ANYON_GITHUB_URL + "/a/long"
task = do_create_task(owner=user, title="long", repo_url=repo, base_branch="main", prompt="p")
# Quiet for ten seconds between lines, as a step that thinks: the channel layer's blocking read then waits out its
# five seconds, which redis-py 8's default socket timeout turned into a crash of the page's consumer.
ticks = ["sh", "-c", "for i in $(seq 1 15); do echo tick $i; sleep 10; done"]
print("ID%d" % do_start_attempt(task=task, plan=[{"kind": "custom", "title": "ticks", "argv": ticks}]).pk)
"""

OPEN_EXTRA = """(url) => new Promise((resolve) => {
  const ws = new WebSocket(url);
  window.extraSockets = (window.extraSockets || []).concat([ws]);
  const opened = setTimeout(() => resolve("open"), 3000);
  ws.onclose = (event) => { clearTimeout(opened); resolve(event.code); };
})"""


def test_an_attempt_page_stays_live_on_redis_through_a_minute_and_thirty_dropped_connections(
    page, redis_url, session_github, runtime_image, transactional_db, tmp_path
):
    env = subprocess_env(
        **github_env(session_github),
        REDIS_URL=redis_url,
        ANYON_MAX_WEBSOCKETS_PER_USER=str(LIMIT),
        ANYON_TEMP_DIR=str(tmp_path / "anyon-tmp"),
        ANYON_CLOUD_NETWORK="none",
    )
    web = start_asgi("redis-live-web", env)
    worker = start_process("redis-live-worker", [sys.executable, "manage.py", "qcluster"], env)
    proxy = CuttableProxy(int(web.url.rsplit(":", 1)[1]))
    url = f"http://127.0.0.1:{proxy.port}"
    try:
        # Made by a process with REDIS_URL, so that its task goes into the Redis queue the worker reads.
        made = subprocess.run([sys.executable, "manage.py", "shell", "-c", SETUP], cwd=ROOT, env=env,
                              capture_output=True, text=True)  # fmt: skip
        assert made.returncode == 0, made.stderr
        attempt_id = int(made.stdout.split("ID", 1)[1])
        login(page, url, "lena", "lena password 123")
        page.goto(f"{url}/attempts/{attempt_id}/")
        opened_at = time.monotonic()
        state = page.get_by_test_id("live-state")
        expect(state).to_have_text("live", timeout=60_000)
        page.wait_for_function("() => document.getElementById('log').textContent.includes('tick 1')", timeout=90_000)

        for _ in range(RECONNECTS):
            connects = int(state.get_attribute("data-connects"))
            proxy.cut()
            page.wait_for_function(
                f"() => Number(document.getElementById('live-state').dataset.connects) > {connects}", timeout=20_000
            )
        # Then a minute without a cut: the socket stays (no reconnect), and the web server logs no error.
        connects, held_from = state.get_attribute("data-connects"), time.monotonic()
        while time.monotonic() - held_from < HOLD_SECONDS:
            time.sleep(5)
            assert state.get_attribute("data-connects") == connects, "the socket dropped without a cut"
        assert page.get_by_test_id("attempt-status").get_attribute("data-status") == "running", "the run ended early"
        expect(state).to_have_text("live")

        # The page holds one live view: the user has room for exactly LIMIT - 1 more, as before the cuts.
        ws_url = f"ws://127.0.0.1:{proxy.port}/ws/attempts/{attempt_id}/logs/"
        results = [page.evaluate(OPEN_EXTRA, ws_url) for _ in range(LIMIT)]
        assert results == ["open"] * (LIMIT - 1) + [4429], results
        page.evaluate("() => window.extraSockets.forEach((ws) => ws.close())")

        page.wait_for_selector('[data-testid="attempt-status"][data-status="succeeded"]', timeout=120_000)
        assert time.monotonic() - opened_at > HOLD_SECONDS
        expect(state).to_have_text("complete", timeout=30_000)
        log = page.get_by_test_id("log").inner_text()
        ticks_seen = [line for line in log.splitlines() if line.startswith("tick ")]
        assert ticks_seen == [f"tick {i}" for i in range(1, 16)]  # every line once, in order, across the cuts
        page.screenshot(path=str(ARTIFACTS / "redis-live-complete.png"), full_page=True)
    finally:
        proxy.close()
        web.stop()
        worker.stop()
    output = web.output()
    for bad in ("Traceback", "Exception inside application", " ERROR "):
        assert bad not in output, output[-4000:]
