"""The real engine and the offline base image: exec with stdout, stderr and exit code kept apart."""

import pytest

from tests.fixtures.waiting import wait_for


@pytest.mark.docker
def test_exec_separates_stdout_stderr_and_exit_code(docker_client, base_image, container_factory):
    container = container_factory(base_image)
    api = docker_client.api
    exec_id = api.exec_create(container.id, ["sh", "-c", "echo out-line; echo err-line >&2; exit 7"])["Id"]
    stdout, stderr = b"", b""
    for out, err in api.exec_start(exec_id, stream=True, demux=True):
        stdout += out or b""
        stderr += err or b""
    assert stdout == b"out-line\n"
    assert stderr == b"err-line\n"
    # The engine can report the exec as running for a moment after its output ends (moby#19607): wait for it.
    wait_for(lambda: not api.exec_inspect(exec_id)["Running"], timeout=10, every=0.05)
    assert api.exec_inspect(exec_id)["ExitCode"] == 7


@pytest.mark.docker
def test_container_has_no_network_but_loopback(docker_client, base_image, container_factory):
    container = container_factory(base_image)
    _, output = container.exec_run(["cat", "/proc/net/dev"])
    interfaces = {line.split(":")[0].strip() for line in output.decode().splitlines()[2:]}
    assert interfaces == {"lo"}


def test_the_runner_reuses_one_client_per_process_and_engine(docker_client, settings):
    from shared.docker.client import shared_docker_client
    from shared.docker.engine import DockerEngine

    first = shared_docker_client()
    assert DockerEngine().client is first and shared_docker_client() is first
    assert first.ping()
    settings.ANYON_DOCKER_TIMEOUT = settings.ANYON_DOCKER_TIMEOUT + 1  # another configuration: another client
    assert shared_docker_client() is not first


@pytest.mark.docker
def test_a_client_of_the_local_socket_does_not_read_the_environment_at_each_call(docker_client, monkeypatch):
    """requests looks for proxies and .netrc in the environment at every call unless told not to: nothing of that
    applies to a UNIX socket, and it cost a worker about 1 ms of CPU per Docker API call."""
    import requests.sessions

    from shared.docker.client import get_docker_client

    client = get_docker_client()

    def looked(*args, **kwargs):
        raise AssertionError("the environment was read for proxies")

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", looked)
    assert client.ping() and client.api.inspect_container  # calls go through without it
    assert client.api.version(api_version=False)["ApiVersion"]


@pytest.mark.docker
def test_volume_sizes_measure_what_a_container_wrote(docker_client, base_image, container_factory, settings):
    """What the workspace size sweep (ANYON_WORKSPACE_MAX_BYTES) reads: the engine's size of each volume."""
    import uuid

    from shared.docker.engine import DockerEngine

    name = f"anyon-test-size-{uuid.uuid4().hex[:8]}"
    engine = DockerEngine(docker_client)
    engine.ensure_volume(name, {"anyon.instance": settings.ANYON_INSTANCE})
    writer = None
    try:
        writer = container_factory(
            base_image, command=["sh", "-c", "head -c 3000000 /dev/zero > /v/blob"], volumes={name: {"bind": "/v"}}
        )
        assert writer.wait(timeout=60)["StatusCode"] == 0
        assert engine.volume_sizes()[name] >= 3_000_000
    finally:
        if writer is not None:
            writer.remove(force=True)  # the volume is in use until its container is gone
        engine.remove_volume(name)


AF_ALG_PROBE = [
    "python3",
    "-c",
    "import errno, socket\ntry:\n    socket.socket(38, socket.SOCK_SEQPACKET)\n    print('ok')\n"
    "except OSError as exc:\n    print(errno.errorcode[exc.errno])",
]


@pytest.mark.docker
def test_a_helper_container_gets_the_seccomp_profile_it_is_given(docker_client, runtime_image):
    """The session-history scrub's throw-away container reads what the agent wrote: it runs under Anyon's profile
    (execution/runner/history.py), which refuses an AF_ALG socket that the engine's default lets the kernel answer."""
    from shared.docker import seccomp
    from shared.docker.engine import DockerEngine

    engine = DockerEngine(docker_client)
    once = {"mounts": [], "user": "65534", "labels": {"anyon.test": "helper"}, "stdin": b""}
    assert engine.run_once(runtime_image, AF_ALG_PROBE, **once) in ((0, "ok\n"), (0, "EAFNOSUPPORT\n"))
    assert engine.run_once(runtime_image, AF_ALG_PROBE, seccomp_profile=seccomp.profile_json(), **once) == (
        0,
        "EPERM\n",
    )


@pytest.mark.docker
@pytest.mark.hostile
def test_a_restart_leaves_no_process_of_before_detached_double_forked_or_stopped(
    docker_client, runtime_image, container_factory
):
    """What an untrusted step leaves behind: a setsid'd process, a double-forked one, a stopped one, and one that
    ignores SIGTERM. After ``restart`` none of them is in the container, which runs again."""
    from shared.docker.engine import DockerEngine, hardening

    container = container_factory(runtime_image, user="61000", **hardening(None))
    leave = (
        "setsid sh -c 'trap \"\" TERM HUP; exec sleep 601' </dev/null >/dev/null 2>&1 & "
        "( ( sleep 602 </dev/null >/dev/null 2>&1 & ) & ); "
        "sleep 603 </dev/null >/dev/null 2>&1 & kill -STOP $!"
    )
    container.exec_run(["sh", "-c", leave])

    def commands() -> list[str]:
        return [row[-1] for row in docker_client.api.top(container.id)["Processes"]]

    wait_for(lambda: sum("sleep 60" in c for c in commands()) == 3, timeout=10, every=0.05)
    DockerEngine(docker_client).restart(container.id)
    assert docker_client.api.inspect_container(container.id)["State"]["Running"]
    assert not [c for c in commands() if "sleep 60" in c]
