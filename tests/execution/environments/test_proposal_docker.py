"""Learn, then lock: a setup in observe mode, in the real image with a real engine and a real egress proxy process,
fetches from two HTTP servers on 127.0.0.1; the proposal is exactly those two; after its owner accepts it on the
environment page, the next attempt's setup still reaches them and is refused a third."""

from __future__ import annotations

import http.server
import threading

import pytest
from django.test import Client

from execution.environments.actions import PhaseNetwork, do_save_environment
from execution.environments.proposals import SETUP_PHASE, latest_setup_proposal
from execution.models import AttemptStatus, EgressBlock, Environment
from execution.runner import run_attempt
from tests.execution.conftest import logs
from tests.execution.runner import test_sealed_docker
from tests.execution.runner.test_network_docker import Hello
from tests.fakes.anthropic_api import TextReply

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

sealed, repo = test_sealed_docker.sealed, test_sealed_docker.repo  # fixtures: the egress proxy process, acme/widgets


@pytest.fixture
def servers():
    """Three HTTP servers on 127.0.0.1; their ports."""
    started = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello) for _ in range(3)]
    for server in started:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield [server.server_address[1] for server in started]
    for server in started:
        server.shutdown()


def fetch(*ports: int) -> str:
    """The setup script: one GET through the proxy to each server, printing ``<port>:<status>``."""
    return "".join(
        f"echo fetched-{port}:$(curl -s -o /dev/null -m 10 --noproxy '' -x http://127.0.0.1:18082 "
        f"-w '%{{http_code}}' http://127.0.0.1:{port}/simple/ || true)\n"
        for port in ports
    )


@pytest.mark.usefixtures("sealed")
def test_the_setup_learns_in_observe_mode_then_the_accepted_policy_locks_it(world, repo, servers, settings):
    a, b, c = servers
    settings.ANYON_EGRESS_ALLOW_INTERNAL = [*settings.ANYON_EGRESS_ALLOW_INTERNAL, *(f"127.0.0.1:{p}" for p in servers)]
    do_save_environment(
        owner=world.user,
        repository="acme/widgets",
        setup_script=fetch(a, b),
        setup_network=PhaseNetwork(mode="observe"),
    )
    world.api.enqueue(TextReply("Done."))
    first = world.attempt(repo_url=repo, prompt="Learn")
    assert run_attempt(first.pk) == AttemptStatus.SUCCEEDED, logs(first)
    assert f"fetched-{a}:200" in logs(first) and f"fetched-{b}:200" in logs(first), logs(first)
    first.refresh_from_db()
    assert SETUP_PHASE in first.network_record["proposals"], first.network_record

    proposal = latest_setup_proposal(user=world.user, repository="acme/widgets")
    assert proposal is not None and proposal.attempt.pk == first.pk
    assert proposal.presets == () and sorted(map(str, proposal.rules)) == sorted([f"127.0.0.1:{a}", f"127.0.0.1:{b}"])

    client = Client()
    client.force_login(world.user)
    html = client.get("/environments/acme/widgets/").content.decode()
    assert f"+ 127.0.0.1:{a}" in html and f"+ 127.0.0.1:{b}" in html
    response = client.post("/environments/acme/widgets/proposal/accept/", {"attempt": str(first.pk)})
    assert response.status_code == 302
    environment = Environment.objects.get(owner=world.user, repository="acme/widgets")
    assert environment.setup_network_mode == "rules"
    assert sorted(environment.setup_network_rules.splitlines()) == sorted([f"127.0.0.1:{a}", f"127.0.0.1:{b}"])

    environment.setup_script = fetch(a, b, c)  # the next setup also reaches for a third server
    environment.save(update_fields=["setup_script"])
    world.api.enqueue(TextReply("Done."))
    second = world.attempt(repo_url=repo, prompt="Locked")
    assert run_attempt(second.pk) == AttemptStatus.SUCCEEDED, logs(second)
    text = logs(second)
    assert f"fetched-{a}:200" in text and f"fetched-{b}:200" in text, text
    assert f"fetched-{c}:403" in text, text
    assert EgressBlock.objects.filter(attempt=second, host="127.0.0.1", port=c).exists()
    assert not EgressBlock.objects.filter(attempt=second, port__in=[a, b]).exists()
