"""The ref policy of a push through ``git.sock``: the attempt's own branch may be created or updated, nothing else.

A ``git-receive-pack`` request body starts with pkt-lines (``gitprotocol-pack(5)``): optional ``shallow <id>`` lines,
then the command list (``<old-id> <new-id> <ref>``, the first line carrying the capabilities after a NUL) ended by a
flush packet, then the push options (only when the ``push-options`` capability was asked for) ended by a flush, then
the PACK. The proxy reads that head before a byte goes upstream, checks every command and either forwards the head
followed by the rest of the stream unchanged, or answers itself with a ``report-status`` result (``unpack ok``, one
``ng <ref> <reason>`` per command, in side-band when the client asked for it) so that ``git push`` prints why.

A request naming any refused ref is refused whole. Deleting (new id all zeros) is refused, the attempt's branch
included. Updating the attempt's branch from any old id is allowed, a forced update too: the server only ever sees
``old -> new`` (a force push is a client-side notion) and checks the old id against the branch itself; the branch
belongs to the attempt, so rewriting it harms nothing else.

Hand-written rather than taken from a git library: the grammar is small, and the parser is strict where git's
own readers would be lenient (only four hex digits make a length; no sign, space or ``0x``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

logger = logging.getLogger(__name__)

#: The longest pkt-line git writes or accepts (``LARGE_PACKET_MAX``), length header included.
MAX_PKT = 65520
#: How much of the body may precede the PACK (commands, shallow lines, push options). An allowed push has one
#: command; ``--mirror`` of a repository with thousands of refs fits too, and is refused by name.
MAX_HEAD = 1024 * 1024
FLUSH = b"0000"
#: How long a refused push's PACK is read (and dropped) before the refusal is answered: git reads the answer only
#: once it has sent its body.
DRAIN_SECONDS = 60.0

_OID = re.compile(rb"[0-9a-f]{40}|[0-9a-f]{64}")
_HEX4 = re.compile(rb"[0-9a-fA-F]{4}")
#: What a ref name in a command may contain (git's own rules are stricter still); anything else is malformed,
#: so a reply that names the ref can never break the pkt-line framing.
_REF = re.compile(rb"refs/[\x21-\x7e]{1,1000}")


class Malformed(ValueError):
    """The body is not a receive-pack request this proxy will read."""


@dataclass(frozen=True)
class Command:
    old: str
    new: str
    ref: str

    @property
    def deletes(self) -> bool:
        return set(self.new) == {"0"}


@dataclass(frozen=True)
class UpdateRequest:
    """The head of a receive-pack request: its commands and capabilities, and its length in bytes."""

    commands: tuple[Command, ...]
    capabilities: frozenset[str]
    length: int

    @property
    def side_band(self) -> int:
        """The packet size of the side-band the client asked for (0: none)."""
        if "side-band-64k" in self.capabilities:
            return MAX_PKT
        return 1000 if "side-band" in self.capabilities else 0

    @property
    def reports(self) -> bool:
        return bool({"report-status", "report-status-v2"} & self.capabilities)


def _command(line: bytes) -> Command:
    fields = line.split(b" ", 2)
    if len(fields) != 3 or not _OID.fullmatch(fields[0]) or not _OID.fullmatch(fields[1]):
        raise Malformed("a command is not '<old-id> <new-id> <ref>'")
    if len(fields[0]) != len(fields[1]):
        raise Malformed("a command mixes object-id lengths")
    if not _REF.fullmatch(fields[2]):
        raise Malformed("a ref name is not printable ASCII under refs/")
    return Command(fields[0].decode(), fields[1].decode(), fields[2].decode())


class HeadParser:
    """Reads the head of a receive-pack request as its bytes arrive; each byte is looked at once, however the
    body is cut (a client trickling a byte at a time costs no more than one sending it whole)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self._at = 0
        self._stage = "shallow"  # -> "commands" -> "options" (when the push-options capability was asked for)
        self._commands: list[Command] = []
        self._capabilities: frozenset[str] = frozenset()

    def feed(self, chunk: bytes) -> UpdateRequest | None:
        """The head, once complete (the rest of ``data`` is the start of the PACK), or None: more bytes needed.

        Raises :class:`Malformed` for anything else, including a head longer than ``MAX_HEAD``."""
        self.data += chunk
        data = self.data
        while len(data) - self._at >= 4:
            header = bytes(data[self._at : self._at + 4])
            if not _HEX4.fullmatch(header):
                raise Malformed("a pkt-line length is not four hex digits")
            size = int(header, 16)
            if 0 < size < 4:
                raise Malformed(f"pkt-line length {size} is not allowed in a push")
            if size > MAX_PKT:
                raise Malformed(f"pkt-line length {size} is over {MAX_PKT}")
            end = self._at + max(size, 4)
            if end > MAX_HEAD:
                break
            if len(data) < end:
                return None
            payload = bytes(data[self._at + 4 : end]) if size else None
            self._at = end
            if self._packet(payload):
                return UpdateRequest(tuple(self._commands), self._capabilities, end)
        if len(data) >= MAX_HEAD:
            raise Malformed(f"the commands take more than {MAX_HEAD} bytes")
        return None

    def _packet(self, payload: bytes | None) -> bool:
        """Take one pkt-line (None: a flush); True when it ended the head."""
        if payload is None:  # the end of the commands (none: git's probe), or of the push options
            if self._stage == "commands" and "push-options" in self._capabilities:
                self._stage = "options"
                return False
            return True
        line = payload.removesuffix(b"\n")
        if self._stage == "options":
            if b"\0" in line:
                raise Malformed("a push option holds a NUL")
            return False
        if self._stage == "shallow" and line.startswith(b"shallow "):
            if not _OID.fullmatch(line.removeprefix(b"shallow ")):
                raise Malformed("a shallow line does not name an object id")
            return False
        if self._stage == "shallow":
            self._stage = "commands"
            line, nul, caps = line.partition(b"\0")
            if line.startswith(b"push-cert"):
                raise Malformed("signed pushes are not accepted")
            if not nul:
                raise Malformed("the first command carries no capabilities")
            try:
                self._capabilities = frozenset(caps.decode("ascii").split())
            except UnicodeDecodeError as exc:
                raise Malformed("the capabilities are not ASCII") from exc
        elif b"\0" in line:
            raise Malformed("a NUL after the first command")
        self._commands.append(_command(line))
        return False


def parse_update_request(data: bytes) -> UpdateRequest | None:
    """The head of a receive-pack request at the start of ``data``, or None when more bytes are needed."""
    return HeadParser().feed(data)


def refusals(request: UpdateRequest, branch: str | None) -> dict[str, str]:
    """Why each command is refused, by ref; empty when the whole request may go upstream.

    Only ``refs/heads/<branch>`` may be created or updated; when any command is refused, so are the others."""
    allowed = f"refs/heads/{branch}" if branch else None
    reasons: dict[str, str] = {}
    for command in request.commands:
        if allowed is None:
            reasons[command.ref] = "no branch may be pushed in this run"
        elif command.ref != allowed:
            kind = "tags" if command.ref.startswith("refs/tags/") else "other refs"
            reasons[command.ref] = f"{kind} may not be pushed: only {allowed}"
        elif command.deletes:
            reasons[command.ref] = "deleting a branch is not allowed"
    if reasons:
        for command in request.commands:
            reasons.setdefault(command.ref, "refused with the rest of this push")
    return reasons


def pkt_line(payload: bytes) -> bytes:
    return b"%04x" % (len(payload) + 4) + payload


def refusal_result(request: UpdateRequest, reasons: dict[str, str]) -> bytes:
    """The receive-pack result git prints: ``unpack ok`` and ``ng <ref> <reason>`` per ref, in side-band when asked."""
    report = pkt_line(b"unpack ok\n")
    for ref, reason in reasons.items():
        report += pkt_line(f"ng {ref} egress proxy: {reason}\n".encode())
    report += FLUSH
    band = request.side_band
    if not band:
        return report
    message = f"egress proxy: push refused: {len(reasons)} ref(s), only the attempt's own branch may be pushed\n"
    out = pkt_line(b"\x02" + message.encode())
    step = band - 5
    for at in range(0, len(report), step):
        out += pkt_line(b"\x01" + report[at : at + step])
    return out + FLUSH


async def read_head(content) -> tuple[UpdateRequest, bytes]:
    """Read a receive-pack body (an aiohttp ``StreamReader``) up to the end of its head; returns the head and every
    byte read (the head, maybe the start of the PACK). Raises :class:`Malformed`."""
    parser = HeadParser()
    while (head := parser.feed(chunk := await content.readany())) is None:
        if not chunk:
            raise Malformed("the body ended inside the command list")
    data = bytes(parser.data)
    if not head.commands:  # git's probe is exactly a flush; receive-pack would ignore anything after it
        rest = data[head.length :]
        while len(rest) <= MAX_PKT and (chunk := await content.readany()):
            rest += chunk
        if rest:
            raise Malformed("data after an empty command list")
    return head, data


async def _then_rest(data: bytes, content) -> AsyncIterator[bytes]:
    yield data
    async for chunk in content.iter_any():
        yield chunk


async def _drain(content) -> None:
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in content.iter_any():
                pass


async def screen_push(attempt, request: web.BaseRequest) -> web.Response | AsyncIterator[bytes]:
    """Read a receive-pack request's head and apply the ref policy of ``attempt.grant``.

    Returns either the refusal to answer (the body was read and dropped: nothing went upstream) or the body to
    forward (the head already read, then the rest as it arrives)."""
    grant = attempt.grant
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity":  # git never compresses a push; the upstream would read what the proxy did not
        return await _refuse_malformed(attempt, "a compressed push body")
    if request.headers.get("Expect", "").lower() == "100-continue" and request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        head, data = await read_head(request.content)
    except Malformed as exc:
        await _drain(request.content)
        return await _refuse_malformed(attempt, str(exc))
    reasons = refusals(head, grant.git_push_branch)
    if not reasons:
        return _then_rest(data, request.content)
    await _drain(request.content)
    first, why = next((ref, why) for ref, why in reasons.items() if why != "refused with the rest of this push")
    more = f" (and {len(reasons) - 1} more ref(s))" if len(reasons) > 1 else ""
    logger.warning("egress attempt %s: push refused: %s", grant.attempt_id, ", ".join(sorted(reasons))[:2000])
    await attempt.blocked(attempt.git_upstream.target, f"refused a push to {first[:80]}: {why}{more}")
    if not head.reports:
        return web.Response(status=403, text=f"egress proxy: push refused: {first}: {why}\n")
    headers = {"Cache-Control": "no-cache"}
    body = refusal_result(head, reasons)
    return web.Response(body=body, content_type="application/x-git-receive-pack-result", headers=headers)


async def _refuse_malformed(attempt, why: str) -> web.Response:
    logger.warning("egress attempt %s: push refused: %s", attempt.grant.attempt_id, why)
    await attempt.blocked(attempt.git_upstream.target, f"refused a push: {why}")
    return web.Response(status=400, text=f"egress proxy: push refused: {why}\n")
