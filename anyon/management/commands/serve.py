"""``manage.py serve``: run the web server (daphne) and the worker (qcluster) together, as ``make run`` does.

Both run as child processes in their own process groups. Ctrl-C / SIGTERM stops both; qcluster can hang on
SIGTERM (django-q2 #346), so after a grace period the whole group is killed. When either child exits, the other is
stopped too and the command exits non-zero, so a supervisor (systemd) sees the failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from anyon.health import check_docker
from shared.credential_mode import CredentialMode
from shared.tempdir import TempDirError, ensure_temp_dir

GRACE_SECONDS = 10


def stop_process_group(proc: subprocess.Popen, *, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it has not exited after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


#: What happens to runs while the engine is down (docs/RUNBOOK.md, "Docker engine outage", says the same).
SERVE_WITHOUT_DOCKER = "Starting anyway; until the engine answers, a worker takes each run and fails it at once."


def web_argv(host: str, port: int) -> list[str]:
    """Daphne serving the app. A websocket frame larger than ``ANYON_WS_MAX_MESSAGE_BYTES`` closes its socket as
    soon as its header announces the size, before the payload is buffered (autobahn's ``maxFramePayloadSize``); a
    message of many small frames stops at daphne's own 1 MiB; the consumers then check what they accept in detail.
    (``--websocket-max-message-size`` is not lowered: with it, daphne stopped sending the server's own messages
    above that size, the batches a viewer of a busy run receives.)"""
    limit = str(settings.ANYON_WS_MAX_MESSAGE_BYTES)
    return [
        sys.executable,
        "-m",
        "daphne",
        "-b",
        host,
        "-p",
        str(port),
        "--websocket-max-frame-size",
        limit,
        "anyon.asgi:application",
    ]


class Command(BaseCommand):
    help = "Start the web server, the worker and (sealed mode) the egress proxy; stop them all on Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=os.environ.get("ANYON_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("ANYON_PORT", "8000")))
        parser.add_argument("--no-worker", action="store_true", help="start only the web server")

    def handle(self, *args, **options) -> None:
        try:
            ensure_temp_dir(settings.ANYON_TEMP_DIR)
        except (TempDirError, PermissionError) as exc:
            raise CommandError(f"ANYON_TEMP_DIR: {exc}") from None
        docker = check_docker()
        if docker.failed:
            self.stderr.write(self.style.WARNING(f"Docker engine: {docker.detail}. Fix: {docker.fix}"))
            self.stderr.write(self.style.WARNING(SERVE_WITHOUT_DOCKER))
        python = sys.executable
        children: dict[str, subprocess.Popen] = {
            "web": subprocess.Popen(web_argv(options["host"], options["port"]), start_new_session=True)
        }
        if not options["no_worker"]:
            # Sealed runs reach out only through this host's proxy.
            if settings.ANYON_CREDENTIAL_MODE == CredentialMode.SEALED:
                children["egress"] = subprocess.Popen(
                    [python, "manage.py", "egress_proxy"], cwd=settings.BASE_DIR, start_new_session=True
                )
            children["worker"] = subprocess.Popen(
                [python, "manage.py", "qcluster"], cwd=settings.BASE_DIR, start_new_session=True
            )
        self.stdout.write(
            self.style.SUCCESS(f"Anyon Cloud on http://{options['host']}:{options['port']}/  (Ctrl-C stops)")
        )

        stopping = {"flag": False}

        def on_signal(signum, frame) -> None:
            stopping["flag"] = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        exited = ""
        while not stopping["flag"] and not exited:
            for name, proc in children.items():
                if proc.poll() is not None:
                    exited = name
            time.sleep(0.3)
        if exited:
            self.stderr.write(self.style.ERROR(f"{exited} exited with {children[exited].returncode}; stopping"))
        for proc in children.values():
            stop_process_group(proc)
        self.stdout.write("Stopped.")
        if exited:
            sys.exit(1)
