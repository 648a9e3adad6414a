# Long because every engine operation the system needs is wrapped here with its exit code and errors.
"""A thin engine over the docker SDK: the operations the system needs, with exit codes and streaming done right.

``exec_run(stream=True)`` gives no exit code, so execs use the low-level API: ``exec_create`` → iterate
``exec_start(stream=True, demux=True)`` → ``exec_inspect`` (polled while the exec still reports Running).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.utils.socket import STDERR, frames_iter

from shared.docker import labels as label
from shared.docker.client import shared_docker_client

logger = logging.getLogger(__name__)


def hardening(seccomp_profile: str | None) -> dict:
    """Every container this engine makes: no capabilities, no privilege gained through setuid binaries, and the
    seccomp profile given (JSON, ``shared.docker.seccomp``; None keeps the engine's default)."""
    seccomp = [f"seccomp={seccomp_profile}"] if seccomp_profile else []
    return {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges", *seccomp]}


class EngineError(Exception):
    """The engine could not do what was asked; the message says what and how to fix it."""


@dataclass
class ExecResult:
    exit_code: int | None = None
    exec_id: str = ""


@dataclass
class ContainerSpec:
    name: str
    image: str
    labels: dict[str, str]
    mounts: list[docker.types.Mount] = field(default_factory=list)
    user: str = "anyon"
    working_dir: str = "/workspace"
    environment: dict[str, str] = field(default_factory=dict)
    network_mode: str = "none"
    mem_limit: str | None = None
    nano_cpus: int | None = None
    pids_limit: int | None = None
    #: What the container runs: idle by default; a sealed container starts its egress bridge first.
    command: list[str] = field(default_factory=lambda: ["sleep", "infinity"])
    #: The seccomp profile (JSON, ``shared.docker.seccomp``); None keeps the engine's default.
    seccomp_profile: str | None = None


class DockerEngine:
    def __init__(self, client: docker.DockerClient | None = None) -> None:
        try:
            self.client = client or shared_docker_client()
        except DockerException as exc:
            raise EngineError(f"Docker engine not reachable: {exc}") from exc
        self.api = self.client.api

    def unreachable(self) -> str:
        """Why the engine does not answer a ping now ("" when it does): a run that failed asks, to tell a lost host
        from an ordinary failure."""
        try:
            self.client.ping()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        return ""

    # --- images ---------------------------------------------------------------------------------------------
    def ensure_image(self, ref: str) -> None:
        try:
            self.client.images.get(ref)
        except ImageNotFound as exc:
            raise EngineError(f"runtime image {ref} is not present on this engine: build it (make image)") from exc

    def image_id(self, ref: str) -> str:
        """The id of the image ``ref`` names now (a tag moved to a new build gives a new id)."""
        try:
            return self.client.images.get(ref).id
        except ImageNotFound as exc:
            raise EngineError(f"runtime image {ref} is not present on this engine: build it (make image)") from exc
        except (APIError, DockerException, requests.RequestException) as exc:
            raise EngineError(f"could not inspect image {ref}: {exc}") from exc

    def image_config(self, ref: str) -> dict:
        """The image's inspect answer (``Id``, ``Size``, ``Config``)."""
        try:
            return self.api.inspect_image(ref)
        except ImageNotFound as exc:
            raise EngineError(f"image {ref} is not present on this engine") from exc
        except (APIError, DockerException, requests.RequestException) as exc:
            raise EngineError(f"could not inspect image {ref}: {exc}") from exc

    def commit(self, container_id: str, *, repository: str, tag: str, labels: dict[str, str], env: list[str]) -> str:
        """``docker commit`` of a stopped container: its filesystem outside volumes and tmpfs becomes an image with
        ``labels`` and ``env`` (the engine adds what the container had beyond them: name every label that matters).
        Returns the image's id."""
        try:
            answer = self.api.commit(
                container_id, repository=repository, tag=tag, conf={"Labels": labels, "Env": env}, pause=False
            )
        except (APIError, DockerException, requests.RequestException) as exc:
            raise EngineError(f"could not commit container {container_id[:12]}: {exc}") from exc
        return answer["Id"]

    def remove_image(self, ref: str) -> None:
        """Remove the image; gone already is fine. EngineError while a container still uses it."""
        try:
            self.api.remove_image(ref, force=True, noprune=False)
        except (NotFound, ImageNotFound):
            return
        except (APIError, DockerException, requests.RequestException) as exc:
            raise EngineError(f"could not remove image {ref}: {exc}") from exc

    def list_images(self, labels: list[str]) -> list[dict]:
        """The images carrying every one of ``labels`` (``key=value``)."""
        try:
            return self.api.images(filters={"label": labels}) or []
        except (APIError, DockerException, requests.RequestException) as exc:
            raise EngineError(f"could not list images: {exc}") from exc

    # --- containers ----------------------------------------------------------------------------------------
    def create_container(self, spec: ContainerSpec) -> str:
        """Create and start a hardened, idle container (``spec.command`` under docker's init)."""
        try:
            container = self.client.containers.run(
                spec.image,
                command=spec.command,
                name=spec.name,
                labels=spec.labels,
                mounts=spec.mounts,
                user=spec.user,
                working_dir=spec.working_dir,
                environment=spec.environment,
                network_mode=spec.network_mode,
                detach=True,
                init=True,
                **hardening(spec.seccomp_profile),
                mem_limit=spec.mem_limit,
                memswap_limit=spec.mem_limit,
                nano_cpus=spec.nano_cpus,
                pids_limit=spec.pids_limit,
                tmpfs={"/tmp": "rw,nosuid,nodev,size=512m"},
            )
        except (APIError, DockerException) as exc:
            raise EngineError(f"could not start container {spec.name}: {exc}") from exc
        return container.id

    def inspect(self, container_id: str) -> dict | None:
        """The container's state, None when there is no such container; EngineError when the engine cannot say."""
        try:
            return self.api.inspect_container(container_id)
        except NotFound:
            return None
        except (APIError, DockerException, requests.RequestException) as exc:
            raise EngineError(f"could not inspect container {container_id[:12]}: {exc}") from exc

    def is_running(self, container_id: str) -> bool:
        info = self.inspect(container_id)
        return bool(info and info["State"]["Running"])

    def run_once(
        self,
        image: str,
        argv: list[str],
        *,
        mounts: list[docker.types.Mount],
        user: str,
        labels: dict[str, str],
        stdin: bytes,
        timeout: int = 120,
        seccomp_profile: str | None = None,
    ) -> tuple[int | None, str]:
        """Run ``argv`` in a throw-away hardened container without network, ``stdin`` on its standard input; return
        its exit code and standard output. The container is removed whatever happens. ``seccomp_profile`` as for
        :class:`ContainerSpec`."""
        with self._helper_container(
            image, argv, mounts=mounts, user=user, labels=labels, seccomp_profile=seccomp_profile,
            stdin_open=True, read_only=True, pids_limit=64,
        ) as container:  # fmt: skip
            sock = self.api.attach_socket(container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            container.start()
            out = b"".join(data for stream, data in self._with_stdin(sock, stdin) if stream == "stdout")
            code = container.wait(timeout=timeout).get("StatusCode")
            return code, out.decode("utf-8", errors="replace")

    def run_and_commit(
        self,
        image: str,
        argv: list[str],
        *,
        mounts: list[docker.types.Mount],
        user: str,
        labels: dict[str, str],
        commit: dict,
        timeout: int = 3600,
        seccomp_profile: str | None = None,
    ) -> tuple[str, str]:
        """Run ``argv`` in a throw-away hardened container without network whose root is writable; when it exits
        with 0, commit it (``commit``: ``repository``, ``tag``, ``conf``). Returns the image's id and the standard
        output. The container is removed whatever happens."""
        with self._helper_container(
            image, argv, mounts=mounts, user=user, labels=labels, seccomp_profile=seccomp_profile, pids_limit=256
        ) as container:
            container.start()
            code = container.wait(timeout=timeout).get("StatusCode")
            out = container.logs(stdout=True, stderr=code != 0).decode("utf-8", errors="replace")
            if code != 0:
                raise EngineError(f"{argv[0]} in a helper container exited with {code}: {out[-300:]}")
            answer = self.api.commit(container.id, pause=False, **commit)
            return answer["Id"], out

    @contextlib.contextmanager
    def _helper_container(
        self, image: str, argv: list[str], *, seccomp_profile: str | None, **create
    ) -> Iterator[docker.models.containers.Container]:
        """A created (not started) hardened container without network for ``argv``, removed whatever happens; what
        the engine raises meanwhile becomes an EngineError."""
        container = None
        try:
            container = self.client.containers.create(
                image, argv, network_mode="none", **create, **hardening(seccomp_profile)
            )
            yield container
        except (APIError, DockerException, OSError, requests.RequestException) as exc:
            raise EngineError(f"could not run {argv[0]} in a helper container: {exc}") from exc
        finally:
            if container is not None:
                with contextlib.suppress(NotFound, APIError):
                    container.remove(force=True)

    def restart(self, container_id: str) -> None:
        """Kill the container and start it again: its init's death makes the kernel kill every process of its PID
        namespace (detached, double-forked and stopped ones too), and the start gives it a new one. Raises
        EngineError when any process from before is still to be seen (``docker top``)."""
        try:
            before = self._pids(container_id)
            self.kill_and_wait(container_id)
            self.api.start(container_id)
            left = before & self._pids(container_id)
        except (APIError, DockerException, requests.RequestException) as exc:
            raise EngineError(f"could not restart container {container_id[:12]}: {exc}") from exc
        if left:
            raise EngineError(f"container {container_id[:12]}: processes {sorted(left)} outlived its restart")

    def start(self, container_id: str) -> None:
        try:
            self.api.start(container_id)
        except (APIError, DockerException, requests.RequestException) as exc:
            raise EngineError(f"could not start container {container_id[:12]}: {exc}") from exc

    def kill_and_wait(self, container_id: str, timeout: int = 30) -> None:
        """SIGKILL the container and return once it has stopped (all its processes gone)."""
        try:
            self.api.kill(container_id)
            self.api.wait(container_id, timeout=timeout, condition="not-running")
        except NotFound:
            return  # removed: nothing of it runs
        except APIError as exc:
            if exc.status_code != 409:  # 409: not running, which is the goal
                raise

    def _pids(self, container_id: str) -> set[str]:
        top = self.api.top(container_id)
        column = top["Titles"].index("PID")
        return {row[column] for row in top.get("Processes") or []}

    def kill(self, container_id: str) -> None:
        with contextlib.suppress(NotFound, APIError):  # already gone or not running: the goal is reached
            self.api.kill(container_id)

    def stop_and_remove(self, container_id: str, *, timeout: int = 5) -> None:
        """Stop (SIGTERM, ``timeout`` seconds, SIGKILL), then remove."""
        with contextlib.suppress(NotFound, APIError):
            self.api.stop(container_id, timeout=timeout)
        self.remove_now(container_id)

    def remove_now(self, container_id: str) -> None:
        """Remove the container, killing what runs in it: one call (``docker rm -f``). Gone already is fine."""
        try:
            self.api.remove_container(container_id, force=True, v=False)
        except NotFound:
            pass
        except APIError as exc:
            if not (exc.status_code == 409 and "already in progress" in str(exc)):
                raise
            # Someone else's ``docker rm`` got there first: wait until it is done, so that the name and the
            # volumes are free when this returns.
            with contextlib.suppress(NotFound, APIError, requests.RequestException):
                self.api.wait(container_id, timeout=35, condition="removed")

    def list_managed(self, instance: str, *, attempt_id: int | None = None, also: tuple[str, ...] = ()) -> list[dict]:
        """Containers this installation manages (label ``anyon.instance``), of one attempt if given, carrying the
        labels ``also`` (``key=value``) too; others on the engine are not ours."""
        labels = [f"{label.MANAGED}=1", f"{label.INSTANCE}={instance}", *also]
        if attempt_id is not None:
            labels.append(f"{label.ATTEMPT}={attempt_id}")
        try:
            return self.api.containers(all=True, filters={"label": labels})
        except (APIError, DockerException, requests.RequestException) as exc:
            raise EngineError(f"could not list containers: {exc}") from exc

    # --- volumes ---------------------------------------------------------------------------------------------
    def changes(self, container_id: str) -> list[dict]:
        """``docker diff``: the paths the container's own layer changed (``Kind`` 0 changed, 1 added, 2 deleted);
        volumes, binds and tmpfs mounts are not in it."""
        try:
            return self.api.diff(container_id) or []
        except (APIError, DockerException) as exc:
            raise EngineError(f"could not list the changes of {container_id[:12]}: {exc}") from exc

    def archive(self, container_id: str, path: str) -> Iterator[bytes]:
        """``path`` in the container (volumes included) as a tar stream, read by the engine (not by any program in
        the container, whatever the files' modes); symbolic links are stored as links, never followed."""
        try:
            stream, _ = self.api.get_archive(container_id, path)
        except NotFound:
            return iter(())
        except (APIError, DockerException) as exc:
            raise EngineError(f"could not read {path} of {container_id[:12]}: {exc}") from exc
        return stream

    def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        try:
            self.client.volumes.get(name)
        except NotFound:
            self.client.volumes.create(name=name, labels=labels)

    def list_volumes(self, labels: list[str]) -> dict[str, float]:
        """The volumes carrying every one of ``labels`` (``key=value``): name → their ``anyon.created`` label
        (seconds since the epoch; 0 without one)."""
        try:
            found = self.api.volumes(filters={"label": labels}).get("Volumes") or []
        except (APIError, DockerException, requests.RequestException) as exc:
            raise EngineError(f"could not list volumes: {exc}") from exc
        created = {v["Name"]: (v.get("Labels") or {}).get(label.CREATED, "") for v in found}
        return {name: float(value) if value.isdigit() else 0.0 for name, value in created.items()}

    def remove_volume(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            self.client.volumes.get(name).remove(force=True)

    def volume_sizes(self) -> dict[str, int]:
        """Bytes used by each volume of the engine (``docker system df -v``; the engine walks every volume, so this
        is slow on a busy host). A size the engine does not know is left out."""
        try:
            volumes = self.api.df().get("Volumes") or []
        except (APIError, DockerException, requests.RequestException) as exc:
            raise EngineError(f"could not measure volumes: {exc}") from exc
        sizes = {}
        for volume in volumes:
            size = (volume.get("UsageData") or {}).get("Size", -1)
            if isinstance(size, int) and size >= 0:
                sizes[volume["Name"]] = size
        return sizes

    # --- exec ------------------------------------------------------------------------------------------------
    def exec_stream(
        self,
        container_id: str,
        argv: list[str],
        result: ExecResult,
        *,
        user: str = "anyon",
        workdir: str = "/workspace",
        environment: dict[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> Iterator[tuple[str, bytes]]:
        """Run ``argv`` in the container; yield ``("stdout"|"stderr", bytes)`` chunks as they come.

        ``stdin`` is written to the process's standard input, which is then closed (the prompt of an agent step
        travels this way: no size limit of one argument, and it stays out of ``docker inspect``).

        When the generator is exhausted, ``result.exit_code`` holds the exit code (None if the container died
        before the exec could report one).
        """
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise TypeError("argv must be a list of strings")
        try:
            exec_id = self.api.exec_create(
                container_id,
                argv,
                stdout=True,
                stderr=True,
                stdin=stdin is not None,
                user=user,
                workdir=workdir,
                environment=environment,
            )["Id"]
            result.exec_id = exec_id
            if stdin is None:
                chunks = self._demuxed(self.api.exec_start(exec_id, stream=True, demux=True))
            else:
                chunks = self._with_stdin(self.api.exec_start(exec_id, socket=True), stdin)
        except (APIError, DockerException) as exc:
            raise EngineError(f"could not exec in {container_id[:12]}: {exc}") from exc
        try:
            yield from chunks
        except (APIError, DockerException, OSError) as exc:
            logger.info("exec stream of %s ended: %s", exec_id[:12], exc)
        result.exit_code = self._exit_code(exec_id)

    @staticmethod
    def _demuxed(stream) -> Iterator[tuple[str, bytes]]:
        for out, err in stream:
            if out:
                yield "stdout", out
            if err:
                yield "stderr", err

    @staticmethod
    def _with_stdin(sock, data: bytes) -> Iterator[tuple[str, bytes]]:
        """Feed ``data`` to the exec's stdin from a thread, half-close it (EOF), and read the multiplexed output."""
        raw = getattr(sock, "_sock", sock)

        def feed() -> None:
            try:
                raw.sendall(data)
                raw.shutdown(socket.SHUT_WR)
            except OSError as exc:
                logger.info("writing stdin failed: %s", exc)

        writer = threading.Thread(target=feed, name="exec-stdin", daemon=True)
        writer.start()
        try:
            for stream_id, payload in frames_iter(sock, tty=False):
                yield ("stderr" if stream_id == STDERR else "stdout"), payload
        finally:
            writer.join(timeout=5)
            sock.close()

    def exec_capture(
        self, container_id: str, argv: list[str], *, limit: int = 2 * 1024 * 1024, **kwargs
    ) -> tuple[int | None, str, bool]:
        """Run a short internal command; return (exit code, stdout up to ``limit`` bytes, complete?)."""
        result = ExecResult()
        out = bytearray()
        complete = True
        for stream, data in self.exec_stream(container_id, argv, result, **kwargs):
            if stream == "stdout":
                room = limit - len(out)
                if len(data) > room:
                    complete = False
                out += data[: max(0, room)]
        return result.exit_code, out.decode("utf-8", errors="replace"), complete

    def _exit_code(self, exec_id: str, wait: float = 5.0) -> int | None:
        deadline = time.monotonic() + wait
        while True:
            try:
                info = self.api.exec_inspect(exec_id)
            except (NotFound, APIError):
                return None
            if not info.get("Running"):
                return info.get("ExitCode")
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)  # the stream has ended: the exit code is a moment away
