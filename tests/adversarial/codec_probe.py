"""Record what a real Envoy's HTTP/1.1 codec does with a request's header block.

One listener, an HTTP connection manager with istiod's sidecar inbound options
(BASE path normalization, its XFF and header settings) on an Envoy running
istiod's runtime flags (``tests/envoy_process.py`` starts every Envoy so). A
Lua filter, where Istio puts its RBAC filters, answers each request with the
headers it sees, one ``name<TAB>value`` line each; a request the codec refuses
comes back with Envoy's status instead. Each corpus row is a request in
meshauthz's request format (method, path, host, headers, sent on the wire as
``meshauthz.envoy.codec.wire_headers`` lays them out) with Envoy's ``status``
and, when it got through, the headers the filters ``seen`` (by name, values in
order; the random ``x-request-id`` left out).

Cases: whitespace around values and the Host; every byte inside a header name,
a value (start, middle, end) and the Host, except CR and LF (a request in the
request format cannot put them on the wire inside a header) and ``:`` in a
name (it ends the name on the wire); repeated headers of many names;
Content-Length and Transfer-Encoding; the header count and size limits; request
targets in every form (origin, absolute, authority, asterisk), with each
printable byte in each part of a URL.

    .venv/bin/python -m tests.adversarial.codec_probe           # re-record
    .venv/bin/python -m tests.adversarial.codec_probe --check   # compare only
"""

from __future__ import annotations

import contextlib
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from meshauthz.envoy.codec import JOINED_HEADERS, wire_headers
from meshauthz.envoy.hcm import HcmOptions
from meshauthz.translate.hcm import SIDECAR_INBOUND_XFF, path_options
from meshauthz.translate.hcm_headers import SIDECAR_INBOUND_HEADERS
from tests.adversarial import corpus
from tests.decide.envoy_probe import _complete, hcm_filter, parse_response
from tests.envoy_process import EnvoyProcess, envoy_binary, free_port

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "codec_corpus.jsonl"

LUA_ECHO = r"""
function envoy_on_request(handle)
  local out = {}
  for k, v in pairs(handle:headers()) do
    table.insert(out, k .. "\t" .. v)
  end
  handle:respond({[":status"] = "200", ["x-echo"] = "1"}, table.concat(out, "\n"))
end
"""

# The limits' boundaries: a request line and header block of exactly 60 KiB.
LIMIT = 60 * 1024


def sidecar_hcm() -> dict[str, Any]:
    echo = {
        "name": "echo",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": LUA_ECHO},
        },
    }
    options = {
        **HcmOptions(path_options("BASE"), SIDECAR_INBOUND_XFF).to_json(),
        **SIDECAR_INBOUND_HEADERS.to_hcm(),
    }
    return hcm_filter("codec", options, [echo], 404)


@contextlib.contextmanager
def running() -> Iterator[int]:
    exe = envoy_binary()
    if exe is None:
        raise FileNotFoundError("no envoy binary")
    port, admin = free_port(), free_port()
    bootstrap = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "codec",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [{"filters": [sidecar_hcm()]}],
                }
            ]
        },
    }
    with tempfile.TemporaryDirectory(prefix="meshauthz-codec-") as tmp:
        proc = EnvoyProcess(exe, Path(tmp))
        try:
            proc.start(bootstrap, admin, args=["--concurrency", "1"])
            yield port
        finally:
            proc.stop()


def send(port: int, row: dict[str, Any]) -> dict[str, Any]:
    """Send the row's request (no other header) and record Envoy's answer."""
    lines = [f"{row['method']} {row['path']} HTTP/1.1"]
    lines += [f"{n}: {v}" for n, v in wire_headers(row["host"], map(tuple, row["headers"]))]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(5)
        s.sendall(data)
        while not _complete(b"".join(chunks)):
            try:
                c = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not c:
                break
            chunks.append(c)
    r = parse_response(b"".join(chunks))
    out = dict(row)
    if r.status == 200 and "x-echo" in r.headers:
        seen: dict[str, list[str]] = {}
        for line in r.body.decode("utf-8", "surrogateescape").split("\n"):
            name, _, value = line.partition("\t")
            if name != "x-request-id":
                seen.setdefault(name, []).append(value)
        out.update(status=None, seen=seen)
    else:
        out.update(status=r.status, seen=None)
    return out


def _row(
    case: str, headers: list[tuple[str, str]], host: str = "h", path: str = "/"
) -> dict[str, Any]:
    return {"case": case, "method": "GET", "path": path, "host": host, "headers": headers}


def _char(b: int) -> str:
    return chr(b)  # a code point; on the wire as UTF-8 (0x80..0xFF are two bytes)


# Every header the model joins (but the framing ones, probed below), and others it does not.
REPEATED = sorted(JOINED_HEADERS - {"host", "content-length", "transfer-encoding"}) + [
    "accept-language",
    "cookie",
    "date",
    "forwarded",
    "range",
    "x-b3-traceid",
    "traceparent",
    "baggage",
    "x-custom",
    "x-user",
    "method",
    "path",
    "authority",
]


def cases() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    # optional whitespace
    for host in (" admin.example.com", "admin.example.com ", "\tadmin.example.com\t", "  a  "):
        rows.append(_row("host whitespace", [], host=host))
    for v in (" mallory ", "\tmallory", "mallory\t \t", "a b", "a\tb", " ", "", "  a  b  "):
        rows.append(_row("value whitespace", [("x-user", v)]))
    rows.append(_row("host header whitespace", [("host", " admin.example.com ")]))
    # every byte, except CR and LF, in a value, a name and the Host
    for b in range(256):
        c = _char(b)
        if c in "\r\n":
            continue
        rows.append(_row("value byte start", [("x-p", c + "a")]))
        rows.append(_row("value byte middle", [("x-p", "a" + c + "b")]))
        rows.append(_row("value byte end", [("x-p", "a" + c)]))
        rows.append(_row("host byte", [], host="a" + c + "b"))
        if c != ":":
            rows.append(_row("name byte", [("x" + c + "y", "1")]))
    rows.append(_row("empty name", [("", "1")]))
    # repeated headers
    for hosts in (["a", "b"], ["a", "a"], ["a", ""], ["", "a"], [" a", "b "], ["a,b", "c"]):
        rows.append(_row("repeated host", [("host", h) for h in hosts]))
    rows.append(_row("host with comma", [], host="a,b"))
    for name in REPEATED:
        rows.append(_row("repeated header", [(name, "a"), (name, "b")]))
        rows.append(_row("repeated header with empty", [(name, ""), (name, "a"), (name, "")]))
    # framing
    for cl in ("-1", "abc", "0", "10", "+1", "", " 5 ", "1.0", "0x1", "0, 0", "1 1"):
        rows.append(_row("content-length", [("content-length", cl)]))
    rows.append(_row("content-length twice", [("content-length", "0"), ("content-length", "0")]))
    rows.append(_row("content-length twice", [("content-length", "0"), ("content-length", "1")]))
    for te in ("chunked", "Chunked", "gzip", "gzip, chunked", "chunked, gzip", "identity", ""):
        rows.append(_row("transfer-encoding", [("transfer-encoding", te)]))
    rows.append(_row("transfer-encoding twice", [("transfer-encoding", "chunked")] * 2))
    rows.append(_row("te and cl", [("transfer-encoding", "chunked"), ("content-length", "0")]))
    # limits: header lines (Host included) and bytes
    for total in (99, 100, 101, 150):
        rows.append(_row("header count", [(f"x-h{i}", "1") for i in range(total - 1)]))
    for path_len in (1, 1000):
        path = "/" + "a" * (path_len - 1)
        fixed = len(f"GET {path} HTTP/1.1\r\n\r\n") + len("host: h\r\n") + len("x-big: \r\n")
        for extra in (0, 1):
            rows.append(_row("header bytes", [("x-big", "v" * (LIMIT - fixed + extra))], path=path))
    rows.append(_row("request line bytes", [], path="/" + "a" * LIMIT))
    rows += target_cases()
    return rows


def _target(
    case: str, path: str, method: str = "GET", headers: list[tuple[str, str]] | None = None
) -> dict[str, Any]:
    return {**_row(case, headers or [], path=path), "method": method}


# URLs in absolute form: the schemes, the authority's parts, the path's ends
ABSOLUTE = [
    "http://other.example/x?y=1", "https://h2:8443/p", "http://h3", "http://h3?q", "http://h4/",
    "HTTP://H5/P", "HtTpS://h", "http://user@h6/p", "http://a:b@h/p", "http://@h/p",
    "ftp://h7/p", "ws://h/p", "http:/x", "http:h/p", "https:/h/p", "http://", "http:///p",
    "http://h8/a/../b", "http://h9/a//b", "http://h/p/../../..", "http://h14/%2e%2e/x",
    "http://h/a%2Fb", "http://h/p%zz", "http://h/%00", "http://h16/p q",
    "http://h10/p#frag", "http://h#f", "http://h/p?q#f", "http://h/#", "http://h?#",
    "http://h?q", "http://h/?q", "http://h:8080?x", "http://h/p?", "http://h:8080/p?",
    "http://[::1]:80/p", "http://[::1]/p", "http://[::ffff:1.2.3.4]:8/p", "http://[::1/p",
    "http://[v1.x]/p", "http://[fe80::1%25eth0]/p", "http://1.2.3.4/p",
    "http://h11:abc/p", "http://h12:/p", "http://h:0/p", "http://h:1/p", "http://h:080/p",
    "http://h:65535/p", "http://h:65536/p", "http://h:99999999999/p", "http://h:80",
    "http://-h/p", "http://h./p", "http://h_x/p", "http://h%41/p", "http://\u00e4/p",
    "http://h/\u00e4", "http://h\\p", "//h13/p", "*",
]  # fmt: skip


def target_cases() -> list[dict[str, Any]]:
    """Request targets in every form (RFC 9112 section 3.2): meshauthz.envoy.request_target."""
    rows = [_target("absolute target", p) for p in ABSOLUTE]
    for b in range(0x21, 0x7F):  # each printable byte in each part of a URL
        c = chr(b)
        rows.append(_target("absolute target host byte", f"http://a{c}b/p"))
        rows.append(_target("absolute target path byte", f"http://h/a{c}b"))
        rows.append(_target("absolute target user info byte", f"http://u{c}v@h/p"))
        rows.append(_target("absolute target query byte", f"http://h/p?a{c}b"))
        rows.append(_target("authority target byte", f"a{c}b:443", "CONNECT"))
    # the Host header and x-forwarded-proto beside an absolute URL
    rows.append(
        _target("absolute target and headers", "http://other.example/x", headers=[("x-a", "1")])
    )
    rows.append(_target("absolute target and headers", "http://h/p", headers=[("host", "x")]))
    for url, proto in (("http://h/p", "https"), ("https://h/p", "http"), ("https://h/p", "ftp")):
        rows.append(
            _target("absolute target and headers", url, headers=[("x-forwarded-proto", proto)])
        )
    rows.append(
        _target("absolute target and headers", "/p", headers=[("x-forwarded-proto", "HTTPS")])
    )
    rows.append(
        _target("absolute target and headers", "http://h21/p", "POST", [("content-length", "0")])
    )
    # CONNECT's authority form, and the asterisk form
    for t in ("h18:80", "h:443", "h:0", "h:65535", "h:65536", "[::1]:443", "h19", "h:abc", "h:",
              "a@h:443", "*", "http://h20:80", "/x"):  # fmt: skip
        rows.append(_target("authority target", t, "CONNECT"))
    rows.append(_target("asterisk target", "*", "OPTIONS"))
    rows.append(_target("asterisk target", "*", "OPTIONS", [("content-length", "0")]))
    rows.append(_target("asterisk target", "/*", "OPTIONS"))
    rows.append(_target("asterisk target", "http://h17", "OPTIONS"))
    for m in ("GET", "HEAD"):
        rows.append(_target("asterisk target", "*", m))
    rows.append(_target("asterisk target", "*", "POST", [("content-length", "0")]))
    return rows


def record() -> list[dict[str, Any]]:
    with running() as port:
        return [send(port, row) for row in cases()]


def load_corpus() -> list[dict[str, Any]]:
    return corpus.load(CORPUS)


if __name__ == "__main__":
    sys.exit(corpus.main(CORPUS, record, __doc__.splitlines()[0]))
