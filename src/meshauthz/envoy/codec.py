"""What Envoy 1.40's HTTP/1.1 codec does with a request's header block before
the connection manager and the filters see it.

A request in meshauthz's request format is a method, a path, a Host and a list
of headers; on the wire it is ``METHOD path HTTP/1.1``, a ``Host`` line (the
request's ``host`` unless it has its own ``host`` headers) and one line per
header. For that block the codec (pinned against a real Envoy by
``tests/adversarial/codec_corpus.jsonl``):

* refuses with 400 a header name that is not an HTTP token (RFC 9110
  ``tchar``: letters, digits and ``!#$%&'*+-.^_`|~``; so also an empty name or
  one starting with ``:``), and a value holding a control character other than
  HTAB, or DEL. A CR or LF cannot travel inside a header (sent raw, Envoy
  drops a CR and refuses an LF except as the line's end, so the request is
  no longer the one written); meshauthz refuses a request that has one, and
  the corpus leaves them out;
* trims optional whitespace (SP, HTAB) around every value, the Host's too;
* keeps repeated headers as separate entries, except the names in
  ``JOINED_HEADERS`` (Envoy's inline headers), whose repeats are appended to
  the first one with ``,`` (empty values add nothing): two Host headers ``a``
  and ``b`` reach the filters as one ``:authority`` ``a,b``;
* refuses with 400 a Host holding a character outside an RFC 3986 authority
  (letters, digits, ``-._~!$&'()*+,;=:@[]%``); a comma is accepted;
* refuses with 400 a ``content-length`` that is not a single run of digits
  (``-1``, ``abc``, ``0, 0``, two ``content-length`` headers even if equal),
  and ``transfer-encoding`` together with ``content-length``; answers 501 to a
  ``transfer-encoding`` other than ``chunked``, and removes an accepted
  ``transfer-encoding: chunked`` from the headers the filters see;
* answers 431 to more than ``max_headers_count`` (100) header lines, Host
  included, or a header block (request line, header lines with their ``: ``
  and CRLFs, and the empty line) over ``max_request_headers_kb`` (60 KiB).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from msgspec import Struct

# RFC 9110 tchar.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# RFC 3986 authority characters (unreserved, sub-delims, ":", "@", "[", "]", "%").
_AUTHORITY = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@[]%"
)
_OWS = " \t"
# The same sets as patterns: one scan of a string instead of one test per character.
_TOKEN = re.compile("[" + re.escape("".join(sorted(_TCHAR))) + "]+")
_NOT_AUTHORITY = re.compile("[^" + re.escape("".join(sorted(_AUTHORITY))) + "]")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters but HTAB, and DEL


def _utf8_length(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode())


#: Header names whose repeats the codec appends to the first (Envoy's inline
#: request headers), as a real Envoy 1.40 joins them; any other repeated
#: header stays a separate entry.
JOINED_HEADERS = frozenset(
    [
        "accept",
        "accept-encoding",
        "access-control-request-headers",
        "access-control-request-method",
        "authorization",
        "cache-control",
        "cdn-loop",
        "content-encoding",
        "content-type",
        "expect",
        "grpc-accept-encoding",
        "grpc-timeout",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "origin",
        "pragma",
        "proxy-status",
        "referer",
        "transfer-encoding",
        "user-agent",
        "via",
        "x-client-trace-id",
        "x-envoy-attempt-count",
        "x-envoy-decorator-operation",
        "x-envoy-downstream-service-cluster",
        "x-envoy-downstream-service-node",
        "x-envoy-external-address",
        "x-envoy-is-timeout-retry",
        "x-envoy-original-path",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-proto",
        "x-request-id",
    ]
)


class CodecLimits(Struct, frozen=True):
    """The HCM options that bound a request's header block (Envoy's defaults)."""

    max_request_headers_kb: int = 60
    max_headers_count: int = 100


ENVOY_DEFAULT_LIMITS = CodecLimits()


class Http1Request(Struct, frozen=True):
    """The header block as the codec hands it on: ``authority`` is the Host
    (``:authority``), ``headers`` the other headers, names lower case."""

    authority: str
    headers: tuple[tuple[str, str], ...]


class CodecRefusal(Struct, frozen=True):
    """The codec answered the request itself."""

    status: int
    reason: str


def wire_headers(host: str, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The header lines a client sends: ``Host`` first (the request's own
    ``host`` headers replace ``host``), then the others in order."""
    sent = list(headers)
    hosts = [(n, v) for n, v in sent if n.lower() == "host"]
    return (hosts or [("host", host)]) + [(n, v) for n, v in sent if n.lower() != "host"]


def sent_host(host: str, headers: Iterable[tuple[str, str]]) -> str:
    """The Host a client sends, as ``wire_headers`` lays it out: the request's
    own ``host`` headers (joined with ", " when there are several), else ``host``."""
    if not headers:  # most requests: summarized for every decision
        return host
    hosts = [v for n, v in headers if n.lower() == "host"]
    return ", ".join(hosts) if hosts else host


def http1_request(
    method: str,
    path: str,
    host: str,
    headers: Iterable[tuple[str, str]],
    limits: CodecLimits = ENVOY_DEFAULT_LIMITS,
) -> Http1Request | CodecRefusal:
    """The codec's verdict on a request's header block (the request line is
    checked by ``meshauthz.envoy.hcm``)."""
    line = _utf8_length(method) + _utf8_length(path) + 14  # " ", " HTTP/1.1\r\n\r\n"
    headers = tuple(headers)
    verdict, size = _block(host, headers, limits)
    # A block accepted alone is accepted after any request line that keeps the
    # whole under the size limit (no other check reads the request line); else
    # line by line, for the refusal the codec gives first.
    if type(verdict) is Http1Request and line + size <= limits.max_request_headers_kb * 1024:
        return verdict
    return _checked(line, host, headers, limits)


@functools.lru_cache(maxsize=8192)  # a stream of requests repeats its few header blocks
def _block(
    host: str, headers: tuple[tuple[str, str], ...], limits: CodecLimits
) -> tuple[Http1Request | CodecRefusal, int]:
    """The verdict on the header block after an empty request line, and the
    block's size on the wire."""
    size = sum(_utf8_length(n) + _utf8_length(v) + 4 for n, v in wire_headers(host, headers))
    return _checked(0, host, headers, limits), size


def forget_blocks() -> None:
    """Empty the verdicts kept by header block (``http1_request`` computes them afresh)."""
    _block.cache_clear()


def _checked(
    size: int, host: str, headers: tuple[tuple[str, str], ...], limits: CodecLimits
) -> Http1Request | CodecRefusal:
    """The verdict on the header block after a request line of ``size`` bytes."""
    lines = wire_headers(host, headers)
    for count, (name, value) in enumerate(lines, 1):
        if count > limits.max_headers_count:
            return CodecRefusal(431, f"more than {limits.max_headers_count} header lines")
        size += _utf8_length(name) + _utf8_length(value) + 4  # ": ", "\r\n"
        if size > limits.max_request_headers_kb * 1024:
            return CodecRefusal(
                431, f"request line and headers over {limits.max_request_headers_kb} KiB"
            )
        if _TOKEN.fullmatch(name) is None:
            return CodecRefusal(400, f"invalid header name {name!r}")
        bad = _CONTROL.search(value)
        if bad is not None:
            return CodecRefusal(400, f"invalid character {bad.group()!r} in header {name!r}")

    joined: dict[str, int] = {}
    out: list[tuple[str, str]] = []
    for name, raw in lines:
        name = name.lower()
        value = raw.strip(_OWS)
        if name in JOINED_HEADERS and name in joined:
            i = joined[name]
            if value:
                prev = out[i][1]
                out[i] = (name, f"{prev},{value}" if prev else value)
            continue
        if name in JOINED_HEADERS:
            joined[name] = len(out)
        out.append((name, value))

    authority = out.pop(joined["host"])[1]
    outside = _NOT_AUTHORITY.search(authority)
    if outside is not None:
        return CodecRefusal(400, f"invalid character {outside.group()!r} in Host")
    refused = _framing(out)
    if refused is not None:
        return refused
    # the codec takes the chunked framing upon itself: the filters never see it
    return Http1Request(authority, tuple(h for h in out if h[0] != "transfer-encoding"))


def _framing(headers: list[tuple[str, str]]) -> CodecRefusal | None:
    """Content-Length and Transfer-Encoding as the codec checks them."""
    lengths = [v for n, v in headers if n == "content-length"]
    encodings = [v for n, v in headers if n == "transfer-encoding"]
    if len(lengths) > 1:
        return CodecRefusal(400, "more than one content-length header")
    if lengths and not (lengths[0].isascii() and lengths[0].isdigit()):
        return CodecRefusal(400, f"invalid content-length {lengths[0]!r}")
    if encodings:
        if lengths:
            return CodecRefusal(400, "both transfer-encoding and content-length")
        if any(v.lower() != "chunked" for v in encodings):
            return CodecRefusal(501, "a transfer-encoding other than chunked")
    return None


__all__ = [
    "JOINED_HEADERS",
    "CodecLimits",
    "CodecRefusal",
    "Http1Request",
    "forget_blocks",
    "http1_request",
    "wire_headers",
]
