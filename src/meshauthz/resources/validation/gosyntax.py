"""Parsers that accept exactly what Istio's Go code accepts.

Istio validates with Go's standard library (net/netip, strconv, time, net/url)
and a JWK library. Python's own parsers differ at the edges (netmask CIDRs,
leading zeros, duration units, URL host characters), so the few that matter to
validation are reimplemented here with Go's rules. Each returns an error
message (a string) or None when the input is accepted.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from typing import Any

from msgspec import Struct

_MAX_UINT32 = (1 << 32) - 1
_MAX_INT64 = (1 << 63) - 1


def parse_uint32(text: str) -> int | None:
    """strconv.ParseUint(text, 10, 32): decimal digits only, no sign, in range."""
    if not text or not all("0" <= c <= "9" for c in text):
        return None
    value = int(text)
    return value if value <= _MAX_UINT32 else None


def parse_go_bool(text: str) -> bool | None:
    """strconv.ParseBool."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


# --- IP addresses (net/netip) ------------------------------------------------


def parse_addr(text: str) -> bool:
    """netip.ParseAddr: dotted IPv4 (no leading zeros) or IPv6, zone allowed on IPv6."""
    if not text:
        return False
    if ":" not in text:
        # IPv4 only; Python's parser matches Go's (four fields, no leading zeros).
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            return False
        return True
    addr, sep, zone = text.partition("%")
    if sep and not zone:
        return False
    try:
        ipaddress.IPv6Address(addr)
    except ValueError:
        return False
    return True


def parse_prefix(text: str) -> str | None:
    """netip.ParsePrefix; returns an error message or None."""
    addr, sep, bits = text.rpartition("/")
    if not sep:
        return "no '/'"
    if "%" in addr:
        return "IPv6 zones cannot be present in a prefix"
    if not parse_addr(addr):
        return f"ParseAddr({addr!r}) failed"
    if not bits or not all("0" <= c <= "9" for c in bits) or (len(bits) > 1 and bits[0] == "0"):
        return f"bad bits after slash: {bits!r}"
    limit = 128 if ":" in addr else 32
    if int(bits) > limit:
        return f"prefix length out of range: {bits}"
    return None


def ip_or_cidr_error(value: str) -> str | None:
    """Istio's ValidateIPs for one value: a CIDR when it contains '/', else an address."""
    if "/" in value:
        err = parse_prefix(value)
        return f"bad CIDR range ({value}): {err}" if err else None
    return None if parse_addr(value) else f"bad IP address ({value})"


# --- durations (time.ParseDuration) -----------------------------------------

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def parse_duration(text: str) -> int | None:
    """time.ParseDuration in nanoseconds, or None when Go rejects it."""
    s = text
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        return None
    total = 0
    while s:
        i = 0
        while i < len(s) and s[i].isascii() and s[i].isdigit():
            i += 1
        int_part, s = s[:i], s[i:]
        frac_part = ""
        if s.startswith("."):
            s = s[1:]
            j = 0
            while j < len(s) and s[j].isascii() and s[j].isdigit():
                j += 1
            frac_part, s = s[:j], s[j:]
        if not int_part and not frac_part:
            return None
        k = 0
        while k < len(s) and s[k] != "." and not (s[k].isascii() and s[k].isdigit()):
            k += 1
        unit_name, s = s[:k], s[k:]
        unit = _UNITS.get(unit_name)
        if unit is None:
            return None
        whole = int(int_part or "0")
        if whole > _MAX_INT64 // unit:
            return None
        value = whole * unit
        if frac_part:
            value += int(frac_part) * unit // (10 ** len(frac_part))
        total += value
        if total > _MAX_INT64 + (1 if neg else 0):
            return None
    return -total if neg else total


# --- URLs (net/url) ---------------------------------------------------------


class GoURL(Struct, frozen=True):
    scheme: str
    host: str  # host[:port] as written

    @property
    def port(self) -> str:
        colon = self.host.rfind(":")
        if colon < 0:
            return ""
        close = self.host.find("]:")
        if close >= 0:
            return self.host[close + 2 :]
        if "]" in self.host:
            return ""
        return self.host[colon + 1 :]


_HOST_EXTRA = set("!$&'()*+,;=:[]<>\"-_.~")
_USERINFO_EXTRA = set("-._:~!$&'()*+,;=%@")


class URLError(ValueError):
    pass


def _is_hex(c: str) -> bool:
    return c in "0123456789abcdefABCDEF"


def _check_escapes(text: str, host: bool) -> None:
    i = 0
    while i < len(text):
        c = text[i]
        if c == "%":
            if i + 2 >= len(text) or not (_is_hex(text[i + 1]) and _is_hex(text[i + 2])):
                raise URLError(f"invalid URL escape {text[i : i + 3]!r}")
            if host and int(text[i + 1], 16) < 8 and text[i : i + 3] != "%25":
                raise URLError(f"invalid URL escape {text[i : i + 3]!r}")
            i += 3
            continue
        if host and ord(c) < 0x80 and not (c.isalnum() or c in _HOST_EXTRA):
            raise URLError(f"invalid character {c!r} in host name")
        i += 1


def _valid_optional_port(port: str) -> bool:
    if not port:
        return True
    return port[0] == ":" and all("0" <= c <= "9" for c in port[1:])


def _parse_host(host: str) -> None:
    if host.startswith("["):
        close = host.rfind("]")
        if close < 0:
            raise URLError("missing ']' in host")
        if not _valid_optional_port(host[close + 1 :]):
            raise URLError(f"invalid port {host[close + 1 :]!r} after host")
        _check_escapes(host[: close + 1].replace("%25", ""), host=True)
        return
    colon = host.rfind(":")
    if colon >= 0 and not _valid_optional_port(host[colon:]):
        raise URLError(f"invalid port {host[colon:]!r} after host")
    _check_escapes(host, host=True)


def parse_url(raw: str, *, request_uri: bool = False) -> GoURL:
    """url.Parse (or url.ParseRequestURI); raises URLError where Go fails."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise URLError("invalid control character in URL")
    text = raw
    fragment = ""
    if not request_uri:
        text, _, fragment = raw.partition("#")
    scheme, rest = "", text
    for i, c in enumerate(text):
        if c.isascii() and c.isalpha():
            continue
        if c.isascii() and (c.isdigit() or c in "+-."):
            if i == 0:
                break
            continue
        if c == ":":
            if i == 0:
                raise URLError("missing protocol scheme")
            scheme, rest = text[:i].lower(), text[i + 1 :]
        break
    rest = rest.partition("?")[0]  # the query is not checked
    host = ""
    if not rest.startswith("/"):
        if scheme:
            return GoURL(scheme, "")  # opaque
        if request_uri:
            raise URLError("invalid URI for request")
        segment = rest.partition("/")[0]
        if ":" in segment:
            raise URLError("first path segment in URL cannot contain colon")
    if (scheme or (not request_uri and not rest.startswith("///"))) and rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        rest = slash + path
        at = authority.rfind("@")
        if at >= 0:
            userinfo = authority[:at]
            if not all(c.isascii() and (c.isalnum() or c in _USERINFO_EXTRA) for c in userinfo):
                raise URLError("invalid userinfo")
            _check_escapes(userinfo, host=False)
            host = authority[at + 1 :]
        else:
            host = authority
        _parse_host(host)
    _check_escapes(rest, host=False)
    if fragment:
        _check_escapes(fragment, host=False)
    return GoURL(scheme, host)


def jwks_uri_error(uri: str) -> str | None:
    """Istio's ParseJwksURI: a Go URL with scheme http or https and a numeric port."""
    try:
        u = parse_url(uri)
    except URLError as e:
        return f"cannot parse {uri!r} as a URL: {e}"
    if u.scheme not in ("http", "https"):
        return f"URI scheme {u.scheme!r} is not supported (use http or https)"
    port = u.port
    if port and (not port.isdigit() or int(port) > _MAX_INT64):
        return f"invalid port {port!r}"
    return None


def cel_url_scheme(uri: str) -> str | None:
    """The scheme that Kubernetes' CEL ``url(self).getScheme()`` sees, or None on error."""
    try:
        parse_url(uri, request_uri=True)
        return parse_url(uri).scheme
    except URLError:
        return None


# --- JSON Web Key Sets -------------------------------------------------------

_REQUIRED_MEMBERS = {
    "RSA": ("n", "e"),
    "EC": ("crv", "x", "y"),
    "OKP": ("crv", "x"),
    "oct": ("k",),
}
_BINARY_MEMBERS = {"n", "e", "d", "p", "q", "dp", "dq", "qi", "x", "y", "k"}


def _b64(value: str) -> bool:
    data = value.rstrip("=")
    alt = data.replace("-", "+").replace("_", "/")
    try:
        base64.b64decode(alt + "=" * (-len(alt) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


class JwkSet(Struct, frozen=True):
    keys: tuple[dict[str, Any], ...]

    def private_key_indexes(self) -> list[int]:
        """Keys with private material: RSA/EC/OKP with "d", and symmetric keys."""
        return [
            i
            for i, k in enumerate(self.keys)
            if k.get("kty") == "oct" or (k.get("kty") in ("RSA", "EC", "OKP") and "d" in k)
        ]


def parse_jwks(text: str) -> JwkSet | str:
    """A JWK set (or one JWK) as Istio's JWK library reads it; an error message if not."""
    import json  # here, not at the top: only inline JWKS are JSON (start-up)

    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        return f"not valid JSON: {e.msg if isinstance(e, json.JSONDecodeError) else e}"
    if not isinstance(data, dict):
        return "expected a JSON object"
    if "keys" in data:
        keys = data["keys"]
        if not isinstance(keys, list):
            return '"keys" must be a list'
    else:
        keys = [data]
    for i, key in enumerate(keys):
        if not isinstance(key, dict):
            return f"key {i} is not a JSON object"
        kty = key.get("kty")
        if kty not in _REQUIRED_MEMBERS:
            return f"key {i}: unsupported or missing key type (kty) {kty!r}"
        for member in _REQUIRED_MEMBERS[kty]:
            if not isinstance(key.get(member), str):
                return f"key {i}: required member {member!r} is missing"
        for member in _BINARY_MEMBERS & set(key):
            value = key[member]
            if not isinstance(value, str) or not _b64(value):
                return f"key {i}: member {member!r} is not base64url data"
    return JwkSet(tuple(keys))
