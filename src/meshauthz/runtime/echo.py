"""The mesh's default application: an HTTP echo.

Each response is JSON: the workload that answered, the method, path and
headers it received, and the caller identity its sidecar saw (the ``URI=``
of the ``x-forwarded-client-cert`` header the inbound sidecar sets, as
Istio's inbound HTTP connection manager does; absent for a plaintext caller).

Run: ``python -m meshauthz.runtime.echo --bind 127.0.0.1 --port 8080 [--port ...]
--workload ns/name``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def caller_identity(xfcc: str | None) -> str | None:
    """The last element's ``URI=`` of an XFCC header (the direct peer of the sidecar)."""
    if not xfcc:
        return None
    last = xfcc.split(",")[-1]
    for part in last.split(";"):
        k, _, v = part.partition("=")
        if k.strip().lower() == "uri":
            return v.strip().strip('"')
    return None


def make_handler(workload: str) -> type[BaseHTTPRequestHandler]:
    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "meshauthz-echo"
        disable_nagle_algorithm = True  # headers and body leave at once

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            doc: dict[str, Any] = {
                "workload": workload,
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "caller": caller_identity(self.headers.get("x-forwarded-client-cert")),
                "bodyBytes": len(body),
            }
            out = (json.dumps(doc, sort_keys=True) + "\n").encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(out)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _answer

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    return Echo


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="meshauthz-echo")
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, action="append", required=True)
    ap.add_argument("--workload", default="")
    args = ap.parse_args(argv)
    handler = make_handler(args.workload)
    servers = []
    for port in args.port:
        srv = ThreadingHTTPServer((args.bind, port), handler)
        srv.daemon_threads = True
        servers.append(srv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    print(f"echo {args.workload} on {args.bind} ports {args.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    for srv in servers:
        srv.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
