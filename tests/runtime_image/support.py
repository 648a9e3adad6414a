"""Helpers for tests of the runtime image: fake credentials, execs with exit codes, leak searches."""

from __future__ import annotations

import json
import re
import secrets
import socket
import string
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from docker.utils.socket import consume_socket_output, demux_adaptor, frames_iter

from tests.fixtures.leaks import track_secret

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "runtime-image" / "Dockerfile"
SECRETS_MOUNT = "/run/anyon-secrets"
#: The image's user (build arg CONTAINER_UID, default 61000), as the worker is configured to use it.
CONTAINER_UID = settings.ANYON_CONTAINER_UID
#: Where a leaked credential could have been written inside the container.
SEARCHED_DIRS = ("/home/anyon", "/workspace", "/tmp", "/etc")


#: The hardening the worker applies to attempt containers (execution/docker_engine.py): the image must work under it.
HARDENING = {
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
    "pids_limit": 512,
    "tmpfs": {"/tmp": "rw,nosuid,nodev,size=512m"},
}


def dockerfile_arg(name: str) -> str:
    """Default of ``ARG name=...`` in runtime-image/Dockerfile (the single source of every version)."""
    match = re.search(rf"^ARG {name}=(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, f"no ARG {name}= in {DOCKERFILE}"
    return match.group(1)


def _random(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def fake_oauth_token() -> str:
    """Shaped like a `claude setup-token` token; obviously fake (FAKE marker), registered for the leak check."""
    return track_secret(f"sk-ant-oat01-FAKE{_random(40)}")


def fake_api_key() -> str:
    return track_secret(f"sk-ant-api03-FAKE{_random(80)}")


def fake_github_token() -> str:
    return track_secret(f"ghp_{_random(36)}")


@dataclass
class ExecResult:
    exec_id: str
    exit_code: int
    stdout: str
    stderr: str


def run_exec(
    docker_client,
    container,
    argv: list[str],
    *,
    environment: dict[str, str] | None = None,
    user: str = "",
    timeout: float = 180,
) -> ExecResult:
    """``docker exec`` with separate stdout/stderr and the exit code (``exec_run(stream=True)`` has none)."""
    api = docker_client.api
    exec_id = api.exec_create(container.id, argv, environment=environment, user=user)["Id"]
    out, err = [], []
    for stdout, stderr in api.exec_start(exec_id, stream=True, demux=True):
        if stdout:
            out.append(stdout)
        if stderr:
            err.append(stderr)
    deadline = time.monotonic() + timeout
    info = api.exec_inspect(exec_id)
    while info["Running"]:
        assert time.monotonic() < deadline, f"exec {argv} still running after {timeout} s"
        time.sleep(0.1)
        info = api.exec_inspect(exec_id)
    return ExecResult(exec_id, info["ExitCode"], b"".join(out).decode(), b"".join(err).decode())


def assert_not_in_inspect(docker_client, container, exec_ids: Iterable[str], values: Iterable[str]) -> None:
    """Neither ``docker inspect`` of the container nor of any of its execs shows any of ``values``."""
    container.reload()
    dumps = {"container": json.dumps(container.attrs)}
    for exec_id in exec_ids:
        dumps[f"exec {exec_id[:12]}"] = json.dumps(docker_client.api.exec_inspect(exec_id))
    for value in values:
        for what, text in dumps.items():
            assert value not in text, f"an injected secret (…{value[-4:]}) appears in docker inspect of the {what}"


def _grep_container(docker_client, container, patterns: list[str], user: str) -> tuple[int, str]:
    """Run ``grep -rlF`` over the searched folders as ``user``; the patterns travel on stdin, never in argv
    (which exec inspect shows). Returns grep's exit code and the files it listed."""
    api = docker_client.api
    argv = ["grep", "-rlsF", "-f", "/dev/stdin", *SEARCHED_DIRS]
    exec_id = api.exec_create(container.id, argv, stdin=True, user=user)["Id"]
    sock = api.exec_start(exec_id, socket=True)
    raw = getattr(sock, "_sock", sock)
    raw.sendall(("\n".join(patterns) + "\n").encode())
    raw.shutdown(socket.SHUT_WR)  # end of grep's stdin
    frames = (demux_adaptor(*frame) for frame in frames_iter(sock, tty=False))
    stdout, _stderr = consume_socket_output(frames, demux=True)
    sock.close()
    info = api.exec_inspect(exec_id)
    while info["Running"]:
        time.sleep(0.1)
        info = api.exec_inspect(exec_id)
    return info["ExitCode"], (stdout or b"").decode(errors="replace")


def assert_not_on_disk(docker_client, container, values: Iterable[str]) -> None:
    """No file under the searched folders contains any of ``values`` (nor its last 20 characters).

    Searched twice, as the container user and as root: in a hardened container (cap_drop=ALL) root cannot read
    the user's private files, the user cannot read root's; together they read every file either of them owns.
    Exit code 2 (some file unreadable for that user) is therefore fine; any listed file is a leak.
    """
    patterns = []
    for value in values:
        patterns += [value, value[-20:]]
    for user in ("", "root"):
        code, listed = _grep_container(docker_client, container, patterns, user)
        assert code in (1, 2) and not listed.strip(), f"an injected secret is in files of the container: {listed}"


def secrets_volume(path: Path) -> dict[str, dict[str, str]]:
    """Mount ``path`` read-only where anyon-exec looks for secrets."""
    return {str(path): {"bind": SECRETS_MOUNT, "mode": "ro"}}
