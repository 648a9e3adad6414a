"""The search for setup secrets left on disk after the setup phase (docs/ARCHITECTURE.md, "Environments").

What the agent could read of a setup's files is every file the container holds that its image did not: the paths
the container's own layer changed (``docker diff``: ``/var/tmp``, ``/run/lock``, or anywhere else the setup could
write) and the workspace and home volumes, whole. ``/tmp`` and ``/dev/shm`` are memory file systems that the restart
after the setup empties.

The files are read by the engine as tar streams (``docker cp``'s archive API) and searched here, on the worker: no
program in the container takes part, so nothing the setup planted (a ``grep`` earlier in a ``PATH``, a library to
preload, a file only its owner may read, a symbolic link to a device) changes what is found. Each value is searched
as it is and in the forms a careless setup leaves (``shared.masking.secret_variants``: base64 and base64url at each
alignment, base32, hex in either case, URL- and JSON-escaped, reversed); a copy that is compressed, encrypted or
otherwise transformed on purpose is not found.
"""

from __future__ import annotations

import functools
import io
import posixpath
import tarfile
from collections.abc import Iterable, Iterator

from execution.attempts.containers import HOME, SECRET_MOUNT, WORKSPACE
from shared.docker.engine import DockerEngine, EngineError
from shared.masking import secret_variants

#: The volumes: searched whole (docker diff does not list what changed in them).
VOLUMES = (WORKSPACE, HOME)
#: Memory file systems the restart empties (and the archive API does not see): not searched.
EMPTIED_BY_RESTART = ("/tmp", "/dev/shm")
CHUNK = 1024 * 1024
CHANGED, ADDED = 0, 1


def needles(value: str) -> list[bytes]:
    return sorted({value.encode(), *(form.encode() for form in secret_variants(value))}, key=len, reverse=True)


def paths_to_search(changes: Iterable[dict]) -> list[str]:
    """The fewest roots that hold every changed or added file of the container's layer: an added directory stands
    for all below it; a changed path is searched only where nothing below it changed (a directory whose entry was
    deleted, or a changed file). The volumes are always searched."""
    kinds = {item["Path"]: item["Kind"] for item in changes if item.get("Kind") in (CHANGED, ADDED)}
    parents = {posixpath.dirname(path) for path in kinds}
    roots = []
    for path, kind in sorted(kinds.items()):
        if path.startswith(tuple(f"{root}/" for root in (*VOLUMES, *EMPTIED_BY_RESTART, SECRET_MOUNT))) or path in (
            *VOLUMES,
            SECRET_MOUNT,
        ):
            continue
        if kinds.get(posixpath.dirname(path)) == ADDED:
            continue  # in its added parent's archive
        if kind == ADDED or path not in parents:
            roots.append(path)
    return [*VOLUMES, *roots]


class _Chunks(io.RawIOBase):
    """A file over an iterator of byte chunks (a tar stream read as it comes)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._rest = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._rest:
            self._rest = next(self._chunks, b"")
            if not self._rest:
                return 0
        size = min(len(buffer), len(self._rest))
        buffer[:size], self._rest = self._rest[:size], self._rest[size:]
        return size


def _in(window: bytes, forms: list[bytes]) -> bool:
    return any(form in window for form in forms)


def _longest(wanted: dict[str, list[bytes]]) -> int:
    return max((len(form) for forms in wanted.values() for form in forms), default=1)


def _hits(chunks: Iterable[bytes], wanted: dict[str, list[bytes]]) -> set[str]:
    """The names whose value shows up anywhere in ``chunks`` (one piece may end where the next begins)."""
    keep, tail, hit = _longest(wanted) - 1, b"", set()
    for chunk in chunks:
        window = tail + chunk
        hit.update(name for name, forms in wanted.items() if name not in hit and _in(window, forms))
        tail = window[-keep:] if keep else b""
    return hit


def _search_archive(stream: Iterator[bytes], parent: str, wanted: dict[str, list[bytes]], found: dict) -> None:
    """The files of a tar stream that hold a value (in their content, name or link target)."""
    with tarfile.open(fileobj=io.BufferedReader(_Chunks(stream), CHUNK), mode="r|", bufsize=CHUNK) as archive:
        for member in archive:
            path = posixpath.join(parent, member.name)
            hit = _hits([member.name.encode(), b"\0", member.linkname.encode()], wanted)
            if member.isfile():
                hit |= _hits(iter(functools.partial(archive.extractfile(member).read, CHUNK), b""), wanted)
            for name in hit:
                found.setdefault(name, []).append(path)


def secrets_on_disk(engine: DockerEngine, container_id: str, secrets: dict[str, str]) -> dict[str, list[str]] | None:
    """Setup secret name → files that hold its value in a form searched for; ``None`` when the search could not run
    (then the agent does not start). Run after the container's restart: no process of the setup is left."""
    wanted = {name: needles(value) for name, value in secrets.items() if value}
    found: dict[str, list[str]] = {}
    try:
        for root in paths_to_search(engine.changes(container_id)):
            # The raw tar stream first (a file's content is one run of bytes in it): the files are told apart
            # only in a root where something was found, read a second time.
            if _hits(engine.archive(container_id, root), {"": [f for forms in wanted.values() for f in forms]}):
                _search_archive(engine.archive(container_id, root), posixpath.dirname(root), wanted, found)
    except (EngineError, tarfile.TarError, OSError):
        return None
    return found
