"""The network policy's pure decision, its text form and its bounds, against hostile input."""

from __future__ import annotations

import json

import pytest

from shared.egress.network_policy import (
    CONNECT_ONLY,
    DENIED,
    NOT_ALLOWED,
    NOT_IN_POLICY,
    PRESETS,
    Bounds,
    NetworkPolicy,
    NetworkRule,
    decide,
    format_rules,
    normalize_host,
    parse_rules,
    policy_refusal,
    propose_policy,
    rule_refusal,
)

OPEN = Bounds()
PYPI = NetworkPolicy(mode="rules", rules=(NetworkRule("pypi.org"),))


def allowed(policy, host, port=443, method=None, path=None, bounds=OPEN) -> bool:
    return decide(policy, bounds, method, host, port, path).allowed


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("PyPI.ORG", "pypi.org"),
        ("pypi.org.", "pypi.org"),
        ("pypi\u3002org", "pypi.org"),  # an ideographic full stop is a dot to IDNA (and to resolvers)
        ("bücher.de", "xn--bcher-kva.de"),
        ("[::1]", "::1"),
        ("127.0.0.1", "127.0.0.1"),
    ],
)
def test_host_names_are_normalised(host, expected):
    assert normalize_host(host) == expected


@pytest.mark.parametrize("host", ["", "pypi%2eorg", "a/b", "user@pypi.org", "pypi.org:443", "-a.com", "a..b", "a b"])
def test_bad_host_names_are_refused(host):
    with pytest.raises(ValueError):
        normalize_host(host)
    assert not allowed(PYPI, host)


@pytest.mark.parametrize("host", ["pypi.org", "PYPI.org", "pypi.org.", "pypi\uff0eorg"])
def test_spellings_of_an_allowed_host_are_allowed(host):
    assert allowed(PYPI, host)


@pytest.mark.parametrize("host", ["evil.com.pypi.org", "pypi.org.evil.com", "xpypi.org", "pypi.org-evil.com", "org"])
def test_look_alike_hosts_are_refused(host):
    decision = decide(PYPI, OPEN, None, host, 443, None)
    assert not decision.allowed and decision.reason == NOT_IN_POLICY


def test_a_wildcard_covers_subdomains_only():
    policy = NetworkPolicy(mode="rules", rules=(NetworkRule("*.example.com"),))
    assert allowed(policy, "a.example.com") and allowed(policy, "a.b.example.com")
    assert not allowed(policy, "example.com")
    assert not allowed(policy, "example.com.evil.net")
    assert not allowed(policy, "aexample.com")


def test_ports_default_to_80_and_443():
    assert allowed(PYPI, "pypi.org", 80) and allowed(PYPI, "pypi.org", 443)
    assert not allowed(PYPI, "pypi.org", 8443)
    assert not allowed(PYPI, "pypi.org", 0) and not allowed(PYPI, "pypi.org", 70000)
    policy = NetworkPolicy(mode="rules", rules=(NetworkRule("pypi.org", 8443),))
    assert allowed(policy, "pypi.org", 8443) and not allowed(policy, "pypi.org", 443)


SIMPLE = NetworkPolicy(mode="rules", rules=(NetworkRule("pypi.org", 80, "/simple/"),))


@pytest.mark.parametrize("path", ["/simple/", "/simple", "/simple/requests/", "/simple/a?x=../../admin"])
def test_a_path_prefix_allows_paths_under_it(path):
    assert allowed(SIMPLE, "pypi.org", 80, "GET", path)


@pytest.mark.parametrize(
    "path",
    [
        "/admin",
        "/simpleton",
        "/simple/../admin",
        "/simple/%2e%2e/admin",
        "/simple/%2E%2E/admin",
        "/simple/..%2fadmin",
        "/simple%2f..%2fadmin",
        "/simple/%252e%252e/admin",  # double encoding
        "/simple//admin",
        "/simple/.\\..\\admin",
        "/simple/%00",
        "/simple/%ff",
        "/simple/./x",
        "simple/",
        "",
    ],
)
def test_a_path_prefix_refuses_traversal_and_encodings(path):
    assert not allowed(SIMPLE, "pypi.org", 80, "GET", path)


def test_a_path_prefix_never_opens_a_tunnel():
    decision = decide(SIMPLE, OPEN, "CONNECT", "pypi.org", 80, None)
    assert not decision.allowed and "tunnel" in decision.reason
    assert not allowed(SIMPLE, "pypi.org", 80, None, None)


@pytest.mark.parametrize("policy_read_only", [False, True])
def test_read_only_refuses_writes_it_can_see(policy_read_only):
    rule = NetworkRule("pypi.org", read_only=not policy_read_only)
    policy = NetworkPolicy(mode="rules", rules=(rule,), read_only=policy_read_only)
    for method in ("GET", "HEAD", "OPTIONS", "get"):
        assert allowed(policy, "pypi.org", 80, method, "/")
    for method in ("POST", "PUT", "DELETE", "PATCH", "PROPFIND"):
        decision = decide(policy, OPEN, method, "pypi.org", 80, "/")
        assert not decision.allowed and "read-only" in decision.reason
    assert allowed(policy, "pypi.org", 443, "CONNECT", None)  # a tunnel hides its methods (documented)


def test_off_is_todays_behaviour():
    bounds = Bounds.of(allow=["pypi.org"])
    assert allowed(None, "pypi.org", 443, bounds=bounds)
    assert decide(None, bounds, None, "npmjs.org", 443, None).reason == NOT_ALLOWED
    assert decide(None, bounds, "GET", "pypi.org", 443, "/").reason == CONNECT_ONLY
    assert not allowed(NetworkPolicy(mode="off", rules=(NetworkRule("npmjs.org"),)), "npmjs.org")


def test_the_deny_list_beats_rules_the_allow_list_and_observe():
    bounds = Bounds.of(allow=["pypi.org"], deny=["pypi.org", "*.evil.example", "mirror.test:8080"])
    for policy in (PYPI, NetworkPolicy(mode="observe"), NetworkPolicy()):
        assert decide(policy, bounds, None, "PyPI.org.", 443, None).reason == DENIED
    observe = NetworkPolicy(mode="observe")
    assert decide(observe, bounds, None, "a.evil.example", 443, None).reason == DENIED
    assert decide(observe, bounds, "GET", "mirror.test", 8080, "/").reason == DENIED
    assert allowed(observe, "mirror.test", 8081, bounds=bounds)
    wide = NetworkPolicy(mode="rules", rules=(NetworkRule("*.evil.example"), NetworkRule("*.b.evil.example")))
    assert decide(wide, bounds, None, "x.evil.example", 443, None).reason == DENIED
    assert decide(wide, bounds, None, "a.b.evil.example", 443, None).reason == DENIED


def test_user_hosts_off_keeps_policies_to_presets_and_the_allow_list():
    bounds = Bounds.of(allow=["internal-mirror.test"], user_hosts=False)
    policy = NetworkPolicy(
        mode="rules",
        presets=("package-registries",),
        rules=(NetworkRule("evil.test"), NetworkRule("internal-mirror.test", 8080)),
    )
    assert allowed(policy, "pypi.org", bounds=bounds)
    assert not allowed(policy, "evil.test", bounds=bounds)
    assert allowed(policy, "internal-mirror.test", 8080, bounds=bounds)  # a host the operator allows, another port
    assert rule_refusal(NetworkRule("evil.test"), bounds) is not None
    assert rule_refusal(NetworkRule("pypi.org", 80, "/simple/"), bounds) is None
    assert "evil.test" in (policy_refusal(policy, bounds) or "")
    observe = NetworkPolicy(mode="observe")
    assert allowed(observe, "pypi.org", bounds=bounds) and not allowed(observe, "evil.test", bounds=bounds)


def test_rules_the_operator_denies_are_refused():
    bounds = Bounds.of(deny=["*.evil.example.net", "pastebin.test"])
    assert rule_refusal(NetworkRule("pastebin.test"), bounds)
    assert rule_refusal(NetworkRule("a.evil.example.net", 8080), bounds)
    assert rule_refusal(NetworkRule("*.a.evil.example.net"), bounds)
    assert rule_refusal(NetworkRule("*.example.net"), bounds) is None  # its denied part is refused per request
    assert rule_refusal(NetworkRule("pypi.org"), bounds) is None


def test_the_preset_is_a_plain_list_of_registry_hosts():
    hosts = {r.host for r in PRESETS["package-registries"]}
    assert {"pypi.org", "files.pythonhosted.org", "registry.npmjs.org", "deb.debian.org", "proxy.golang.org"} <= hosts
    policy = NetworkPolicy(mode="rules", presets=("package-registries",))
    assert allowed(policy, "files.pythonhosted.org") and not allowed(policy, "evil.pythonhosted.org")
    with pytest.raises(ValueError, match="unknown presets"):
        NetworkPolicy(mode="rules", presets=("everything",))


def test_parse_rules_reads_hosts_ports_urls_and_comments():
    text = """
        # registries
        pypi.org
        Mirror.Example.COM:8080   # a comment
        *.example.net
        http://deb.example.org/debian/ read-only
        http://deb.example.org:8000/
        https://crates.example
        [::1]:9000
        http://[::1]:8080/x/
        pypi.org
    """
    rules = parse_rules(text)
    assert rules == (
        NetworkRule("pypi.org"),
        NetworkRule("mirror.example.com", 8080),
        NetworkRule("*.example.net"),
        NetworkRule("deb.example.org", 80, "/debian/", read_only=True),
        NetworkRule("deb.example.org", 8000),
        NetworkRule("crates.example", 443),
        NetworkRule("::1", 9000),
        NetworkRule("::1", 8080, "/x/"),
    )
    assert parse_rules(format_rules(rules)) == rules


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("https://pypi.org/simple/", "cannot check paths of https"),
        ("ftp://pypi.org/", "only http"),
        ("http://user@pypi.org/", "without user"),
        ("http://pypi.org/a?b", "without user, query"),
        ("pypi.org:http", "bad port"),
        ("pypi.org:70000", "bad port"),
        ("*", "not a host"),
        ("*.com", "two labels"),
        ("pypi.org extra words", "one host"),
        ("http://pypi.org/a/../b", "bad path prefix"),
        ("evil.com/path", "not a host"),
    ],
)
def test_parse_rules_names_the_bad_line(line, why):
    with pytest.raises(ValueError, match=r"line 2 \(") as info:
        parse_rules(f"pypi.org\n{line}\n")
    assert why in str(info.value)


def test_policies_round_trip_through_json():
    policy = NetworkPolicy(
        mode="rules", presets=("package-registries",), rules=parse_rules("a.test:81\nhttp://b.test/x/ ro"),
        read_only=True,
    )  # fmt: skip
    assert NetworkPolicy.from_json(json.loads(json.dumps(policy.to_json()))) == policy
    with pytest.raises(ValueError):
        NetworkPolicy.from_json({"mode": "everything"})
    with pytest.raises(ValueError):
        NetworkPolicy.from_json({"mode": "rules", "rules": [{"host": "a.test", "evil": 1}]})


def test_observe_proposes_the_smallest_policy():
    used = [("pypi.org", 443), ("files.pythonhosted.org", 443), ("Mirror.test", 8080), ("mirror.test", 8080),
            ("api.example", 80), ("api.example", 443), ("allowed.test", 443), ("denied.test", 443)]  # fmt: skip
    bounds = Bounds.of(allow=["allowed.test"], deny=["denied.test"])
    policy, text = propose_policy(used, bounds)
    assert policy == NetworkPolicy(
        mode="rules",
        presets=("package-registries",),
        rules=(NetworkRule("api.example"), NetworkRule("mirror.test", 8080)),
    )
    assert text == "# preset: package-registries\napi.example\nmirror.test:8080\n"
    for host, port in used[:6]:
        assert allowed(policy, host, port, bounds=bounds)
