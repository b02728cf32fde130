"""The headers Envoy's HTTP connection manager adds, rewrites and drops before
the filters, meshauthz against a real Envoy 1.40 configured as istiod
configures a sidecar's inbound HCM and a gateway's.

Two judges:

* a Lua filter in the RBAC filters' place dumps every header entry it sees;
  the dump must equal ``meshauthz.envoy.request_headers.request_headers``,
  except where the value is Envoy's own randomness (a generated
  ``x-request-id``, the certificate's ``Hash=`` and ``Cert=``): there both
  sides must be well-formed and are compared as placeholders;
* the RBAC filter itself: AuthorizationPolicies whose rules name these headers
  (presence, absence, prefix, suffix, exact ``:scheme``, XFCC's ``URI=``) are
  decided by meshauthz's engine and by Envoy, for mTLS and plaintext callers,
  with and without client-sent values: no disagreement.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from msgspec.structs import replace

from meshauthz.decide.engine import Decider
from meshauthz.envoy.rbac.evaluate import PeerCertificate
from meshauthz.envoy.request_headers import (
    ClientCertDetails,
    Downstream,
    HeaderSettings,
    request_headers,
)
from meshauthz.mesh import build_snapshot
from meshauthz.resources.loader import load
from meshauthz.translate import BuildOptions, Chain, build
from meshauthz.translate.hcm import SIDECAR_INBOUND_XFF
from meshauthz.translate.hcm_headers import SIDECAR_INBOUND_HEADERS, gateway_headers

from .harness import SERVER_URI, Probe, Site, running
from .judge import compare, decide, expected, prepared_from_build, request_for

DUMP = """
function envoy_on_request(handle)
  local out = {}
  for k, v in pairs(handle:headers()) do
    out[#out + 1] = k .. "\\t" .. v
  end
  handle:respond({[":status"] = "200"}, table.concat(out, "\\n"))
end
"""

PRINCIPAL = "cluster.local/ns/ns2/sa/a"
# Client-sent values, chosen for the request-id trace rule: the first 8 hex
# digits modulo 10000 below 100 are sampled at 1%; "a"/"b"/"9" at index 14 are kept.
IDS = [
    "00000001-e89b-42d3-a456-426614174000",  # sampled: index 14 becomes 9
    "00000064-e89b-42d3-a456-426614174000",  # 100: not sampled, kept
    "00002773-e89b-42d3-a456-426614174000",  # 10099 % 10000 = 99: sampled
    "00000000-e89b-c2d3-a456-426614174000",  # c is no trace mark: sampled
    "00000000-e89b-a2d3-a456-426614174000",  # forced mark kept
    "00000500-e89b-72d3-a456-426614174000",  # kept
    "0000050g-e89b-42d3-a456-426614174000",  # not hex: kept
    "0000050g-e89b-72d3-a456-426614174000",  # not hex: kept (reset on an edge request)
    "00000001-e89b-42d3-a456-4266141740001",  # 37 characters: kept
    "abc",
]
CLIENT_HEADERS: list[list[tuple[str, str]]] = [
    [],
    *[[("x-request-id", i)] for i in IDS],
    [("x-request-id", IDS[5]), ("x-client-trace-id", "t")],
    [("x-request-id", "")],
    [("x-request-id", "a"), ("x-request-id", "b")],
    [("x-forwarded-proto", "https")],
    [("x-forwarded-proto", "HTTPS")],
    [("x-forwarded-proto", "http")],
    [("x-forwarded-proto", "garbage")],
    [("x-forwarded-proto", "")],
    [("x-forwarded-proto", "http"), ("x-forwarded-proto", "https")],
    [("x-forwarded-client-cert", "By=spiffe://evil;URI=spiffe://cluster.local/ns/ns2/sa/a")],
    [("x-forwarded-client-cert", "a"), ("x-forwarded-client-cert", "b")],
    [("x-forwarded-client-cert", "")],
    [("x-forwarded-for", "10.0.0.1"), ("x-user", "alice")],
    [
        (n, "1")
        for n in (
            "x-envoy-internal",
            "x-envoy-force-trace",
            "x-envoy-retry-on",
            "x-envoy-max-retries",
            "x-envoy-upstream-rq-timeout-ms",
            "x-envoy-expected-rq-timeout-ms",
            "x-envoy-original-url",
            "x-envoy-retriable-status-codes",
            "x-envoy-decorator-operation",
            "x-envoy-downstream-service-cluster",
            "x-envoy-downstream-service-node",
            "x-envoy-external-address",
            "x-envoy-original-path",
            "x-envoy-attempt-count",
            "keep-alive",
            "proxy-connection",
        )
    ],
]

SETTINGS: dict[str, HeaderSettings] = {
    "sidecar": SIDECAR_INBOUND_HEADERS,
    "gateway": gateway_headers(0),
    "gateway-1hop": gateway_headers(1),
    "no-tracing": HeaderSettings(
        xff=SIDECAR_INBOUND_XFF,
        forward_client_cert="APPEND_FORWARD",
        client_cert_details=SIDECAR_INBOUND_HEADERS.client_cert_details,
    ),
    # options istiod does not set by default, which the model covers too
    "gateway-no-tracing": replace(gateway_headers(0), tracing=None),
    "gateway-preserve-id": replace(gateway_headers(0), preserve_external_request_id=True),
    "no-generated-id": replace(SIDECAR_INBOUND_HEADERS, generate_request_id=False),
    "no-trace-mark": replace(SIDECAR_INBOUND_HEADERS, pack_trace_reason=False),
    "forward-only": replace(SIDECAR_INBOUND_HEADERS, forward_client_cert="FORWARD_ONLY"),
    "always-forward-only": replace(
        SIDECAR_INBOUND_HEADERS, forward_client_cert="ALWAYS_FORWARD_ONLY"
    ),
    "sanitize": replace(SIDECAR_INBOUND_HEADERS, forward_client_cert="SANITIZE"),
    "sanitize-set-dns": replace(
        SIDECAR_INBOUND_HEADERS,
        forward_client_cert="SANITIZE_SET",
        client_cert_details=ClientCertDetails(dns=True),
    ),
}

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HASH = re.compile(r"Hash=[0-9a-f]{64}")
_CERT = re.compile(
    r'Cert="-----BEGIN%20CERTIFICATE-----%0A[0-9A-Za-z%]+-----END%20CERTIFICATE-----%0A"'
)
_SEEN = ("x-request-id", "x-forwarded-proto", "x-forwarded-client-cert", ":scheme")


def _lua() -> dict[str, Any]:
    return {
        "name": "dump",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": DUMP},
        },
    }


def _view(entries: list[tuple[str, str]], sent: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Header entries with Envoy's randomness replaced by placeholders, after
    checking that each random value is well formed; sorted, without the
    pseudo headers that are not the HCM's (and ``host``)."""
    sent_ids = [v for n, v in sent if n == "x-request-id"]
    client_ids = {*sent_ids, ",".join(sent_ids)} if sent_ids else set()
    out = []
    for name, value in entries:
        if name in (":authority", ":path", ":method", "host"):
            continue
        # a value that is no client-sent id (up to the trace mark) is generated
        if name == "x-request-id" and not any(
            value == i[:14] + value[14:15] + i[15:] for i in client_ids
        ):
            assert _UUID.fullmatch(value), value
            assert value[14] in "49b", value
            value = "<generated>"
        if name == "x-forwarded-client-cert":
            assert _HASH.search(value) or "Hash=" not in value, value
            value = _CERT.sub('Cert="<pem>"', _HASH.sub("Hash=<sha256>", value))
        out.append((name, value))
    return sorted(out)


def _parse(body: str) -> list[tuple[str, str]]:
    return [(line.split("\t", 1)[0], line.split("\t", 1)[1]) for line in body.split("\n") if line]


def test_headers_the_filters_see(test_ca: Any) -> None:
    sites = [Site(name, "http", [_lua()], headers=s) for name, s in SETTINGS.items()]
    probes = [
        Probe(site.name, principal=p, source_ip="127.0.0.3", headers=h)
        for site in sites
        for p in (None, PRINCIPAL)
        for h in CLIENT_HEADERS
    ]
    with running(sites, test_ca) as envoy:
        observed = envoy.run(probes)
    failures = []
    for probe, obs in zip(probes, observed, strict=True):
        assert obs.status == 200 and obs.body is not None, (probe, obs)
        peer = (
            PeerCertificate(uri_sans=("spiffe://" + probe.principal,)) if probe.principal else None
        )
        mine = request_headers(
            SETTINGS[probe.site],
            Downstream(peer is not None, peer, (SERVER_URI,), probe.source_ip),
            list(probe.headers),
        )
        got, want = _view(_parse(obs.body), list(probe.headers)), _view(mine, list(probe.headers))
        if got != want:
            failures.append(
                f"{probe.site} {probe.principal} {probe.headers}:\n  envoy {got}\n  mine  {want}"
            )
    assert not failures, f"{len(failures)} of {len(probes)} differ:\n" + "\n".join(failures[:10])


def test_client_cert_element_spelled_out(test_ca: Any) -> None:
    """One XFCC value in full, as Envoy writes it for istiod's sidecar settings."""
    site = Site("one", "http", [_lua()], headers=SIDECAR_INBOUND_HEADERS)
    probe = Probe("one", principal=PRINCIPAL, headers=[("x-forwarded-client-cert", "By=x")])
    with running([site], test_ca) as envoy:
        (obs,) = envoy.run([probe])
    got = dict(_parse(obs.body or ""))["x-forwarded-client-cert"]
    assert _HASH.sub("Hash=<sha256>", got) == (
        f'By=x,By={SERVER_URI};Hash=<sha256>;Subject="";URI=spiffe://{PRINCIPAL}'
    )


# --- the RBAC filter as the judge ---------------------------------------------------

WORKLOAD = """
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: ns1, labels: {app: api}}
spec:
  serviceAccountName: api
  containers: [{name: c, image: x, ports: [{containerPort: 80}]}]
"""


def _when(action: str, key: str, **values: list[str]) -> dict[str, Any]:
    return {"action": action, "rules": [{"when": [{"key": f"request.headers[{key}]", **values}]}]}


POLICIES: dict[str, dict[str, Any]] = {
    "xfcc-absent-denied": _when("DENY", "x-forwarded-client-cert", notValues=["*"]),
    "xfcc-present-allowed": _when("ALLOW", "x-forwarded-client-cert", values=["*"]),
    "xfcc-by": _when(
        "ALLOW", "x-forwarded-client-cert", values=[f"By={SERVER_URI};Hash=*", "By=x*"]
    ),
    "xfcc-uri": _when("ALLOW", "x-forwarded-client-cert", values=[f"*;URI=spiffe://{PRINCIPAL}"]),
    "xfcc-forged": _when("DENY", "x-forwarded-client-cert", values=["By=spiffe://evil*"]),
    "proto-https": _when("ALLOW", "x-forwarded-proto", values=["https"]),
    "proto-not-http": _when("DENY", "x-forwarded-proto", values=["http"]),
    "scheme-https": _when("ALLOW", ":scheme", values=["https"]),
    "scheme-http-denied": _when("DENY", ":scheme", values=["http"]),
    "rid-present": _when("ALLOW", "x-request-id", values=["*"]),
    "rid-sampled": _when("ALLOW", "x-request-id", values=["00000001-e89b-9*", "00000500-*"]),
    "rid-as-sent": _when("DENY", "x-request-id", values=["00000001-e89b-4*", "a,b"]),
    "envoy-internal": _when("DENY", "x-envoy-internal", values=["*"]),
    "retry-on-absent": _when("ALLOW", "x-envoy-retry-on", notValues=["*"]),
}
RBAC_HEADERS: list[list[tuple[str, str]]] = [
    [],
    [("x-forwarded-client-cert", "By=spiffe://evil;URI=spiffe://cluster.local/ns/ns2/sa/a")],
    [("x-forwarded-client-cert", "By=x")],
    [("x-forwarded-proto", "https")],
    [("x-forwarded-proto", "http")],
    [("x-forwarded-proto", "Https")],
    [("x-request-id", IDS[0])],
    [("x-request-id", IDS[5])],
    [("x-request-id", "a"), ("x-request-id", "b")],
    [("x-envoy-internal", "true"), ("x-envoy-retry-on", "5xx")],
]


def test_policies_on_added_headers_in_real_envoy(test_ca: Any, tmp_path: Path) -> None:
    f = tmp_path / "api.yaml"
    f.write_text(WORKLOAD)
    snap = build_snapshot(load([str(f)]).manifests)
    decider = Decider(snap)
    workload = snap.workload("ns1/api")
    assert workload.identity.spiffe_uri == SERVER_URI
    base = decider.prepare(workload, 80, "http")
    sites, cases = [], []
    for name, spec in POLICIES.items():
        p = tmp_path / f"{name}.yaml"
        p.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "security.istio.io/v1",
                    "kind": "AuthorizationPolicy",
                    "metadata": {"name": name, "namespace": "ns1"},
                    "spec": spec,
                }
            )
        )
        loaded = load([str(p)])
        assert not loaded.errors, loaded.errors
        result = build(loaded.manifests.authorization_policies, Chain.HTTP, BuildOptions())
        sites.append(Site(name, "http", result.to_dicts()))
        prep = prepared_from_build(base, result, address="127.0.0.1", port=80)
        for principal in (None, PRINCIPAL):
            for h in RBAC_HEADERS:
                cases.append((Probe(name, principal=principal, headers=h), prep))
    with running(sites, test_ca) as envoy:
        observed = envoy.run([p for p, _ in cases])
    failures = []
    statuses = set()
    for (probe, prep), got in zip(cases, observed, strict=True):
        decision, md = decide(prep, request_for(probe, prep.workload, "http"))
        diffs = compare(got, expected(decision, md, True), decision)
        statuses.add((probe.site, got.status))
        if diffs:
            failures.append(f"{probe}: " + "; ".join(diffs))
    assert not failures, f"{len(failures)} of {len(cases)} disagree:\n" + "\n".join(failures[:20])
    # Envoy always has an x-request-id and never a client's x-envoy-internal or
    # x-envoy-retry-on, so those three policies let every request in; every
    # other policy allows some requests and denies others.
    always = {"rid-present", "envoy-internal", "retry-on-absent"}
    for name in always:
        assert {s for n, s in statuses if n == name} == {200}, name
    for name in POLICIES.keys() - always:
        assert {(name, 200), (name, 403)} <= statuses, name
