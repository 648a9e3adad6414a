"""A Python package index (PEP 503 "simple" API) on 127.0.0.1, serving wheels made here: the stand-in for PyPI or a
private index in tests of setup scripts that ``pip install``.

``wheel`` writes a pure-Python wheel (PEP 427: ``*.dist-info`` with METADATA, WHEEL and a RECORD of sha256 hashes)
with the standard library alone: the test virtualenv has no wheel builder (setuptools there needs the ``wheel``
package for ``bdist_wheel``), and one module is all the tests need.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import zipfile

from packaging.utils import canonicalize_name

from tests.fakes.http_server import FakeHTTPServer, Recorded, Reply

#: A fixed time for every member: the same sources give the same wheel bytes.
_EPOCH = (2020, 1, 1, 0, 0, 0)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel(name: str, version: str, files: dict[str, str]) -> tuple[str, bytes]:
    """A ``py3-none-any`` wheel of ``files`` (path in site-packages → text): its file name and bytes."""
    dist = canonicalize_name(name).replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    members = {
        **{path: text.encode() for path, text in files.items()},
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: anyon-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in members.items())
    members[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in members.items():
            archive.writestr(zipfile.ZipInfo(path, _EPOCH), data, zipfile.ZIP_DEFLATED)
    return f"{dist}-{version}-py3-none-any.whl", buffer.getvalue()


class FakePackageIndex(FakeHTTPServer):
    """``/simple/`` lists the projects, ``/simple/<project>/`` links their wheels (with ``#sha256=``), ``/files/…``
    serves them. ``index_url`` is what ``pip install --index-url`` takes; ``requests`` records every hit."""

    def __init__(self) -> None:
        super().__init__()
        self.projects: dict[str, dict[str, bytes]] = {}  # canonical name → file name → wheel

    @property
    def index_url(self) -> str:
        return f"{self.url}/simple/"

    def add_wheel(self, name: str, version: str, files: dict[str, str]) -> str:
        filename, data = wheel(name, version, files)
        self.projects.setdefault(canonicalize_name(name), {})[filename] = data
        return filename

    def handle(self, request: Recorded) -> Reply:
        page = {"Content-Type": "text/html; charset=utf-8"}
        parts = [p for p in request.path.split("/") if p]
        if parts == ["simple"]:
            links = "".join(f'<a href="/simple/{p}/">{html.escape(p)}</a>\n' for p in sorted(self.projects))
            return Reply(200, f"<!DOCTYPE html><html><body>\n{links}</body></html>\n", page)
        if len(parts) == 2 and parts[0] == "simple" and (wheels := self.projects.get(canonicalize_name(parts[1]))):
            links = "".join(
                f'<a href="/files/{f}#sha256={hashlib.sha256(d).hexdigest()}">{html.escape(f)}</a>\n'
                for f, d in sorted(wheels.items())
            )
            return Reply(200, f"<!DOCTYPE html><html><body>\n{links}</body></html>\n", page)
        if len(parts) == 2 and parts[0] == "files":
            for wheels in self.projects.values():
                if parts[1] in wheels:
                    return Reply(200, wheels[parts[1]], {"Content-Type": "application/octet-stream"})
        return Reply(404, "not found\n")
