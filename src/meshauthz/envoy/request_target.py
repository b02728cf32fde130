"""The request line's target (RFC 9112 §3.2) as Envoy 1.40's HTTP/1.1 codec
and connection manager read it, before any filter; every rule below was
recorded against a real Envoy (tests/adversarial/codec_corpus.jsonl, the
"request target" cases of tests/adversarial/codec_probe.py):

- origin-form ``/path?query``: the ``:path``, which the HCM then normalizes
  (``hcm.normalize_path``);
- absolute-form ``http://host[:port]/path?query`` (or ``https``, the scheme in
  any case): the URL's host and port become ``:authority``, in place of the
  Host header; its scheme, lower case, ``:scheme``; its path and query the
  ``:path`` ("/" when both are empty). User info (``user:pass@``) is dropped.
  A host is letters, digits, ``-`` and ``.``, or an IPv6 address in brackets
  (hex digits, ``:``, ``.``); a port is digits up to 65535. Other schemes, a
  fragment straight after the host and anything malformed: 400. A URL with a
  query but no path (``http://h?q``) gives the ``:path`` ``?q``, which the HCM
  answers with 404 itself, as it answers every ``:path`` not starting with "/";
- authority-form ``host:port``, CONNECT's only target: ``:authority``, and no
  ``:path`` (CONNECT with any other target: 400);
- asterisk-form ``*``: OPTIONS's only (404 from the HCM: its ``:path`` does not
  start with "/"); with another method, 400.

Anything else is refused with 400 by the codec.
"""

from __future__ import annotations

from msgspec import Struct

from meshauthz.envoy.hcm import NOT_A_TARGET, NormalizedPath, target_characters


class Target(Struct, frozen=True):
    """A target the codec accepted: the ``:path`` before normalization (None for
    CONNECT), and the ``:authority`` and ``:scheme`` the target sets (None when
    it sets none: the Host header and the connection decide them)."""

    path: str | None
    authority: str | None = None
    scheme: str | None = None


_BAD_URL = NormalizedPath.reject(400, "request target is not a valid http(s) URL")
_CONNECT = NormalizedPath.reject(400, "CONNECT needs an authority (host:port) target")
_NOT_RELATIVE = NormalizedPath.reject(
    404, "its :path does not start with /, and the connection manager answers it itself"
)

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_HOST = _ALNUM | frozenset("-.")
_IPV6 = frozenset("0123456789abcdefABCDEF:.")
_USERINFO = _ALNUM | frozenset("-._~!$&'()*+,;=:%")
_PORT_MAX = 65535


def request_target(method: str, target: str) -> Target | NormalizedPath:
    """What the codec and the HCM make of ``target``: the parts the filters see,
    or the refusal (``NormalizedPath.reject``) that answers the request."""
    refused = target_characters(target)
    if refused is not None:
        return refused
    if method == "CONNECT":
        authority = _authority(target, userinfo=False, port_required=True)
        return _CONNECT if authority is None else Target(None, authority)
    if target.startswith("/"):
        return Target(target)
    if target == "*":
        return _NOT_RELATIVE if method == "OPTIONS" else NOT_A_TARGET
    head = target[:8].lower()
    scheme = "https" if head == "https://" else "http" if head[:7] == "http://" else None
    if scheme is None:
        return NOT_A_TARGET
    rest = target[len(scheme) + 3 :]
    end = len(rest)
    for stop in "/?#":
        at = rest.find(stop)
        if 0 <= at < end:
            end = at
    tail = rest[end:]
    authority = _authority(rest[:end], userinfo=True, port_required=False)
    if authority is None or tail.startswith("#"):
        return _BAD_URL
    path = tail or "/"
    if not path.startswith("/"):
        return _NOT_RELATIVE
    return Target(path, authority, scheme)


def _authority(text: str, *, userinfo: bool, port_required: bool) -> str | None:
    """``text`` as ``:authority`` (user info dropped), or None if the codec refuses it."""
    if "@" in text:
        if not userinfo:
            return None
        info, text = text.split("@", 1)
        if "@" in text or not set(info) <= _USERINFO:
            return None
    if text.startswith("["):
        close = text.find("]")
        inside = text[1:close]
        if close < 0 or not inside or not set(inside) <= _IPV6:
            return None
        port = text[close + 1 :]
    else:
        colon = text.find(":")
        host, port = (text, "") if colon < 0 else (text[:colon], text[colon:])
        if not host or not set(host) <= _HOST:
            return None
    if port:
        digits = port[1:]
        if not port.startswith(":") or not digits.isdigit() or not digits.isascii():
            return None
        if int(digits) > _PORT_MAX:
            return None
    elif port_required:
        return None
    return text


__all__ = ["Target", "request_target"]
