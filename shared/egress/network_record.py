"""The network record of one attempt: per host, what went through the proxy, and what was refused.

Bounded whatever the agent does: at most ``MAX_HOSTS`` hosts (then one ``(other hosts)`` row), ``MAX_BLOCKS``
distinct refusals (then counted on the last row) and ``MAX_EXAMPLES`` requests noted per host. The worker fetches
it over the control socket (``{"op": "record"}``) at the end of a phase or attempt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MAX_HOSTS = 200
MAX_BLOCKS = 100
MAX_EXAMPLES = 20
OTHER_HOSTS = "(other hosts)"


@dataclass
class HostUse:
    """``bytes_in``: what reached the container from the host; ``bytes_out``: what the container sent to it.
    Request and answer bodies for plain HTTP, everything for a tunnel, the answer's head too on the credentialed
    sockets. ``credential``: which one Anyon added (``anthropic``, ``github`` or ``none``)."""

    host: str
    port: int
    credential: str = "none"
    requests: int = 0
    tunnels: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    blocked: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass
class Block:
    host: str
    port: int
    method: str | None
    path: str | None
    reason: str
    count: int = 1


class NetworkRecord:
    def __init__(self) -> None:
        self.hosts: dict[tuple[str, int, str], HostUse] = {}
        self.blocks: dict[tuple[str, int, str | None, str | None, str], Block] = {}

    def use(self, host: str, port: int, credential: str = "none") -> HostUse:
        key = (host, port, credential)
        found = self.hosts.get(key)
        if found is None:
            if len(self.hosts) >= MAX_HOSTS:
                key = (OTHER_HOSTS, 0, credential)
                found = self.hosts.get(key)
            if found is None:
                found = self.hosts[key] = HostUse(key[0], key[1], credential)
        return found

    def request(self, host: str, port: int, method: str, path: str, credential: str = "none") -> HostUse:
        use = self.use(host, port, credential)
        use.requests += 1
        example = f"{method} {path[:200]}"
        if len(use.examples) < MAX_EXAMPLES and example not in use.examples:
            use.examples.append(example)
        return use

    def tunnel(self, host: str, port: int) -> HostUse:
        use = self.use(host, port)
        use.tunnels += 1
        if "CONNECT" not in use.examples and len(use.examples) < MAX_EXAMPLES:
            use.examples.append("CONNECT")
        return use

    def blocked(self, host: str, port: int, method: str | None, path: str | None, reason: str) -> None:
        self.use(host, port).blocked += 1
        key = (host, port, method, path[:200] if path else path, reason)
        found = self.blocks.get(key)
        if found is not None:
            found.count += 1
        elif len(self.blocks) < MAX_BLOCKS:
            self.blocks[key] = Block(*key)
        else:
            list(self.blocks.values())[-1].count += 1

    def used(self) -> list[tuple[str, int]]:
        """The host:ports the container reached through ``proxy.sock`` (for a policy proposal)."""
        return [(u.host, u.port) for u in self.hosts.values() if u.credential == "none" and (u.requests or u.tunnels)]

    def to_json(self) -> dict[str, Any]:
        return {
            "hosts": [asdict(u) for u in sorted(self.hosts.values(), key=lambda u: (u.host, u.port, u.credential))],
            "blocked": [asdict(b) for b in self.blocks.values()],
        }
