"""The address policy decides with a stub resolver: nothing here opens a connection or asks a real DNS server."""

from __future__ import annotations

import ipaddress

import pytest

from shared.egress import AddressPolicy, HostPort, Refused, address_problem
from tests.shared.egress.conftest import OWN_ADDRESS, StubResolver

pytestmark = pytest.mark.hostile  # attacks: counted in docs/QA_CHECKLIST.md

PUBLIC = "93.184.216.34"


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("169.254.169.254", "the cloud metadata address"),
        ("fd00:ec2::254", "the cloud metadata address"),
        ("169.254.10.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("127.0.0.1", "a loopback address"),
        ("127.8.8.8", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("172.31.255.254", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fc00::1", "a private address"),
        ("fd12:3456::1", "a private address"),
        ("100.64.0.1", "a carrier-grade NAT address"),
        ("100.127.255.254", "a carrier-grade NAT address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("255.255.255.255", "a reserved address"),
        ("198.18.0.1", "not a public address"),  # benchmarking range
        ("192.0.2.10", "not a public address"),  # documentation range
        (OWN_ADDRESS, "this host's own address"),
        ("::ffff:127.0.0.1", "a loopback address"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "the cloud metadata address"),
        ("2002:a9fe:a9fe::1", "the cloud metadata address"),  # 6to4 around 169.254.169.254
        ("64:ff9b::a9fe:a9fe", "the cloud metadata address"),  # NAT64 around 169.254.169.254
        # Special-purpose ranges that Python 3.11's ipaddress reports as global: decided by value, on every Python.
        ("192.0.0.8", "an IETF protocol assignment address"),
        ("192.0.0.100", "an IETF protocol assignment address"),
        ("192.0.0.255", "an IETF protocol assignment address"),
        ("192.88.99.1", "a deprecated 6to4 relay address"),
        ("fec0::1", "a site-local address"),
        ("feff::1", "a site-local address"),
        ("3fff::1", "a documentation address"),
        ("2001:db8::1", "a documentation address"),
        ("64:ff9b:1::a9fe:a9fe", "a local-use NAT64 address"),
        ("5f00::1", "a segment routing address"),
        ("::7f00:1", "an IPv4-compatible address"),  # 127.0.0.1
        (PUBLIC, None),
        ("2606:4700::1111", None),
        ("172.32.0.1", None),  # just outside 172.16/12
        ("100.128.0.1", None),  # just outside 100.64/10
    ],
)
def test_address_table(address, problem):
    own = frozenset({ipaddress.ip_address(OWN_ADDRESS)})
    found = address_problem(ipaddress.ip_address(address), own)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem)


@pytest.mark.parametrize(
    ("name", "answer", "reason"),
    [
        ("metadata.test", ["169.254.169.254"], "resolves to the cloud metadata address (169.254.169.254)"),
        ("private.test", ["10.0.0.5"], "resolves to a private address (10.0.0.5)"),
        ("v6.test", ["fe80::1"], "resolves to a link-local address (fe80::1)"),
        ("self.test", [OWN_ADDRESS], f"resolves to this host's own address ({OWN_ADDRESS})"),
        ("mixed.test", [PUBLIC, "127.0.0.1"], "resolves to a loopback address (127.0.0.1)"),  # one bad answer is enough
        ("nowhere.test", None, "does not resolve (stub resolver: nowhere.test is unknown)"),
        ("empty.test", [], "does not resolve"),
    ],
)
async def test_names_resolving_to_forbidden_addresses_are_refused(name, answer, reason):
    resolver = StubResolver({} if answer is None else {name: answer})
    policy = AddressPolicy(resolver, own_addresses=[OWN_ADDRESS])
    with pytest.raises(Refused) as refused:
        await policy.addresses(HostPort(name, 443))
    assert refused.value.reason == reason
    assert str(refused.value) == f"{name}:443 {reason}"


async def test_ip_literals_are_checked_without_resolving():
    resolver = StubResolver()
    policy = AddressPolicy(resolver, own_addresses=[])
    with pytest.raises(Refused, match="loopback"):
        await policy.addresses(HostPort("127.0.0.1", 8080))
    assert await policy.addresses(HostPort(PUBLIC, 443)) == [PUBLIC]
    assert resolver.calls == []


async def test_only_the_exact_internal_host_and_port_may_be_non_public():
    resolver = StubResolver({"ghe.corp": ["10.0.0.9"]})
    policy = AddressPolicy(resolver, own_addresses=[])
    internal = frozenset({HostPort("ghe.corp", 443), HostPort("127.0.0.1", 9000)})
    assert await policy.addresses(HostPort("ghe.corp", 443), internal) == ["10.0.0.9"]
    assert await policy.addresses(HostPort("127.0.0.1", 9000), internal) == ["127.0.0.1"]
    for other in (HostPort("ghe.corp", 22), HostPort("127.0.0.1", 9001), HostPort("127.0.0.2", 9000)):
        with pytest.raises(Refused):
            await policy.addresses(other, internal)


async def test_every_resolution_is_checked_so_a_rebinding_name_is_refused_on_its_second_answer():
    """A name that answers public first and then 169.254.169.254: each lookup is checked, and the caller connects only
    to the addresses that lookup returned (there is no second lookup between check and connect)."""
    resolver = StubResolver({"flip.test": [[PUBLIC], ["169.254.169.254"]]})
    policy = AddressPolicy(resolver, own_addresses=[])
    assert await policy.addresses(HostPort("flip.test", 443)) == [PUBLIC]
    with pytest.raises(Refused, match="metadata"):
        await policy.addresses(HostPort("flip.test", 443))
    assert resolver.calls == ["flip.test", "flip.test"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Example.COM", HostPort("example.com", 443)),
        ("example.com.:8443", HostPort("example.com", 8443)),
        ("127.0.0.1:9", HostPort("127.0.0.1", 9)),
        ("[::1]:9", HostPort("::1", 9)),
    ],
)
def test_host_port_parsing(text, expected):
    assert HostPort.parse(text) == expected


@pytest.mark.parametrize(
    "text", ["", "user@example.com", "example.com/path", "exa mple.com", "example.com:99999", ":443"]
)
def test_host_port_parsing_refuses_anything_but_host_and_port(text):
    with pytest.raises(ValueError):
        HostPort.parse(text)


def test_host_addresses_lists_loopback_without_any_lookup():
    from shared.egress.address_policy import host_addresses

    assert ipaddress.ip_address("127.0.0.1") in host_addresses()
