"""One attempt floods the real proxy process (connections until refused, requests as fast as it can, from its own
process); the neighbour attempt's Claude round trips stay as fast as without the flood, the workers' control ping
keeps answering, and the proxy stays up: under the 1024 open files a service gets by default, and with the limit the
proxy raises itself to."""

from __future__ import annotations

import json
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.egress import API_SOCKET, PROXY_SOCKET, EgressClient, Grant
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.shared.egress.conftest import short_tempdir

pytestmark = pytest.mark.hostile  # attacks: counted in docs/QA_CHECKLIST.md

ROOT = Path(__file__).resolve().parents[3]
PLACEHOLDER = "anyon-flood-placeholder"
KEY_A, KEY_B = "sk-ant-api03-" + "A" * 40, "sk-ant-api03-" + "B" * 40
TURN = json.dumps(
    {"model": "m", "max_tokens": 8, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
).encode()
FLOOD_SECONDS = 6


def round_trip(path: str) -> tuple[float, bytes]:
    """One streamed Messages request through ``api.sock``, the way the CLI's bridge makes it; (seconds, answer)."""
    started = time.monotonic()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(
            f"POST /v1/messages?beta=true HTTP/1.1\r\nHost: b\r\nx-api-key: {PLACEHOLDER}\r\n"
            f"Content-Length: {len(TURN)}\r\nConnection: close\r\n\r\n".encode()
            + TURN
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return time.monotonic() - started, answer


@pytest.mark.parametrize("file_limit", [1024, None], ids=["1024-open-files", "raised-limit"])
def test_a_flooding_attempt_stops_neither_its_neighbour_nor_the_control_socket(file_limit):
    root = short_tempdir("egf-")
    control = root / "control.sock"
    credentials = root / "credentials.json"
    credentials.write_text(json.dumps({"A": {"anthropic": KEY_A}, "B": {"anthropic": KEY_B}}))
    log = (root / "proxy.log").open("w")

    def limit_files() -> None:  # as systemd starts a unit without LimitNOFILE=: 1024, and no higher hard limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (file_limit, file_limit))

    with FakeAnthropicAPI(delay=0.3) as api:
        proxy = subprocess.Popen(
            [sys.executable, "-m", "shared.egress", "--control", str(control), "--credentials", str(credentials)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit_files if file_limit else None,
        )  # fmt: skip
        flooder = None
        try:
            client = EgressClient(control, timeout=2)
            deadline = time.monotonic() + 20
            while not (control.exists() and client.ping()):
                assert time.monotonic() < deadline and proxy.poll() is None, (root / "proxy.log").read_text()
                time.sleep(0.1)
            internal = [api.url.removeprefix("http://")]
            sockets = {}
            for name in ("A", "B"):
                (root / name).mkdir()
                grant = Grant(attempt_id=name, placeholder=PLACEHOLDER, anthropic_url=api.url, internal=internal)
                sockets[name] = client.open(grant, root / name)

            idle = [round_trip(sockets["B"][API_SOCKET])[0] for _ in range(5)]
            baseline = statistics.median(idle)

            flooder = subprocess.Popen(
                [sys.executable, "-m", "tests.shared.egress.hostile_flood", sockets["A"][API_SOCKET],
                 sockets["A"][PROXY_SOCKET], "--seconds", str(FLOOD_SECONDS), "--placeholder", PLACEHOLDER],
                cwd=ROOT, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            time.sleep(1.5)  # its connections are open, its requests running
            trips, pings = [], []
            while flooder.poll() is None and len(trips) < 40:
                pings.append(client.ping())
                trips.append(round_trip(sockets["B"][API_SOCKET]))
            flood = json.loads(flooder.communicate(timeout=30)[0])

            assert proxy.poll() is None, (root / "proxy.log").read_text()[-3000:]
            assert client.ping()
            assert pings and all(pings), pings
            assert len(trips) >= 3
            for seconds, answer in trips:
                assert answer.startswith(b"HTTP/1.1 200") and b"message_stop" in answer, answer[:300]
                assert seconds <= 1.5 * baseline, f"{seconds:.3f}s under the flood, {baseline:.3f}s without"
            # The flood itself: capped, then throttled.
            assert flood["held"] <= 64 and flood["refused"] > 0, flood
            assert flood["requests"].get("429", 0) > 0, flood
            status = {a["attempt"]: a for a in client.status()["attempts"]}
            assert status["A"]["refused_connections"] > 0 and status["A"]["throttled"] > 0
            assert status["B"]["refused_connections"] == 0 and status["B"]["throttled"] == 0
            a_requests = [r for r in api.messages_requests() if r.credential == KEY_A]
            assert len(a_requests) <= 200 + 20 * (FLOOD_SECONDS + 5)  # burst + rate for the flood's length
        finally:
            if flooder is not None and flooder.poll() is None:
                flooder.kill()
            proxy.terminate()
            proxy.wait(10)
            log.close()
