"""Forward one HTTP request to a fixed upstream and stream the answer back, both directions chunk by chunk.

aiohttp parses and writes HTTP on both sides. Bodies are never collected: the request body is handed to the client
as the server's stream, the response is written as it arrives (Server-Sent Events reach the CLI event by event),
and both sides apply backpressure, so memory stays bounded whatever the size (a 100 MB push).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from shared.egress.address_policy import AddressPolicy, Refused
from shared.egress.grant import HostPort

logger = logging.getLogger(__name__)

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "expect",  # answered here (100 Continue) once the request is accepted; never passed on
    }
)
CONNECT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Upstream:
    """A base URL split into what the connection needs; ``prefix`` is prepended to every request path."""

    scheme: str
    target: HostPort
    prefix: str

    @classmethod
    def of(cls, base_url: str) -> Upstream:
        parts = urlsplit(base_url)
        return cls(parts.scheme, HostPort.of_url(base_url), parts.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.target.host}]" if ":" in self.target.host else self.target.host
        return host if self.target.port == default else f"{host}:{self.target.port}"


def new_session(limit: int = 64) -> aiohttp.ClientSession:
    """An upstream client that changes nothing on its own: no cookies kept, no decompression, no added headers;
    at most ``limit`` connections, idle ones closed after 15 s."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, use_dns_cache=False, keepalive_timeout=15),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_read=None),
    )


def request_headers(request: web.BaseRequest, drop: Iterable[str] = ()) -> CIMultiDict[str]:
    """The client's end-to-end headers minus ``drop`` (and whatever its ``Connection`` header names)."""
    named = {v.strip().lower() for value in request.headers.getall("Connection", []) for v in value.split(",")}
    skip = HOP_BY_HOP | named | {d.lower() for d in drop}
    return CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in skip)


def refuse(status: int, message: str, *, content_type: str = "text/plain") -> web.Response:
    return web.Response(status=status, text=message + "\n", content_type=content_type)


async def continue_if_expected(request: web.BaseRequest) -> None:
    """What aiohttp's router does for an application; this low-level server has to say it itself. Only after every
    check on the head: a refused request gets its 403 without the client sending the body."""
    if request.headers.get("Expect", "").lower() == "100-continue" and request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")


async def forward(
    request: web.BaseRequest,
    session: aiohttp.ClientSession,
    upstream: Upstream,
    headers: CIMultiDict[str],
    policy: AddressPolicy,
    internal: frozenset[HostPort],
    body: bytes | AsyncIterable[bytes] | None = None,
) -> web.StreamResponse:
    """Send ``request`` (with ``headers``) to ``upstream`` at an address the policy checked; stream the reply.

    ``body``: the request body, when the caller has read it or its start already (and so answered any ``Expect``)."""
    try:
        addresses = await policy.addresses(upstream.target, internal)
    except Refused as exc:
        logger.info("egress refused upstream %s", exc)
        return refuse(403, f"egress proxy: {exc}")
    headers["Host"] = upstream.host_header
    if body is None and request.body_exists:
        body = request.content
        await continue_if_expected(request)
    upstream_response = None
    for address in addresses:
        url = URL.build(
            scheme=upstream.scheme,
            host=address,
            port=upstream.target.port,
            path=upstream.prefix + request.raw_path.partition("?")[0],
            query_string=request.rel_url.raw_query_string,
            encoded=True,
        )
        try:
            upstream_response = await session.request(
                request.method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                server_hostname=upstream.target.host if upstream.scheme == "https" else None,
            )
            break
        except aiohttp.ClientConnectorError as exc:  # nothing of the body was read yet: the next address may do
            logger.debug("egress upstream %s at %s failed: %s", upstream.target, address, exc)
    if upstream_response is None:
        return refuse(502, f"egress proxy: {upstream.target} is unreachable")
    async with upstream_response:
        response = web.StreamResponse(status=upstream_response.status, reason=upstream_response.reason)
        named = {v.strip().lower() for v in upstream_response.headers.get("Connection", "").split(",")}
        for name, value in upstream_response.headers.items():
            if name.lower() not in HOP_BY_HOP | named:
                response.headers.add(name, value)
        await response.prepare(request)
        async for chunk in upstream_response.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
    logger.debug("egress forwarded %s %s -> %s %s", request.method, upstream.target, address, response.status)
    return response
