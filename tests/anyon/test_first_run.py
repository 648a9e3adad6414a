"""A new user's first commands: `make run` and `make doctor` look at the same setup, `make run` finds (or builds)
the runtime image, and doctor on a database made by `migrate` alone says what is missing, without a traceback."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from django.conf import settings

from tests.fixtures.processes import ROOT

BUILD = ROOT / "runtime-image" / "build.sh"


def _recorder(tmp_path: Path) -> Path:
    """A stand-in for the virtualenv's python: records each call's arguments and environment."""
    script = tmp_path / "record-python"
    script.write_text(
        "#!/bin/sh\n"
        f'{sys.executable} -c "import json, os, sys; print(json.dumps([sys.argv[1:], dict(os.environ)]))" "$@" '
        f">> {tmp_path / 'calls.jsonl'}\n"
    )
    script.chmod(0o755)
    return script


def test_make_doctor_sees_the_environment_make_run_serves_with(tmp_path):
    """`make doctor` beside `make run`, neither given any setting: the doctor's process gets the environment the
    server's has (DEBUG on, so both use the development key and the doctor can read the worker's heartbeat)."""
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()
    python = _recorder(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANYON_", "DEBUG", "DJANGO_", "MAKE"))}
    for target in ("run", "doctor"):
        done = subprocess.run(
            ["make", "-C", str(ROOT), target, f"VENV={venv}", f"PY={python}", "ENSURE_IMAGE=true"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    by_command = {tuple(args[:2]): environ for args, environ in calls}
    serve, doctor = by_command[("manage.py", "serve")], by_command[("manage.py", "doctor")]
    assert serve.get("DEBUG") == "true"
    assert doctor == serve


def test_make_run_ensures_the_runtime_image_before_it_serves(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()
    recipe = subprocess.run(
        ["make", "-C", str(ROOT), "-n", "run", f"VENV={venv}"], capture_output=True, text=True, timeout=60
    )
    lines = recipe.stdout.splitlines()
    image_step = next(i for i, line in enumerate(lines) if "runtime-image/build.sh --if-missing" in line)
    serve_step = next(i for i, line in enumerate(lines) if "manage.py serve" in line)
    assert image_step < serve_step


def test_the_image_step_without_a_docker_engine_lets_make_run_start(tmp_path):
    done = subprocess.run(
        [str(BUILD), "--if-missing"],
        env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "no Docker engine answers" in done.stderr


def _source_hash() -> str:
    """What build.sh labels an image with: sha256 over `sha256sum` of Dockerfile, files/ and builder/."""
    here = ROOT / "runtime-image"
    files = [p for d in ("files", "builder") for p in (here / d).rglob("*") if p.is_file()]
    names = sorted([b"Dockerfile"] + [str(p.relative_to(here)).encode() for p in files])
    listing = b"".join(hashlib.sha256((here / n.decode()).read_bytes()).hexdigest().encode() + b"  " + n + b"\n"
                       for n in names)  # fmt: skip
    return hashlib.sha256(listing).hexdigest()[:16]


@pytest.mark.docker
def test_the_image_step_keeps_an_image_built_from_these_sources(docker_client, tmp_path):
    """An image labelled with the sources' hash is up to date: nothing is built (a tiny stand-in image here)."""
    tag = f"anyon-test/fresh-image:{os.getpid()}"
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w"):
        pass
    docker_client.api.import_image_from_data(
        archive.getvalue(), repository=tag.split(":")[0], tag=tag.split(":")[1],
        changes=[f"LABEL io.anyon.source={_source_hash()}"],
    )  # fmt: skip
    try:
        done = subprocess.run(
            [str(BUILD), "--if-missing"], env={**os.environ, "ANYON_CLOUD_IMAGE": tag},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"{tag} is present and up to date" in done.stderr
        assert "step 2 of 3" not in done.stderr
    finally:
        docker_client.images.remove(tag, force=True)


def _manage(data: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    env.update(DEBUG="true", ANYON_QUIET_DEV_KEY="1", ANYON_DATA_DIR=str(data), ANYON_TEMP_DIR=str(data / "tmp"))
    env.update(extra)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.docker
def test_doctor_on_a_database_made_by_migrate_alone(tmp_path, runtime_image):
    """As DEPLOYMENT.md's steps and the container image set it up: no cache table. Doctor names it, no traceback."""
    data = tmp_path / "data"
    (data / "tmp").mkdir(parents=True, mode=0o700)
    migrated = _manage(data, "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    done = _manage(data, "doctor", "--json", DOCKER_HOST=settings.DOCKER_HOST, ANYON_CLOUD_IMAGE=runtime_image)
    assert "Traceback" not in done.stderr, done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)}
    for name in ("cache", "worker"):
        assert "the cache table anyon_cache does not exist" in checks[name]["detail"], checks[name]
        assert checks[name]["fix"] == "python manage.py createcachetable"
    assert checks["claude code"]["status"] == "warn"  # the release unknown, no traceback


@pytest.mark.docker
def test_the_release_check_can_be_turned_off(db, settings, runtime_image):
    """Air-gapped: with ANYON_CLAUDE_CODE_VERSION_CHECK off no request leaves for the registry."""
    from django.core.cache import cache

    from anyon import health
    from tests.fakes.http_server import FakeHTTPServer, Reply

    asked = []

    class Registry(FakeHTTPServer):
        def handle(self, request):
            asked.append(request.path)
            return Reply(200, {"version": "999.0.0"})

    with Registry() as registry:
        settings.ANYON_NPM_REGISTRY_URL = registry.url
        settings.ANYON_CLAUDE_CODE_VERSION_CHECK = False
        cache.clear()
        check = health.check_claude_cli()
        assert check.status == health.OK and "release check off" in check.detail
        assert asked == []
        settings.ANYON_CLAUDE_CODE_VERSION_CHECK = True
        assert "999.0.0 is released" in health.check_claude_cli().detail
        assert asked
