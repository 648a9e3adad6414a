"""What an attempt may reach through ``proxy.sock`` beyond the credentialed services: a pure, Django-free policy.

Longer than 300 lines: the rules, their text form, the operator's bounds and the decision belong together.

The interface the Django side uses (all values are frozen and JSON-serialisable with ``to_json``/``from_json``)::

    NetworkRule(host, port=None, path_prefix="", read_only=False)
        host: "pypi.org", or "*.example.com" (its subdomains, not example.com itself); IP literals allowed.
        port: None means 80 and 443.
        path_prefix: "/simple/": plain-HTTP requests only; a CONNECT tunnel (TLS) cannot be path-checked, so a
            rule with a path prefix never opens a tunnel.
        read_only: only GET/HEAD/OPTIONS where the proxy sees the method (plain HTTP; a tunnel's is hidden).
    NetworkPolicy(mode, presets=(), rules=(), read_only=False)
        mode: "off" (only the operator's ANYON_EGRESS_ALLOW, tunnels only: the behaviour without environments),
            "rules" (presets + rules), "observe" (whatever the operator's bounds allow, recorded).
        read_only applies to every rule.
    parse_rules(text) -> tuple[NetworkRule, ...]
        One entry a line: "host", "host:port", "*.example.com", or a URL prefix "http://host[:port]/path"
        ("https://host[:port]" without a path); an optional trailing word "read-only"; "# comments".
        Raises ValueError naming the line and why.
    format_rules(rules) -> str                    the text parse_rules reads back
    PRESETS: dict[str, tuple[NetworkRule, ...]]   named rule sets ("package-registries")
    Bounds(allow=..., deny=..., user_hosts=True)  the operator's limits (Bounds.from_env: ANYON_EGRESS_*)
    decide(policy, bounds, method, host, port, path) -> Decision(allowed, reason, rule)
    rule_refusal(rule, bounds) -> str | None      why the operator forbids a rule (live "allow for this attempt")
    propose_policy(used, bounds) -> (NetworkPolicy, text)   the smallest policy covering observed host:ports
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

MODES = ("off", "rules", "observe")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = (80, 443)
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_host(host: str) -> str:
    """The lower-case ASCII (IDNA) form of a host name without trailing dot, or an IP literal; raises ValueError.

    ``PyPI.org.`` and ``pypi。org`` are ``pypi.org``; ``bücher.de`` is ``xn--bcher-kva.de``."""
    text = host.strip().removeprefix("[").removesuffix("]")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not text or any(c in text for c in "%/\\@:?#\x00 "):
        raise ValueError(f"not a host name: {host!r}")
    try:
        ascii_name = text.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise ValueError(f"not a host name: {host!r}") from exc
    ascii_name = ascii_name.rstrip(".")
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"not a host name: {host!r}")
    return ascii_name


def _normalize_pattern(host: str) -> str:
    if host.startswith("*."):
        base = normalize_host(host[2:])
        if is_ip(base) or base.count(".") < 1:
            raise ValueError(f"a wildcard needs a domain of two labels or more: {host!r}")
        return "*." + base
    return normalize_host(host)


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def host_matches(pattern: str, host: str) -> bool:
    """``pypi.org`` matches only itself; ``*.example.com`` matches ``a.example.com`` and ``a.b.example.com``."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


@dataclass(frozen=True)
class NetworkRule:
    """One allowed entry (see the module docstring)."""

    host: str
    port: int | None = None
    path_prefix: str = ""
    read_only: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", _normalize_pattern(self.host))
        if self.port is not None and not (isinstance(self.port, int) and 0 < self.port < 65536):
            raise ValueError(f"bad port {self.port!r}")
        prefix = self.path_prefix
        if prefix and (not prefix.startswith("/") or _path_problem(prefix) or "?" in prefix or "#" in prefix):
            raise ValueError(f"bad path prefix {prefix!r}")

    def ports(self) -> tuple[int, ...]:
        return DEFAULT_PORTS if self.port is None else (self.port,)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.path_prefix:
            port = "" if self.port in (None, 80) else f":{self.port}"
            text = f"http://{host}{port}{self.path_prefix}"
        else:
            text = host if self.port is None else f"{host}:{self.port}"
        return text + (" read-only" if self.read_only else "")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NetworkRule:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown rule fields: {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class NetworkPolicy:
    """An attempt's policy for ``proxy.sock`` (see the module docstring)."""

    mode: str = "off"
    presets: tuple[str, ...] = ()
    rules: tuple[NetworkRule, ...] = ()
    read_only: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        object.__setattr__(self, "presets", tuple(self.presets))
        object.__setattr__(self, "rules", tuple(self.rules))
        unknown = [name for name in self.presets if name not in PRESETS]
        if unknown:
            raise ValueError(f"unknown presets: {unknown}")

    def all_rules(self) -> tuple[NetworkRule, ...]:
        return tuple(r for name in self.presets for r in PRESETS[name]) + self.rules

    def with_rule(self, rule: NetworkRule) -> NetworkPolicy:
        """This policy and one more rule (an "observe" or "off" policy becomes "rules")."""
        mode = "rules" if self.mode == "off" else self.mode
        rules = self.rules if rule in self.rules else (*self.rules, rule)
        return NetworkPolicy(mode=mode, presets=self.presets, rules=rules, read_only=self.read_only)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["presets"] = list(self.presets)
        data["rules"] = [asdict(r) for r in self.rules]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NetworkPolicy:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown policy fields: {sorted(unknown)}")
        rules = tuple(NetworkRule.from_json(r) for r in data.get("rules", ()))
        return cls(
            mode=data.get("mode", "off"), presets=tuple(data.get("presets", ())), rules=rules,
            read_only=bool(data.get("read_only", False)),
        )  # fmt: skip


def _hosts(*names: str) -> tuple[NetworkRule, ...]:
    return tuple(NetworkRule(name) for name in names)


_PACKAGE_REGISTRIES = (
    "deb.debian.org", "security.debian.org", "archive.ubuntu.com", "security.ubuntu.com",  # Debian/Ubuntu
    "pypi.org", "files.pythonhosted.org",  # PyPI
    "registry.npmjs.org",  # npm
    "crates.io", "index.crates.io", "static.crates.io",  # crates
    "proxy.golang.org", "sum.golang.org",  # Go modules
    "repo.maven.apache.org", "repo1.maven.org",  # Maven Central
    "rubygems.org", "index.rubygems.org",  # RubyGems
)  # fmt: skip
#: Named rule sets a policy may include; documented in docs/DEPLOYMENT.md ("Network policies").
PRESETS: dict[str, tuple[NetworkRule, ...]] = {"package-registries": _hosts(*_PACKAGE_REGISTRIES)}


def parse_rule(text: str) -> NetworkRule:
    """One entry of :func:`parse_rules` (without comment); raises ValueError saying why."""
    words = text.split()
    read_only = False
    if len(words) == 2 and words[1].lower() in ("read-only", "readonly", "ro"):
        read_only, words = True, words[:1]
    if len(words) != 1:
        raise ValueError("one host or URL a line (optionally followed by read-only)")
    entry = words[0]
    if "://" in entry:
        parts = urlsplit(entry)
        if parts.scheme.lower() not in ("http", "https"):
            raise ValueError(f"only http:// and https:// URLs, not {parts.scheme}://")
        if parts.username or parts.password or parts.query or parts.fragment or not parts.hostname:
            raise ValueError("a URL prefix is scheme://host[:port]/path, without user, query or fragment")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port in {entry!r}") from exc
        path = parts.path if parts.path not in ("", "/") else ""
        if path and parts.scheme.lower() == "https":
            raise ValueError(
                "the proxy cannot check paths of https:// (the tunnel is encrypted end to end): "
                "give the host alone, or an http:// URL"
            )
        default = 443 if parts.scheme.lower() == "https" else 80
        return NetworkRule(parts.hostname, port or default, path, read_only)
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port_text = rest.removeprefix(":") if rest else None
        if rest and not rest.startswith(":"):
            raise ValueError(f"not a host[:port]: {entry!r}")
    elif entry.count(":") == 1:
        host, _, port_text = entry.partition(":")
    else:
        host, port_text = entry, None
    if port_text is not None and not port_text.isdigit():
        raise ValueError(f"bad port in {entry!r}")
    return NetworkRule(host, int(port_text) if port_text is not None else None, "", read_only)


def parse_rules(text: str) -> tuple[NetworkRule, ...]:
    """Rules from text, one a line; ``#`` starts a comment. Raises ValueError naming the first bad line."""
    rules: list[NetworkRule] = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            rule = parse_rule(entry)
        except ValueError as exc:
            raise ValueError(f"line {number} ({entry!r}): {exc}") from None
        if rule not in rules:
            rules.append(rule)
    return tuple(rules)


def format_rules(rules: Iterable[NetworkRule]) -> str:
    return "".join(f"{rule}\n" for rule in rules)


@dataclass(frozen=True)
class Bounds:
    """The operator's limits on every policy.

    ``allow``: ``(host, port)`` always reachable by ``CONNECT`` (``ANYON_EGRESS_ALLOW``). ``deny``: rules no policy or
    observe mode can override (``ANYON_EGRESS_DENY``; a deny entry without port covers every port). ``user_hosts``:
    whether policies may name hosts beyond the presets and ``allow`` (``ANYON_EGRESS_USER_HOSTS``)."""

    allow: frozenset[tuple[str, int]] = frozenset()
    deny: tuple[NetworkRule, ...] = ()
    user_hosts: bool = True

    @classmethod
    def of(cls, allow: Iterable[str] = (), deny: Iterable[str] = (), user_hosts: bool = True) -> Bounds:
        """From the settings' lists: ``allow`` as ``host[:port]`` (443 when left out), ``deny`` as rule entries."""
        hosts = set()
        for entry in allow:
            rule = parse_rule(entry)
            hosts.add((rule.host, rule.port or 443))
        return cls(frozenset(hosts), tuple(parse_rule(e) for e in deny if e.strip()), user_hosts)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Bounds:
        environ = os.environ if environ is None else environ

        def listed(name: str) -> list[str]:
            return [e.strip() for e in environ.get(name, "").split(",") if e.strip()]

        user_hosts = environ.get("ANYON_EGRESS_USER_HOSTS", "true").strip().lower() not in ("0", "false", "no", "off")
        return cls.of(listed("ANYON_EGRESS_ALLOW"), listed("ANYON_EGRESS_DENY"), user_hosts)

    def with_allow(self, extra: Iterable[tuple[str, int]]) -> Bounds:
        return Bounds(self.allow | frozenset(extra), self.deny, self.user_hosts)

    def denied(self, host: str, port: int) -> NetworkRule | None:
        return next((r for r in self.deny if host_matches(r.host, host) and r.port in (None, port)), None)


@dataclass(frozen=True)
class Decision:
    """``reason`` reads after the host:port in a block report (``"is not in the network policy"``)."""

    allowed: bool
    reason: str
    rule: NetworkRule | None = None


NOT_ALLOWED = "is not on the allowlist"
NOT_IN_POLICY = "is not in the network policy"
DENIED = "is denied by the operator"
CONNECT_ONLY = "is reachable only through CONNECT"


def _path_problem(path: str) -> str | None:
    """Why a request path cannot be checked against a prefix (dot segments, encoded separators, ...), or None."""
    try:
        decoded = unquote(path, errors="strict") if "%" in path else path
    except UnicodeDecodeError:
        return "a percent-encoded path that is not UTF-8"
    if "%" in decoded:
        return "a doubly percent-encoded path"
    if any(c in decoded for c in "\\\x00") or "//" in decoded or any(ord(c) < 0x20 for c in decoded):
        return "a path with a backslash, control character or empty segment"
    if any(segment in (".", "..") for segment in decoded.split("/")):
        return "a path with dot segments"
    if "%2f" in path.lower():
        return "a path with an encoded slash"
    return None


def _covered_by_operator(rule: NetworkRule, bounds: Bounds) -> bool:
    """Whether ``rule`` names only hosts a preset or the operator's allow list already names."""
    preset_hosts = {r.host for rules in PRESETS.values() for r in rules}
    allow_hosts = {host for host, _port in bounds.allow}
    return rule.host in preset_hosts or rule.host in allow_hosts


def rule_refusal(rule: NetworkRule, bounds: Bounds) -> str | None:
    """Why the operator's bounds forbid ``rule`` in a policy, or None when they allow it."""
    for deny in bounds.deny:
        # A rule whose every host is denied (a wider wildcard stays fine: its denied part is refused per request).
        named = deny.host == rule.host or host_matches(deny.host, rule.host.removeprefix("*."))
        if named and (deny.port is None or set(rule.ports()) <= {deny.port}):
            return f"{rule} is denied by the operator"
    if not bounds.user_hosts and not _covered_by_operator(rule, bounds):
        return f"{rule.host} is not in a preset, and the operator does not let policies add hosts"
    return None


def policy_refusal(policy: NetworkPolicy, bounds: Bounds) -> str | None:
    """Why the operator's bounds forbid some rule of ``policy``, or None."""
    return next((problem for r in policy.rules if (problem := rule_refusal(r, bounds))), None)


def _rule_decision(rule: NetworkRule, policy: NetworkPolicy, method: str | None, path: str | None) -> Decision:
    tunnel = method is None or method == "CONNECT"
    if rule.path_prefix:
        if tunnel:
            return Decision(False, f"is allowed only under http://…{rule.path_prefix} (a tunnel hides the path)")
        problem = _path_problem(path or "")
        if problem:
            return Decision(False, f"refused {problem}")
        decoded, prefix = unquote(path or ""), rule.path_prefix.rstrip("/")
        if not (decoded == prefix or decoded.startswith(prefix + "/")):
            return Decision(False, f"is allowed only under {rule.path_prefix}")
    if (rule.read_only or policy.read_only) and not tunnel and method not in READ_METHODS:
        return Decision(False, f"is read-only: {method} refused")
    return Decision(True, "is in the network policy", rule)


def decide(
    policy: NetworkPolicy | None, bounds: Bounds, method: str | None, host: str, port: int, path: str | None
) -> Decision:
    """May a request of ``method`` (None or ``"CONNECT"``: a tunnel) to ``host:port``/``path`` go out?

    Order: the operator's deny list, the operator's allow list, then the policy's mode and rules. Addresses are
    checked afterwards by :class:`~shared.egress.address_policy.AddressPolicy` (private ranges refused by value)."""
    policy = policy or NetworkPolicy()
    method = method.upper() if method else None
    tunnel = method is None or method == "CONNECT"
    try:
        host = normalize_host(host)
    except ValueError:
        return Decision(False, "is not a valid host name")
    if not 0 < port < 65536:
        return Decision(False, "has a bad port")
    if path is not None:
        path = path.split("?", 1)[0].split("#", 1)[0]
        if not tunnel and not path.startswith("/"):
            return Decision(False, "has a bad path")
    if bounds.denied(host, port) is not None:
        return Decision(False, DENIED)
    if policy.mode == "off":
        if not tunnel:
            return Decision(False, CONNECT_ONLY)
        if (host, port) in bounds.allow:
            return Decision(True, "is on the operator's allow list")
        return Decision(False, NOT_ALLOWED)
    if (host, port) in bounds.allow and (not policy.read_only or tunnel or method in READ_METHODS):
        return Decision(True, "is on the operator's allow list")
    if policy.mode == "observe":
        if bounds.user_hosts or any(_covers(r, host, port) for rules in PRESETS.values() for r in rules):
            return Decision(True, "is allowed in observe mode")
        return Decision(False, "is not in a preset, and the operator does not let policies add hosts")
    refusal: Decision | None = None
    for rule in policy.all_rules():
        if not _covers(rule, host, port):
            continue
        if rule in policy.rules and rule_refusal(rule, bounds) is not None:
            continue
        decision = _rule_decision(rule, policy, method, path)
        if decision.allowed:
            return decision
        refusal = refusal or decision
    return refusal or Decision(False, NOT_IN_POLICY)


def _covers(rule: NetworkRule, host: str, port: int) -> bool:
    return host_matches(rule.host, host) and port in rule.ports()


def propose_policy(used: Iterable[tuple[str, int]], bounds: Bounds = Bounds()) -> tuple[NetworkPolicy, str]:
    """The smallest "rules" policy covering every ``(host, port)`` used: a preset's name where the preset covers
    the host, else one entry a host (``host`` for 80/443, ``host:port`` otherwise); hosts the operator's allow list
    already covers, and denied ones, are left out."""
    presets: list[str] = []
    rules: list[NetworkRule] = []
    normalized = set()
    for host, port in used:
        try:
            normalized.add((normalize_host(host), port))
        except ValueError:
            continue
    for host, port in sorted(normalized):
        if (host, port) in bounds.allow or bounds.denied(host, port) is not None:
            continue
        preset = next((n for n, rs in PRESETS.items() if any(_covers(r, host, port) for r in rs)), None)
        if preset is not None:
            if preset not in presets:
                presets.append(preset)
            continue
        rule = NetworkRule(host, None if port in DEFAULT_PORTS else port)
        if rule not in rules:
            rules.append(rule)
    policy = NetworkPolicy(mode="rules", presets=tuple(presets), rules=tuple(rules))
    text = "".join(f"# preset: {name}\n" for name in presets) + format_rules(rules)
    return policy, text
