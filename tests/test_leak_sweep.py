"""The end-of-session leak sweep can find what it looks for: a canary value (not a tracked secret, so the session
does not fail) put where a leak could be is found in what the sweep collected."""

from __future__ import annotations

import secrets

import docker
import pytest

from tests.fixtures import leaks
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.hostile  # attacks: counted in docs/QA_CHECKLIST.md


def collected(value: str) -> list[str]:
    return [where for where, text in leaks._engine_texts if value in text]


def test_engine_recorder_keeps_the_inspect_of_containers_and_execs(docker_client, base_image, container_factory):
    canary = f"canary-{secrets.token_hex(8)}"
    container = container_factory(base_image, environment={"CANARY": canary})
    container.exec_run(["true", f"exec-{canary}"])
    wait_for(lambda: collected(canary) and collected(f"exec-{canary}"), timeout=10, what="both inspects recorded")
    assert any(w.startswith("docker inspect") for w in collected(canary))
    assert any(w.startswith("docker exec inspect") for w in collected(f"exec-{canary}"))


def test_engine_sweep_reads_changed_container_files_and_volumes(docker_client, base_image):
    canary = f"canary-{secrets.token_hex(8)}"
    label = f"anyon.sweeptest={secrets.token_hex(4)}"
    volume = docker_client.volumes.create(labels=dict([label.split("=")]))
    container = None
    try:
        container = docker_client.containers.run(
            base_image,
            ["sh", "-c", f"echo {canary} > /v/in-volume; echo {canary} > /tmp/in-container; sleep infinity"],
            detach=True,
            mounts=[docker.types.Mount("/v", volume.name, type="volume")],
            network_mode="none",
            labels=dict([label.split("=")]),
        )
        container.exec_run(["sh", "-c", "while [ ! -s /tmp/in-container ]; do sleep 0.1; done"])
        leaks.sweep_engine(docker_client, label=label, image=base_image)
        found = collected(canary)
        assert any("in-container" in w for w in found), found
        assert any("in-volume" in w for w in found), found
    finally:
        if container is not None:
            container.remove(force=True)
        volume.remove(force=True)


@pytest.mark.django_db
def test_admin_pages_are_recorded_for_the_sweep(client, django_user_model):
    staff = django_user_model.objects.create_superuser("sweeper", password="pw long enough 1")
    client.force_login(staff)
    before = leaks.admin_pages_recorded()
    assert client.get("/admin/").status_code == 200
    assert leaks.admin_pages_recorded() == before + 1
