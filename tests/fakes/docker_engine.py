"""An in-process stand-in for :class:`shared.docker.engine.DockerEngine`: scripted output chunks and exit codes
through the same methods, so the runner's streaming, masking and outcome rules are tested without an engine.
The real-engine tests (``-m docker``) still cover what only an engine shows."""

from __future__ import annotations

import io
import itertools
import posixpath
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from execution.git import anyon_git
from execution.runner.step_report import REPORT_SCRIPT
from shared.docker.engine import ContainerSpec, ExecResult


@dataclass
class ScriptedExec:
    """What one exec prints and how it ends. ``exit_code=None`` is a container that went away mid-step."""

    chunks: list[tuple[str, bytes]] = field(default_factory=list)
    exit_code: int | None = 0
    delay: float = 0.0  # between chunks
    raises: Exception | None = None  # after the chunks: the stream broke


def agent_events(*events: dict) -> list[tuple[str, bytes]]:
    import json

    return [("stdout", (json.dumps(e) + "\n").encode()) for e in events]


class FakeEngine:
    def __init__(self, script: Callable[[list[str]], ScriptedExec | None] | None = None) -> None:
        self.script = script or (lambda argv: None)
        self.containers: dict[str, dict] = {}
        self.volumes: set[str] = set()
        self.sizes: dict[str, int] = {}  # bytes used by a volume (volume_sizes), 0 when not set
        self.execs: list[list[str]] = []
        self.environments: list[dict[str, str]] = []  # each exec's environment, in the order of ``execs``
        self.killed: list[str] = []
        self.restarts: list[str] = []
        self.gone = ""  # set: the engine stopped answering (unreachable() says this)
        self.reports = "none"  # what a reporting exec says of the workspace: "none" or "repository <base> <head>"
        self.reported = 0  # reports made
        self.loses_output = False  # as a Docker engine under load can: the exec's output never arrives
        self.files: dict[str, bytes] = {}  # path → content of files in the container (archive(); changes() lists them)
        self._ids = itertools.count(1)

    def unreachable(self) -> str:
        return self.gone

    # --- containers and volumes --------------------------------------------------------------------------
    def ensure_image(self, ref: str) -> None:
        pass

    def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        self.volumes.add(name)

    def remove_volume(self, name: str) -> None:
        self.volumes.discard(name)
        self.sizes.pop(name, None)

    def volume_sizes(self) -> dict[str, int]:
        return {name: self.sizes.get(name, 0) for name in self.volumes}

    def create_container(self, spec: ContainerSpec) -> str:
        container_id = f"{next(self._ids):064x}"
        self.containers[container_id] = {"Id": container_id, "Name": spec.name, "spec": spec, "running": True}
        return container_id

    def inspect(self, container_id: str) -> dict | None:
        return next((c for c in self.containers.values() if container_id in (c["Id"], c["Name"])), None)

    def is_running(self, container_id: str) -> bool:
        found = self.inspect(container_id)
        return bool(found and found["running"])

    def kill(self, container_id: str) -> None:
        self.killed.append(container_id)
        if container_id in self.containers:
            self.containers[container_id]["running"] = False

    def restart(self, container_id: str) -> None:
        self.restarts.append(container_id)
        if container_id in self.containers:
            self.containers[container_id]["running"] = True

    def kill_and_wait(self, container_id: str, timeout: int = 30) -> None:
        self.kill(container_id)

    def stop_and_remove(self, container_id: str, *, timeout: int = 5) -> None:
        self.remove_now(container_id)

    def remove_now(self, container_id: str) -> None:
        self.containers.pop(container_id, None)

    def image_id(self, ref: str) -> str:
        return "sha256:" + "f" * 64

    def list_managed(self, instance: str, *, attempt_id: int | None = None, also: tuple[str, ...] = ()) -> list[dict]:
        return list(self.containers.values())

    # --- execs ---------------------------------------------------------------------------------------------
    def exec_stream(
        self, container_id: str, argv: list[str], result: ExecResult, **kwargs
    ) -> Iterator[tuple[str, bytes]]:
        """The step's scripted output. Under the reporting ``sh`` (execution/runner/step_report.py) the step is
        the argv after its two arguments, and once it has ended (not stopped, container still there) the report
        line follows: no repository unless ``self.reports`` says what the workspace holds."""
        reporting = argv[:3] == [anyon_git.SH, "-c", REPORT_SCRIPT]
        nonce, argv = (argv[4], argv[6:]) if reporting else ("", argv)
        self.execs.append(argv)
        self.environments.append(dict(kwargs.get("environment") or {}))
        scripted = self.script(argv) or ScriptedExec()
        for chunk in [] if self.loses_output else scripted.chunks:
            if not self.is_running(container_id):  # killed (cancel, timeout): the stream ends
                result.exit_code = 137
                return
            if scripted.delay:
                time.sleep(scripted.delay)
            yield chunk
        if scripted.raises is not None:
            raise scripted.raises
        if scripted.exit_code is None:
            self.containers.get(container_id, {})["running"] = False
        elif reporting and self.is_running(container_id) and not self.loses_output:
            self.reported += 1
            yield "stdout", f"\x1eanyon-report {nonce} {self.reports}\n".encode()
        result.exit_code = scripted.exit_code

    def changes(self, container_id: str) -> list[dict]:
        return [{"Path": path, "Kind": 1} for path in self.files if not path.startswith(("/workspace/", "/home/"))]

    def archive(self, container_id: str, path: str) -> Iterator[bytes]:
        """The files under ``path`` as the engine's tar stream; noted in ``execs`` as ``["archive", path]``."""
        self.execs.append(["archive", path])
        self.environments.append({})
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, data in self.files.items():
                if name == path or name.startswith(path.rstrip("/") + "/"):
                    info = tarfile.TarInfo(posixpath.relpath(name, posixpath.dirname(path)))
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return iter([buffer.getvalue()])

    def exec_capture(self, container_id: str, argv: list[str], *, limit: int = 64 * 1024, **kwargs):
        self.execs.append(argv)
        self.environments.append(dict(kwargs.get("environment") or {}))
        scripted = self.script(argv)
        if scripted is None:  # internal commands: no repository, nothing to scrub
            if argv[:1] == ["git"] or (argv[:2] == [anyon_git.SH, "-c"] and argv[2].startswith(anyon_git.PRELUDE)):
                return 128, "", True  # Anyon's own git (execution/git/anyon_git.py)
            if argv[:3] == [anyon_git.SH, "-c", REPORT_SCRIPT]:  # the commits asked by an exec of their own
                return 0, f"\x1eanyon-report {argv[4]} {self.reports}\n", True
            return 0, "0\n", True
        out = b"".join(data for stream, data in scripted.chunks if stream == "stdout")
        return scripted.exit_code, out[:limit].decode(errors="replace"), len(out) <= limit

    def run_once(self, image: str, argv: list[str], **kwargs) -> tuple[int | None, str]:
        self.execs.append(argv)
        self.environments.append({})
        return 0, "0\n"
