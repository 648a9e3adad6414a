"""Settings come from the environment; a value that cannot work stops the start with a message that says why."""

import os
import subprocess
import sys

import pytest

from tests.fixtures.processes import ROOT


def load_settings(**env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "anyon.settings", "DEBUG": "true", **env}
    code = "import django; django.setup(); from django.conf import settings; print(settings.ANYON_INSTANCE)"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True)


@pytest.mark.parametrize("instance", ["Team A", "-x", "a/b", "x" * 64, ""])
def test_an_instance_name_that_cannot_name_containers_is_refused(instance):
    done = load_settings(ANYON_INSTANCE=instance)
    assert done.returncode != 0 and "cannot name containers" in done.stderr


def test_a_good_instance_name_names_the_containers(settings):
    assert load_settings(ANYON_INSTANCE="Team_a.2").stdout.strip() == "Team_a.2"
    from execution.attempts.containers import container_name

    settings.ANYON_INSTANCE = "team-a"
    assert container_name(7) == "anyon-team-a-attempt-7"  # another installation's attempt 7 has another name
