"""Record what a real Envoy's RBAC ``uri_template`` matcher does with every byte.

A DENY policy on ``/admin/{*}`` (``/admin/*`` in Envoy's syntax) must deny
``/admin/x=y`` if Envoy does; a byte
that meshauthz leaves out of a template's segment class turns such a DENY into
a wrong ALLOW. This script asks Envoy: one listener per (path normalization
mode, template), each an HTTP connection manager with istiod's options for the
mode (tests/decide/envoy_probe.py ``mode_options``), an RBAC filter with one
DENY policy whose only permission is the template, and a direct 200 response.
Every byte value (raw on the wire, and percent-encoded) is placed inside a
path segment; the corpus row keeps the status Envoy answered (403: the template
matched, 200: it did not, 400: the codec refused the request line).

    .venv/bin/python -m tests.adversarial.uri_template_probe           # re-record
    .venv/bin/python -m tests.adversarial.uri_template_probe --check   # compare only
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.adversarial import corpus
from tests.decide.envoy_probe import MODES, hcm_filter, mode_options, raw_request, unwire, wire
from tests.envoy_process import EnvoyProcess, envoy_binary, free_port

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "uri_template_corpus.jsonl"

# Envoy's syntax: istiod writes an AuthorizationPolicy path "/admin/{*}" as "/admin/*"
# and "{**}" as "**" (translate/matchers.py); a bare "{*}" is not a valid Envoy template.
TEMPLATES = (
    "/admin/{x}",
    "/admin/*",
    "/admin/**",
    "/admin/{x=*}/end",
    "/admin/{x=**}",
    "/admin/*.json",
)

UT_TYPE = "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig"


def paths_for(template: str) -> list[str]:
    """Every byte inside a segment the template's glob covers, raw and escaped."""
    out: list[str] = []
    tail = "/end" if template.endswith("/end") else (".json" if template.endswith(".json") else "")
    for b in range(256):
        raw = unwire(bytes([b]))
        if raw not in "\r\n":  # these end the request line: not a path byte on the wire
            out.append(f"/admin/x{raw}y{tail}")
        out.append(f"/admin/x%{b:02X}y{tail}")
    out.append(f"/admin/{tail}")  # an empty segment
    out.append(f"/admin/a/b{tail}")  # two segments
    return out


def _listener(name: str, port: int, mode: str, template: str) -> dict[str, Any]:
    rbac = {
        "rules": {
            "action": "DENY",
            "policies": {
                "t": {
                    "permissions": [
                        {
                            "uri_template": {
                                "name": "uri-template",
                                "typed_config": {"@type": UT_TYPE, "path_template": template},
                            }
                        }
                    ],
                    "principals": [{"any": True}],
                }
            },
        }
    }
    rbac_filter = {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            **rbac,
        },
    }
    hcm = hcm_filter(name, mode_options(mode), [rbac_filter], 200)
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [hcm]}],
    }


@contextlib.contextmanager
def running() -> Iterator[dict[tuple[str, str], int]]:
    exe = envoy_binary()
    if exe is None:
        raise FileNotFoundError("no envoy binary")
    ports = {(m, t): free_port() for m in MODES for t in TEMPLATES}
    admin = free_port()
    listeners = [_listener(f"l{i}", port, m, t) for i, ((m, t), port) in enumerate(ports.items())]
    bootstrap = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": listeners},
    }
    with tempfile.TemporaryDirectory(prefix="meshauthz-ut-") as tmp:
        proc = EnvoyProcess(exe, Path(tmp))
        try:
            proc.start(bootstrap, admin, args=["--concurrency", "1"])
            yield ports
        finally:
            proc.stop()


def record() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with running() as ports:
        for (mode, template), port in ports.items():
            for path in paths_for(template):
                r = raw_request(port, wire(path))
                rows.append({"mode": mode, "template": template, "path": path, "status": r.status})
    return rows


def load_corpus() -> list[dict[str, Any]]:
    return corpus.load(CORPUS)


if __name__ == "__main__":
    sys.exit(corpus.main(CORPUS, record, __doc__.splitlines()[0]))
