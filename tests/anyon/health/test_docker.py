"""The Docker checks: the engine's version and free disk, against a fake engine client."""

import pytest


class FakeEngineClient:
    def __init__(self, version: dict | None = None, root: str = "") -> None:
        self._version, self._root = version, root

    def version(self) -> dict:
        if self._version is None:
            raise ConnectionError("engine down")
        return self._version

    def info(self) -> dict:
        return {"DockerRootDir": self._root}


@pytest.fixture
def engine(monkeypatch):
    """Replace the Docker client the checks use; returns a setter for what the fake engine answers."""
    from shared.docker import client

    def answer(**kwargs) -> None:
        monkeypatch.setattr(client, "get_docker_client", lambda **_: FakeEngineClient(**kwargs))

    return answer


def test_docker_version_check_refuses_an_engine_older_than_20_10(engine):
    from anyon import health

    engine(version={"Version": "19.03.15", "ApiVersion": "1.40"})
    check = health.check_docker_version()
    assert check.failed and "Docker 19.03.15, API 1.40" in check.detail and "20.10 or later" in check.detail
    engine(version={"Version": "20.10.24", "ApiVersion": "1.41"})
    assert health.check_docker_version().status == health.OK
    engine(version={"Version": "28.0.1", "ApiVersion": "1.48"})
    assert health.check_docker_version().status == health.OK  # 1.48 > 1.41 as versions, not as decimals
    engine(version=None)
    check = health.check_docker_version()
    assert check.failed and check.fix == "fix the engine first"


def test_seccomp_check_refuses_anyons_profile_on_an_engine_it_is_not_written_for(engine, settings):
    from anyon import health

    engine(version={"Arch": "amd64"})
    check = health.check_seccomp()
    assert check.status == health.OK and "amd64 ABI only" in check.detail
    engine(version={"Arch": "s390x"})
    check = health.check_seccomp()
    assert check.failed and "this engine is s390x" in check.detail
    assert check.fix == "set ANYON_CONTAINER_SECCOMP=engine (the engine's default profile)"
    settings.ANYON_CONTAINER_SECCOMP = "engine"
    assert health.check_seccomp().status == health.OK  # the engine's own profile fits any engine
    settings.ANYON_CONTAINER_SECCOMP = "anyon"
    engine(version=None)
    assert health.check_seccomp().fix == "fix the engine first"


def test_disk_check_measures_the_data_dir_and_a_local_docker_root(engine, settings, tmp_path, monkeypatch):
    from anyon import health
    from anyon.health import docker

    settings.DATA_DIR = tmp_path
    settings.DOCKER_HOST = ""
    docker_root = tmp_path / "docker"
    docker_root.mkdir()
    engine(version={}, root=str(docker_root))
    check = health.check_disk()
    assert (
        check.status == health.OK
        and f"data dir {tmp_path}:" in check.detail
        and f"Docker {docker_root}:" in check.detail
    )
    monkeypatch.setattr(docker, "MIN_FREE_BYTES", 1 << 60)
    check = health.check_disk()
    assert check.status == health.WARN and not check.required and "grow the disk" in check.fix
    settings.DOCKER_HOST = "tcp://docker.internal:2376"  # the engine's disk is not this machine's
    check = health.check_disk()
    assert "Docker's data root is not on this machine (not measured)" in check.detail
    settings.DATA_DIR = tmp_path / "missing"
    check = health.check_disk()
    assert check.status == health.WARN and "cannot measure" in check.detail
