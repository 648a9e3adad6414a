"""Which addresses an upstream connection may go to: public ones, unless the exact host:port is marked internal.

The proxy resolves every name itself, checks each address, and connects to an address it checked: there is no
second lookup between check and connect, so a name that flips to 169.254.169.254 (DNS rebinding) gets nowhere.
"""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import logging
import socket
import struct
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from shared.egress.grant import HostPort

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port) -> addresses``; injectable so tests decide what a name resolves to without any network.
Resolver = Callable[[str, int], Awaitable[list[str]]]

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT
_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: Special-purpose ranges (IANA registries) that are not globally reachable but that the ``ipaddress`` of some supported
#: Python (3.11) reports as global; checked by value, so the answer does not depend on the interpreter.
_SPECIAL = tuple(
    (ipaddress.ip_network(net), what)
    for net, what in (
        ("192.0.0.0/24", "an IETF protocol assignment address"),
        ("192.88.99.0/24", "a deprecated 6to4 relay address"),
        ("fec0::/10", "a site-local address"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("::/96", "an IPv4-compatible address"),
        ("5f00::/16", "a segment routing address"),
        ("3fff::/20", "a documentation address"),
        ("2001:db8::/32", "a documentation address"),
    )
)


class Refused(Exception):
    """The target may not be reached; ``reason`` reads after the target (``"resolves to a loopback address"``)."""

    def __init__(self, target: HostPort, reason: str) -> None:
        super().__init__(f"{target} {reason}")
        self.target = target
        self.reason = reason


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (getaddrinfo), without blocking the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo client, NAT64), which is where packets go."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(ip: IPAddress, own: frozenset[IPAddress] = frozenset()) -> str | None:
    """Why ``ip`` is not a public address of another machine, or None when it is."""
    if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_ipv4(ip)) is not None:
        problem = address_problem(inner, own)
        return f"{problem} (inside {ip})" if problem else None
    checks: list[tuple[bool, str]] = [
        (ip in own, "this host's own address"),
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip in _METADATA, "the cloud metadata address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED, "a carrier-grade NAT address"),
        (any(ip in net for net in _PRIVATE), "a private address"),
        *((ip in net, what) for net, what in _SPECIAL),
        (ip.is_reserved, "a reserved address"),
        (not ip.is_global, "not a public address"),  # documentation, benchmarking, ... ranges
    ]
    return next((f"{what} ({ip})" for bad, what in checks if bad), None)


def host_addresses() -> frozenset[IPAddress]:
    """This machine's interface addresses, read locally (ioctl and /proc): no DNS, no packet sent."""
    found: set[IPAddress] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _index, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(probe.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
            except OSError:
                continue
            found.add(ipaddress.IPv4Address(packed[20:24]))
    inet6 = Path("/proc/net/if_inet6")
    if inet6.exists():
        for line in inet6.read_text().splitlines():
            raw = line.split()[0]
            found.add(ipaddress.IPv6Address(int(raw, 16)))
    return frozenset(found)


class AddressPolicy:
    """Resolves a target once and returns the addresses it may connect to, or raises :class:`Refused`."""

    def __init__(self, resolver: Resolver = system_resolver, own_addresses: Iterable[str] | None = None) -> None:
        self.resolver = resolver
        own = host_addresses() if own_addresses is None else (ipaddress.ip_address(a) for a in own_addresses)
        self.own: frozenset[IPAddress] = frozenset(own)

    async def addresses(self, target: HostPort, internal: frozenset[HostPort] = frozenset()) -> list[str]:
        """Checked addresses of ``target``; exactly ``target`` in ``internal`` may be non-public."""
        try:
            ips = [ipaddress.ip_address(target.host)]
        except ValueError:
            try:
                ips = [ipaddress.ip_address(a) for a in await self.resolver(target.host, target.port)]
            except (OSError, ValueError) as exc:
                raise Refused(target, f"does not resolve ({exc})") from exc
        if not ips:
            raise Refused(target, "does not resolve")
        if target not in internal:
            for ip in ips:
                problem = address_problem(ip, self.own)
                if problem:
                    raise Refused(target, f"resolves to {problem}")
        return [str(ip) for ip in ips]
