"""The network policy in the real proxy process (``python -m shared.egress``), driven over its control socket, with
HTTP servers on 127.0.0.1 only: allowed by a rule, refused readably and reported, allowed live, denied by the
operator whatever the rule, observed and proposed, read-only, and counted in the network record."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.egress import PROXY_SOCKET, EgressClient, EgressError, NetworkPolicy, NetworkRule
from tests.fakes.http_server import FakeHTTPServer, Recorded, Reply
from tests.shared.egress.conftest import grant, short_tempdir


class Registry(FakeHTTPServer):
    """A package registry on 127.0.0.1: answers every path with a body of a known size."""

    BODY = b"r" * 5000

    def handle(self, request: Recorded) -> Reply:
        return Reply(200, self.BODY)

    @property
    def port(self) -> int:
        return self.server.server_address[1]


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client on ``proxy.sock`` (what the container's bridge forwards to): absolute-form requests and CONNECT."""

    def __init__(self, path: Path) -> None:
        super().__init__("proxy.invalid", timeout=10)
        self.path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)
        if self._tunnel_host:
            self._tunnel()


def plain(sock: Path, method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    connection = UnixHTTPConnection(sock)
    try:
        connection.request(method, url, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def tunnel(sock: Path, port: int, path: str = "/") -> tuple[int, bytes | str]:
    """A request through a CONNECT tunnel to 127.0.0.1:port; a refused CONNECT gives (status, reason)."""
    connection = UnixHTTPConnection(sock)
    connection.set_tunnel("127.0.0.1", port)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    except OSError as exc:  # "Tunnel connection failed: 403 <reason>"
        status, _, reason = str(exc).split("failed: ")[1].partition(" ")
        return int(status), reason
    finally:
        connection.close()


class ProxyProcess:
    def __init__(self, root: Path, process: subprocess.Popen, client: EgressClient) -> None:
        self.root, self.process, self.client = root, process, client
        self.directory = root / "1"
        self.directory.mkdir()

    def open(self, network: NetworkPolicy, *servers: Registry) -> Path:
        internal = [f"127.0.0.1:{s.port}" for s in servers]
        sockets = self.client.open(grant("1", network=network, internal=internal), self.directory)
        return Path(sockets[PROXY_SOCKET])

    def blocked(self) -> list[dict]:
        path = self.root / "blocked.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def start_proxy():
    """Start the proxy process with extra environment (``ANYON_EGRESS_DENY``, ...); stopped after the test."""
    started: list[ProxyProcess] = []

    def start(**environment: str) -> ProxyProcess:
        root = short_tempdir("egress-net-")
        control = root / "control.sock"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANYON_EGRESS_")} | environment
        process = subprocess.Popen(
            [sys.executable, "-m", "shared.egress", "--control", str(control), "--blocked", str(root / "blocked.jsonl"),
             "--log-level", "WARNING"],
            cwd=Path(__file__).resolve().parents[3], env=env,
        )  # fmt: skip
        client = EgressClient(control, timeout=5)
        deadline = time.monotonic() + 15
        while not client.ping():
            assert process.poll() is None and time.monotonic() < deadline, "the proxy did not start"
            time.sleep(0.05)
        started.append(ProxyProcess(root, process, client))
        return started[-1]

    yield start
    for proxy in started:
        proxy.process.terminate()
        assert proxy.process.wait(10) == 0


def readable(port: int) -> str:
    return f"blocked by Anyon's network policy: host 127.0.0.1 (port {port}); ask the user to allow it"


def wait_for_blocked(proxy: ProxyProcess, count: int) -> list[dict]:
    deadline = time.monotonic() + 5
    while len(found := proxy.blocked()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def test_a_rule_lets_its_host_through_and_another_host_is_refused_readably(start_proxy):
    proxy = start_proxy()
    with Registry() as registry, Registry() as other:
        policy = NetworkPolicy(mode="rules", rules=(NetworkRule("127.0.0.1", registry.port),))
        sock = proxy.open(policy, registry, other)

        assert plain(sock, "GET", f"{registry.url}/simple/requests/?q=1") == (200, Registry.BODY)
        assert tunnel(sock, registry.port, "/inside") == (200, Registry.BODY)
        assert [(r.method, r.path, r.raw_query) for r in registry.requests] == [
            ("GET", "/simple/requests/", "q=1"),
            ("GET", "/inside", ""),
        ]
        assert registry.requests[0].headers["host"] == f"127.0.0.1:{registry.port}"

        assert plain(sock, "GET", f"{other.url}/steal?x=1") == (403, readable(other.port).encode() + b"\n")
        assert tunnel(sock, other.port) == (403, readable(other.port))
        assert other.requests == []
    reports = wait_for_blocked(proxy, 2)
    assert [(b["host"], b["port"], b["method"], b["path"]) for b in reports] == [
        ("127.0.0.1", other.port, "GET", "/steal"),
        ("127.0.0.1", other.port, None, None),
    ]
    assert all(b["reason"] == "is not in the network policy" for b in reports)


def test_allow_for_this_attempt_lets_the_next_try_through(start_proxy):
    proxy = start_proxy()
    with Registry() as registry:
        sock = proxy.open(NetworkPolicy(mode="rules"), registry)
        assert plain(sock, "GET", f"{registry.url}/a")[0] == 403
        policy = proxy.client.allow("1", NetworkRule("127.0.0.1", registry.port))
        assert policy.rules == (NetworkRule("127.0.0.1", registry.port),)
        assert plain(sock, "GET", f"{registry.url}/a") == (200, Registry.BODY)
        assert tunnel(sock, registry.port)[0] == 200
        proxy.client.set_policy("1", NetworkPolicy(mode="rules"))  # the setup phase ends: back to nothing
        assert plain(sock, "GET", f"{registry.url}/a")[0] == 403
        assert len(registry.requests) == 2


def test_the_deny_list_beats_a_user_rule_and_observe_mode(start_proxy):
    with Registry() as registry, Registry() as denied:
        proxy = start_proxy(ANYON_EGRESS_DENY=f"127.0.0.1:{denied.port},*.evil.example.net")
        sock = proxy.open(NetworkPolicy(mode="rules"), registry, denied)
        with pytest.raises(EgressError, match="denied by the operator"):
            proxy.client.allow("1", NetworkRule("127.0.0.1", denied.port))
        with pytest.raises(EgressError, match="denied by the operator"):
            proxy.client.set_policy("1", NetworkPolicy(mode="rules", rules=(NetworkRule("a.evil.example.net"),)))
        proxy.client.set_policy("1", NetworkPolicy(mode="observe"))
        assert plain(sock, "GET", f"{denied.url}/x")[0] == 403
        assert tunnel(sock, denied.port)[0] == 403
        assert plain(sock, "GET", f"{registry.url}/x")[0] == 200
        assert denied.requests == []
        with pytest.raises(EgressError, match="network policy refused"):
            proxy.client.open(
                grant("1", network=NetworkPolicy(mode="rules", rules=(NetworkRule("127.0.0.1", denied.port),))),
                proxy.directory,
            )
    assert [b["reason"] for b in wait_for_blocked(proxy, 2)] == ["is denied by the operator"] * 2


def test_user_hosts_off_refuses_a_rule_outside_the_presets(start_proxy):
    with Registry() as registry:
        proxy = start_proxy(ANYON_EGRESS_USER_HOSTS="false")
        sock = proxy.open(NetworkPolicy(mode="rules", presets=("package-registries",)), registry)
        with pytest.raises(EgressError, match="does not let policies add hosts"):
            proxy.client.allow("1", NetworkRule("127.0.0.1", registry.port))
        proxy.client.allow("1", NetworkRule("pypi.org", 80, "/simple/"))  # narrowing a preset host is fine
        proxy.client.set_policy("1", NetworkPolicy(mode="observe"))
        assert plain(sock, "GET", f"{registry.url}/x")[0] == 403
        assert registry.requests == []


def test_observe_mode_proposes_exactly_the_hosts_used(start_proxy):
    proxy = start_proxy()
    with Registry() as first, Registry() as second, Registry() as unused:
        sock = proxy.open(NetworkPolicy(mode="observe"), first, second, unused)
        assert plain(sock, "GET", f"{first.url}/simple/a/")[0] == 200
        assert plain(sock, "POST", f"{first.url}/upload", b"x" * 10)[0] == 200
        assert tunnel(sock, second.port)[0] == 200
        record = proxy.client.record("1", reset=True)
    proposal = record["proposal"]
    ports = sorted((first.port, second.port))
    assert proposal["text"] == "".join(f"127.0.0.1:{port}\n" for port in ports)
    assert NetworkPolicy.from_json(proposal["policy"]) == NetworkPolicy(
        mode="rules", rules=tuple(NetworkRule("127.0.0.1", port) for port in ports)
    )
    hosts = {(h["host"], h["port"]): h for h in record["hosts"]}
    assert hosts[("127.0.0.1", first.port)]["examples"] == ["GET /simple/a/", "POST /upload"]
    assert hosts[("127.0.0.1", second.port)]["examples"] == ["CONNECT"]
    assert proxy.client.record("1")["hosts"] == []  # reset: the next phase starts a new record


def test_read_only_refuses_post_and_the_record_counts_bytes(start_proxy):
    proxy = start_proxy()
    with Registry() as registry:
        policy = NetworkPolicy(mode="rules", rules=(NetworkRule("127.0.0.1", registry.port),), read_only=True)
        sock = proxy.open(policy, registry)
        assert plain(sock, "GET", f"{registry.url}/a") == (200, Registry.BODY)
        assert plain(sock, "POST", f"{registry.url}/a", b"p" * 300)[0] == 403
        assert tunnel(sock, registry.port)[0] == 200
        assert [r.method for r in registry.requests] == ["GET", "GET"]
        proxy.client.set_policy("1", NetworkPolicy(mode="rules", rules=policy.rules))
        assert plain(sock, "POST", f"{registry.url}/b", b"p" * 300)[0] == 200
        assert registry.requests[-1].body == b"p" * 300
        record = proxy.client.record("1")
    (use,) = record["hosts"]
    assert (use["host"], use["port"], use["credential"]) == ("127.0.0.1", registry.port, "none")
    assert (use["requests"], use["tunnels"], use["blocked"]) == (2, 1, 1)
    assert use["bytes_out"] >= 300 + len("GET / HTTP/1.1\r\n")  # the POST's body, the tunnel's request
    assert use["bytes_in"] >= 3 * len(Registry.BODY)  # two plain answers, one through the tunnel (with its head)
    assert use["bytes_in"] < 3 * len(Registry.BODY) + 1000
    assert record["blocked"] == [
        {"host": "127.0.0.1", "port": registry.port, "method": "POST", "path": "/a", "count": 1,
         "reason": "is read-only: POST refused"}
    ]  # fmt: skip
    assert record["proposal"] is None
    assert [(b["method"], b["path"]) for b in wait_for_blocked(proxy, 1)] == [("POST", "/a")]


def test_path_traversal_past_a_prefix_is_refused_in_the_process(start_proxy):
    proxy = start_proxy()
    with Registry() as registry:
        rule = NetworkRule("127.0.0.1", registry.port, "/simple/")
        sock = proxy.open(NetworkPolicy(mode="rules", rules=(rule,)), registry)
        assert plain(sock, "GET", f"{registry.url}/simple/pkg/")[0] == 200
        for path in ("/simple/../admin", "/simple/%2e%2e/admin", "/simple%2f..%2fadmin", "/admin"):
            assert plain(sock, "GET", f"{registry.url}{path}")[0] == 403, path
        assert tunnel(sock, registry.port)[0] == 403  # a tunnel cannot be path-checked
        assert [r.path for r in registry.requests] == ["/simple/pkg/"]


def test_a_chunked_upload_is_forwarded_chunked(start_proxy):
    proxy = start_proxy()
    with Registry() as registry:
        sock = proxy.open(NetworkPolicy(mode="rules", rules=(NetworkRule("127.0.0.1", registry.port),)), registry)
        assert plain(sock, "PUT", f"{registry.url}/up", iter([b"a" * 100, b"b" * 200]))[0] == 200
        (request,) = registry.requests
        assert request.body == b"a" * 100 + b"b" * 200
        assert request.headers["transfer-encoding"] == "chunked"
        assert proxy.client.record("1")["hosts"][0]["bytes_out"] == 300


def test_a_new_policy_cuts_the_open_tunnels_it_no_longer_allows(start_proxy):
    """A setup step's tunnel to a host only setup may reach does not outlive the setup phase."""
    proxy = start_proxy()
    with Registry() as setup_only, Registry() as always:
        keep = NetworkRule("127.0.0.1", always.port)
        setup = NetworkPolicy(mode="rules", rules=(NetworkRule("127.0.0.1", setup_only.port), keep))
        sock = proxy.open(setup, setup_only, always)
        connections = []
        for server in (setup_only, always):
            connection = UnixHTTPConnection(sock)
            connection.set_tunnel("127.0.0.1", server.port)
            connection.request("GET", "/first")
            assert connection.getresponse().read() == Registry.BODY
            connections.append(connection)
        answer = proxy.client.command(
            {"op": "policy", "attempt": "1", "policy": NetworkPolicy(mode="rules", rules=(keep,)).to_json()}
        )
        assert answer["cut"] == 1
        with pytest.raises((OSError, http.client.HTTPException)):
            connections[0].request("GET", "/second")
            connections[0].getresponse().read()
        connections[1].request("GET", "/second")  # the tunnel the new policy allows stays open
        assert connections[1].getresponse().read() == Registry.BODY
        for connection in connections:
            connection.close()
        assert [r.path for r in setup_only.requests] == ["/first"]
        assert [r.path for r in always.requests] == ["/first", "/second"]


def test_closing_an_attempt_answers_its_last_network_record(start_proxy):
    proxy = start_proxy()
    with Registry() as registry:
        sock = proxy.open(NetworkPolicy(mode="rules", rules=(NetworkRule("127.0.0.1", registry.port),)), registry)
        assert plain(sock, "GET", f"{registry.url}/a")[0] == 200
        assert proxy.client.status()["attempts"][0]["network"] == "rules"
        answer = proxy.client.command({"op": "close", "attempt": "1"})
        assert answer["record"]["hosts"][0]["requests"] == 1
        assert proxy.client.command({"op": "close", "attempt": "1"})["record"] is None
