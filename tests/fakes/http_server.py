"""A real HTTP server on 127.0.0.1 for fakes of outside services: subclasses implement ``handle``."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    raw_query: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(errors="replace")).items()}

    def json(self):
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)


class QuietServer(ThreadingHTTPServer):
    """Clients (the CLI, git) may drop a connection early; that is not an error worth a traceback."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeHTTPServer:
    """Start with ``with Fake() as fake:``; ``fake.url`` is ``http://127.0.0.1:<port>``.

    It always listens on 127.0.0.1; ``port`` (default: any free one) and ``host`` (the name in ``url``, e.g.
    ``localhost``) give a fixed address, for pictures that show its URLs (``make screenshots``)."""

    def __init__(self, *, port: int = 0, host: str = "127.0.0.1") -> None:
        self._records: list[Recorded] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":  # git push of a large pack
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                recorded = Recorded(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    raw_query=parts.query,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self._body(),
                )
                with fake.lock:
                    fake._records.append(recorded)
                reply = fake.handle(recorded)
                body = reply.body
                headers = dict(reply.headers)
                if isinstance(body, dict | list):
                    body = json.dumps(body).encode()
                    headers.setdefault("Content-Type", "application/json; charset=utf-8")
                elif isinstance(body, str):
                    body = body.encode()
                self.send_response(reply.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self.server = QuietServer(("127.0.0.1", port), Handler)
        bound = self.server.server_address[1]
        self.url = f"http://{host}" if bound == 80 else f"http://{host}:{bound}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, request: Recorded) -> Reply:
        return Reply(404, {"message": "Not Found"})

    @property
    def requests(self) -> list[Recorded]:
        """Every request so far, in arrival order (a copy)."""
        with self.lock:
            return list(self._records)

    def requests_to(self, path: str, method: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
