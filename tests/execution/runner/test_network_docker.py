"""A blocked request becomes a conversation: the real image and Claude CLI, a real egress proxy process, a real
engine. The scripted agent asks an HTTP server on 127.0.0.1 that its policy does not name, gets the proxy's
readable 403 (recorded with its method and path), its owner allows the host for this attempt through the action,
the agent's next try goes through, and the attempt keeps its network record, which the pull request body sums up.
"""

from __future__ import annotations

import http.server
import threading

import pytest

from execution.attempts.actions import do_request_pull_request
from execution.hosts.network import do_allow_host_for_attempt
from execution.models import AllowanceState, AttemptStatus, EgressBlock, JobStatus, NetworkAllowance
from execution.runner import run_attempt, run_job
from tests.execution.conftest import logs, when
from tests.execution.runner import test_sealed_docker
from tests.fakes.anthropic_api import TextReply, ToolUseReply
from tests.fakes.github import FakeGitHub
from tests.fixtures.queueing import held_from_workers

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

sealed, repo = test_sealed_docker.sealed, test_sealed_docker.repo  # fixtures: the egress proxy process, acme/widgets


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from the mirror\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mirror():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def retrying_script(port: int) -> str:
    """Ask the mirror through the proxy once a second until it answers 200 (at most 90 tries)."""
    url = f"http://127.0.0.1:{port}/simple/demo/"
    return f"""
for i in $(seq 1 90); do
  out=$(curl -sS -m 5 --noproxy '' -x http://127.0.0.1:18082 -w ' status=%{{http_code}}' {url})
  echo "try $i: $out" >> /workspace/net.txt
  case "$out" in *status=200) break;; esac
  sleep 1
done
"""


def test_a_blocked_host_allowed_for_the_attempt_goes_through_and_the_record_is_kept(
    world, repo, sealed, mirror, github: FakeGitHub, settings
):
    settings.ANYON_EGRESS_ALLOW_INTERNAL = [*settings.ANYON_EGRESS_ALLOW_INTERNAL, f"127.0.0.1:{mirror}"]
    world.api.enqueue(
        ToolUseReply("Bash", {"command": retrying_script(mirror), "description": "fetch"}), TextReply("Fetched.")
    )
    attempt = world.attempt(repo_url=repo, prompt="Fetch the package index")
    refused = EgressBlock.objects.filter(attempt=attempt, host="127.0.0.1", port=mirror)
    allowed = when(
        refused.exists,
        lambda: do_allow_host_for_attempt(attempt=attempt, user=world.user, host="127.0.0.1", port=mirror),
        timeout=180,
        what="the mirror's refusal",
    )
    assert run_attempt(attempt.pk) == AttemptStatus.SUCCEEDED, logs(attempt)
    allowed.join(5)
    attempt.refresh_from_db()
    text = logs(attempt)

    block = refused.get()
    assert (block.method, block.path) == ("GET", "/simple/demo/"), block
    tries = next(f for f in attempt.diff if f["path"] == "net.txt")["patch"]
    assert "blocked by Anyon's network policy: host 127.0.0.1" in tries, tries  # the agent read why
    assert "hello from the mirror" in tries and "status=200" in tries, tries  # the next try went through
    allowance = NetworkAllowance.objects.get(attempt=attempt)
    assert allowance.state == AllowanceState.APPLIED and allowance.allowed_by == world.user
    assert f"network: alice allowed 127.0.0.1:{mirror} for this attempt" in text

    uses = {(h["host"], h["port"]): h for h in attempt.network_record["hosts"]}
    assert uses[("127.0.0.1", mirror)]["requests"] >= 1 and uses[("127.0.0.1", mirror)]["blocked"] >= 1
    assert any(h["credential"] == "anthropic" and h["requests"] for h in attempt.network_record["hosts"])
    assert attempt.network_record["phases"] == ["attempt"]

    with held_from_workers():
        job = do_request_pull_request(attempt=attempt)
    assert run_job(job.pk) == JobStatus.SUCCEEDED, logs(attempt)
    body = github.pulls[-1]["body"]
    assert "Made in a sealed run; reached: " in body and "no credential entered the container." in body, body
    assert "(GitHub token added by Anyon)" in body and "blocked: 127.0.0.1 (" in body, body
