"""``manage.py serve`` (what ``make run`` ends with): starts web and worker, stops both, escalates to SIGKILL."""

import os
import signal
import subprocess
import sys
import time
import urllib.request

from anyon.management.commands.serve import stop_process_group
from tests.fixtures.processes import ROOT, free_port

IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
)


def test_stop_escalates_to_sigkill_for_a_child_that_ignores_sigterm():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            IGNORES_SIGTERM,
        ],
        start_new_session=True,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout.readline().strip() == b"up"
    started = time.monotonic()
    stop_process_group(proc, grace=1)
    assert proc.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10


def test_serve_starts_web_and_worker_and_stops_on_sigint(tmp_path):
    port = free_port()
    env = dict(
        os.environ,
        DATABASE_URL=f"sqlite:///{tmp_path}/serve.db",
        ANYON_TEMP_DIR=str(tmp_path / "anyon-tmp"),
        DOCKER_HOST="unix:///nonexistent/docker.sock",
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    subprocess.run([sys.executable, "manage.py", "createcachetable"], cwd=ROOT, env=env, check=True, timeout=60)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        body = ""
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2) as response:
                    body = response.read().decode()
                break
            except OSError:
                time.sleep(0.3)
        assert "Sign in" in body
        # The temp dir was created private, and without Docker the server still came up.
        assert (tmp_path / "anyon-tmp").stat().st_mode & 0o777 == 0o700
        children = subprocess.run(["pgrep", "-f", "manage.py qcluster"], capture_output=True, text=True).stdout
        assert children.strip(), "the worker was not started"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=40)
    assert "Docker engine" in out and "Starting anyway; until the engine answers" in out
    assert "Stopped." in out
    leftover = subprocess.run(["pgrep", "-f", f"daphne -b 127.0.0.1 -p {port}"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""
