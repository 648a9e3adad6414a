"""A worker process gets ready for attempts when it starts (execution/apps.py), not during its first attempt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys, django
django.setup()
from execution.apps import warm_up_worker
before = "execution.runner.session" in sys.modules
warm_up_worker()
from shared.docker import client
print(before, "execution.runner.session" in sys.modules, len(client._shared))
"""


def probe(**env: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.split()


@pytest.mark.docker
def test_a_starting_worker_imports_the_session_and_makes_its_docker_client(docker_client):
    assert probe() == ["False", "True", "1"]  # the first attempt neither imports nor asks the engine its version


def test_an_engine_that_does_not_answer_yet_does_not_stop_the_worker(tmp_path):
    assert probe(DOCKER_HOST=f"unix://{tmp_path}/nothing.sock") == ["False", "True", "0"]
