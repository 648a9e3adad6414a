"""A hostile agent's flood as its own process: ``python -m tests.shared.egress.hostile_flood SOCKET... --seconds N``.

It opens connections to its attempt's sockets until they are refused (bounded), holds them, and sends requests as fast
as it can on a few of them for ``--seconds``; then prints one JSON line of what it got.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import time

MAX_CONNECTIONS = 3000


async def open_until_refused(paths: list[str]) -> tuple[list[tuple[asyncio.StreamReader, asyncio.StreamWriter]], int]:
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    refused = 0
    for i in range(MAX_CONNECTIONS):
        try:
            held.append(await asyncio.open_unix_connection(paths[i % len(paths)]))
        except OSError:
            refused += 1
        if i % 50 == 49:  # which of them did the proxy close at once?
            await asyncio.sleep(0.05)
            closed = [pair for pair in held if pair[0].at_eof() or pair[1].transport.is_closing()]
            refused += len(closed)
            held = [pair for pair in held if pair not in closed]
            if refused > 50:
                break
    await asyncio.sleep(0.2)
    return [(r, w) for r, w in held if not r.at_eof() and not w.transport.is_closing()], refused


async def hammer(
    path: str,
    pair: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
    request: bytes,
    until: float,
    counts: dict[str, int],
) -> None:
    """Requests back to back on a held connection (or a new one when it goes), until ``until``."""
    while time.monotonic() < until:
        if pair is None:
            try:
                pair = await asyncio.open_unix_connection(path)
            except OSError:
                counts["connect_failed"] += 1
                await asyncio.sleep(0.01)
                continue
        reader, writer = pair
        try:
            while time.monotonic() < until:
                writer.write(request)
                line = await asyncio.wait_for(reader.readline(), 5)
                if not line:
                    counts["closed"] += 1
                    break
                status = line.split()[1].decode()
                counts[status] = counts.get(status, 0) + 1
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((x for x in head.lower().split(b"\r\n") if x.startswith(b"content-length")), None)
                if length is None:
                    break
                await reader.readexactly(int(length.split(b":")[1]))
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            counts["errors"] += 1
            await asyncio.sleep(0.01)
        finally:
            writer.close()
            pair = None


async def main(paths: list[str], seconds: float, placeholder: str) -> dict[str, object]:
    body = b'{"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "flood"}]}'
    request = (
        f"POST /v1/messages HTTP/1.1\r\nHost: b\r\nx-api-key: {placeholder}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    cheap = [  # answered at once: an allowed one, and a refused one (each refusal is recorded on the attempt)
        f"{method} {target} HTTP/1.1\r\nHost: b\r\nx-api-key: {placeholder}\r\n\r\n".encode()
        for method, target in (("GET", "/v1/models"), ("GET", "/v1/files"))
    ]
    requests = [request, *cheap, *cheap, *cheap, request, *cheap]
    held, refused = await open_until_refused(paths)
    counts = {"connect_failed": 0, "closed": 0, "errors": 0}
    until = time.monotonic() + seconds
    api = [pair for pair in held if pair[1].transport.get_extra_info("peername") == paths[0]][:8]
    pairs = api + [None] * (8 - len(api))
    await asyncio.gather(*(hammer(paths[0], pair, requests[i], until, counts) for i, pair in enumerate(pairs)))
    still = sum(1 for _r, w in held if not w.transport.is_closing())
    for _r, writer in held:
        with contextlib.suppress(Exception):
            writer.close()
    return {"held": len(held), "refused": refused, "held_at_end": still, "requests": counts}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--placeholder", required=True)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536, hard))
    print(json.dumps(asyncio.run(main(args.paths, args.seconds, args.placeholder))), flush=True)
