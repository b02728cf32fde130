"""What a workload does and what its sidecar logged: ``mesh curl``, ``mesh logs``,
``mesh token``.

``send`` plays ``kubectl exec <pod> -- curl URL``: the request leaves from the
calling workload's own loopback address to its sidecar's outbound listener
for the URL's port (the connection iptables would redirect), with the Host
header naming the Service; the sidecar resolves the Service, originates mTLS
with the caller's certificate and delivers it to the destination's sidecar.
A caller without a sidecar, or ``plaintext=True``, connects straight to the
destination's inbound listener without TLS.

``interpret`` reads one access-log entry of an inbound sidecar back into the
decision it records: ``RESPONSE_CODE_DETAILS`` / ``CONNECTION_TERMINATION_DETAILS``
(``rbac_access_denied_matched_policy[...]``, ``jwt_authn_access_denied{...}``),
the RBAC filters' dynamic metadata (``enforced_effective_policy_id`` of the
filter that allowed, and the dry-run ``*shadow_*`` results).
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from meshauthz.errors import MeshauthzError
from meshauthz.mesh import MeshSnapshot, inbound_port
from meshauthz.mesh.ports import resolve_target_port, service_port_protocol
from meshauthz.mesh.protocol import listener_protocol
from meshauthz.runtime.plan import MeshPlan, WorkloadPlan
from meshauthz.translate import naming

USER_AGENT = "curl/8.5.0 (meshauthz mesh curl)"
RESET = "connection reset"


class CurlError(MeshauthzError):
    pass


class Target(Struct):
    """Where a URL leads: the Service, its port, the workload and the port it receives on."""

    host: str
    port: int
    service: str  # ns/name
    hostname: str  # the Service FQDN
    workload: WorkloadPlan
    workload_port: int
    protocol: str  # "http" or "tcp" (the inbound chain)


class Response(Struct):
    status: int | str  # an HTTP status, or "connection reset"
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""
    request_id: str = ""
    elapsed: float = 0.0
    target: Target | None = None
    sent_headers: list[tuple[str, str]] = field(default_factory=list)
    via: str = ""  # "sidecar" or "direct"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "headers": [list(h) for h in self.headers],
            "body": self.body,
            "requestId": self.request_id,
            "elapsedMs": round(self.elapsed * 1000, 2),
            "via": self.via,
            "to": (
                {
                    "service": self.target.service,
                    "port": self.target.port,
                    "workload": self.target.workload.key,
                    "workloadPort": self.target.workload_port,
                    "protocol": self.target.protocol,
                }
                if self.target
                else None
            ),
        }


def resolve_url(
    plan: MeshPlan, snapshot: MeshSnapshot, caller: WorkloadPlan, url: str
) -> tuple[Target, str]:
    """The Service a URL names (``<svc>.<ns>.svc.<domain>``, ``<svc>.<ns>.svc``,
    ``<svc>.<ns>``, or ``<svc>`` in the caller's namespace), and the request target."""
    u = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    if u.scheme != "http":
        raise CurlError(f"{url}: only http:// URLs (the sidecar originates the mTLS)")
    host = (u.hostname or "").lower().rstrip(".")
    port = u.port or 80
    parts = host.split(".")
    suffix = snapshot.domain_suffix.split(".")
    if len(parts) == 1:
        name, ns = parts[0], caller.namespace
    elif (
        len(parts) == 2
        or (len(parts) == 3 and parts[2] == "svc")
        or (len(parts) == 3 + len(suffix) and parts[2] == "svc" and parts[3:] == suffix)
    ):
        name, ns = parts[0], parts[1]
    else:
        raise CurlError(
            f"{host}: not a Service of the mesh (<svc>.<ns>.svc.{snapshot.domain_suffix})"
        )
    svc = snapshot.find_service(f"{ns}/{name}")
    if svc is None:
        raise CurlError(f"{host}: no Service {ns}/{name} in the mesh")
    sp = svc.port(port)
    if sp is None:
        have = ", ".join(str(p.port) for p in svc.ports) or "none"
        raise CurlError(f"Service {ns}/{name} has no port {port} (ports: {have})")
    for mw in snapshot.workloads_for(svc):
        wp = plan.workloads.get(mw.key)
        tp = resolve_target_port(mw, sp)
        if wp is None or tp is None or tp not in wp.inbound:
            continue
        kind = inbound_port(snapshot, mw, tp).listener
        lp = listener_protocol(service_port_protocol(sp))
        proto = "tcp" if (kind == "tcp" or lp == "tcp") else "http"
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        netloc = u.netloc.rsplit("@", 1)[-1]
        return Target(netloc, port, svc.key, svc.hostname, wp, tp, proto), path
    raise CurlError(f"Service {ns}/{name} port {port} has no running endpoint")


def send(
    plan: MeshPlan,
    snapshot: MeshSnapshot,
    caller_ref: str,
    url: str,
    *,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    jwt: str | None = None,
    data: bytes | None = None,
    plaintext: bool = False,
    timeout: float = 10.0,
    request_id: str | None = None,
    curl_headers: bool = True,
    host: str | None = None,
) -> Response:
    """``curl_headers``: add the User-Agent and Accept curl sends (off: exactly
    ``headers``, with the Host and the x-request-id that finds the log entry).
    ``host``: the Host header (default: the URL's authority, as curl sends it)."""
    caller = plan.workload(caller_ref)
    target, path = resolve_url(plan, snapshot, caller, url)
    via_sidecar = caller.sidecar and not plaintext
    if via_sidecar:
        if target.protocol == "http" and target.port in caller.outbound_http:
            addr = (caller.ip, caller.outbound_http[target.port])
        else:
            key = f"{target.service}:{target.port}"
            if key not in caller.outbound_tcp:
                raise CurlError(f"{caller.key} has no outbound listener for {key}")
            addr = (caller.ip, caller.outbound_tcp[key])
    else:
        addr = target.workload.inbound_address(target.workload_port)
    rid = request_id or str(uuid.uuid4())
    sent: list[tuple[str, str]] = [("host", host if host is not None else target.host)]
    if curl_headers:
        sent += [("user-agent", USER_AGENT), ("accept", "*/*")]
    if jwt:
        sent.append(("authorization", f"Bearer {jwt}"))
    sent += [(k.strip().lower(), v.strip()) for k, v in headers]
    wire = [*sent, ("x-request-id", rid)]
    conn = http.client.HTTPConnection(*addr, timeout=timeout, source_address=(caller.ip, 0))
    start = time.monotonic()
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in wire:
            conn.putheader(k, v)
        if data is not None:
            conn.putheader("content-length", str(len(data)))
        conn.endheaders(data)
        r = conn.getresponse()
        body = r.read().decode(errors="replace")
        resp = Response(r.status, r.reason, list(r.getheaders()), body)
    except (
        ConnectionResetError,
        http.client.RemoteDisconnected,
        BrokenPipeError,
        http.client.IncompleteRead,
    ):
        resp = Response(RESET)
    except (ConnectionRefusedError, TimeoutError) as e:
        raise CurlError(f"cannot reach {addr[0]}:{addr[1]}: {e}") from e
    finally:
        conn.close()
    resp.elapsed = time.monotonic() - start
    resp.request_id = rid
    resp.target = target
    resp.sent_headers = sent
    resp.via = "sidecar" if via_sidecar else "direct"
    return resp


def check_request(
    resp: Response,
    caller: WorkloadPlan,
    *,
    plaintext: bool,
    method: str,
    path: str,
    jwt: str | None,
) -> dict[str, Any]:
    """The same request in ``meshauthz check --request``'s format."""
    t = resp.target
    assert t is not None
    src: dict[str, Any] = {"workload": caller.key, "ip": caller.ip}
    if plaintext or not caller.sidecar:
        src["plaintext"] = True
    headers: dict[str, Any] = {}
    for k, v in resp.sent_headers:
        if k in ("host",) or (jwt and k == "authorization" and v == f"Bearer {jwt}"):
            continue
        headers.setdefault(k, []).append(v)
    req: dict[str, Any] = {
        "from": src,
        "to": f"{t.hostname}:{t.port}",
        "method": method,
        "path": path,
        "host": t.host,
        "headers": {k: v[0] if len(v) == 1 else v for k, v in headers.items()},
        "name": resp.request_id,
    }
    if t.protocol == "tcp":
        req["protocol"] = "tcp"
    if jwt:
        req["token"] = jwt
    return req


# --------------------------------------------------------------------------- access logs


def read_log(plan: MeshPlan, w: WorkloadPlan) -> Iterator[dict[str, Any]]:
    path = plan.access_log(w)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return
    for line in lines:
        try:
            yield json.loads(line)
        except ValueError:
            continue


def _policy(envoy_name: str | None) -> tuple[str | None, int | None]:
    if not envoy_name or envoy_name == "none":
        return None, None
    name = naming.parse_policy_name(envoy_name)
    if name is None:
        return envoy_name, None
    return name.policy, name.rule


def _details_policy(details: str | None) -> str | None:
    if details and details.startswith("rbac_access_denied_matched_policy["):
        return details[len("rbac_access_denied_matched_policy[") : -1]
    return None


def interpret(entry: dict[str, Any]) -> dict[str, Any]:
    """The decision an inbound access-log entry records."""
    http_entry = entry.get("direction") == "inbound"
    details = entry.get("details") if http_entry else entry.get("termination")
    meta = (entry.get("rbac") if http_entry else entry.get("network_rbac")) or {}
    code = entry.get("code")
    out: dict[str, Any] = {
        "decision": "ALLOW",
        "status": code if http_entry else "connected",
        "stage": "default",
        "policy": None,
        "rule": None,
        "envoyPolicy": None,
        "dryRun": [],
        # an AUDIT rule matched (the RBAC LOG filter's hint); None: not in the entry
        "audit": None,
    }
    denied_by = _details_policy(details)
    if denied_by is not None:
        policy, rule = _policy(denied_by)
        out.update(decision="DENY", envoyPolicy=None if denied_by == "none" else denied_by)
        out.update(policy=policy, rule=rule, stage="ALLOW" if denied_by == "none" else "DENY")
        if not http_entry:
            out["status"] = RESET
    elif http_entry and details and details.startswith("jwt_authn_access_denied"):
        out.update(decision="DENY", stage="JWT", reason=details)
    elif (
        not http_entry and entry.get("flags") not in (None, "-") and "NR" in str(entry.get("flags"))
    ):
        out.update(decision="DENY", stage="mTLS", status=RESET, reason="no filter chain matched")
    else:
        pid = meta.get("enforced_effective_policy_id")
        if pid:
            policy, rule = _policy(pid)
            out.update(stage="ALLOW", policy=policy, rule=rule, envoyPolicy=pid)
    if http_entry and "common" in entry:
        common = entry["common"]
        out["audit"] = isinstance(common, dict) and common.get("access_log_hint") is True
    for prefix, stage in (
        (naming.DRY_RUN_DENY_STAT_PREFIX, "DENY"),
        (naming.DRY_RUN_ALLOW_STAT_PREFIX, "ALLOW"),
    ):
        result = meta.get(prefix + "shadow_engine_result")
        if result is None:
            continue
        pid = meta.get(prefix + "shadow_effective_policy_id")
        policy, rule = _policy(pid)
        out["dryRun"].append(
            {"stage": stage, "result": result, "policy": policy, "rule": rule, "envoyPolicy": pid}
        )
    return out


def find_entry(
    plan: MeshPlan, w: WorkloadPlan, request_id: str, timeout: float = 3.0
) -> dict[str, Any] | None:
    """The inbound access-log entry of a request (Envoy flushes logs every 100 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        for e in read_log(plan, w):
            if e.get("request_id") == request_id and e.get("direction") == "inbound":
                return e
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


# --------------------------------------------------------------------------- tokens


def demo_key_path() -> Path:
    return Path(str(resources.files("meshauthz.runtime") / "demo_jwt" / "key.pem"))


def demo_jwks() -> str:
    return (resources.files("meshauthz.runtime") / "demo_jwt" / "jwks.json").read_text()


def mint_token(
    issuer: str,
    subject: str,
    claims: dict[str, Any] | None = None,
    *,
    audience: Sequence[str] = (),
    ttl: int = 3600,
    key_file: str | None = None,
    kid: str = "meshauthz-demo",
) -> str:
    """A JWT signed (RS256) by the mesh's demo key, whose JWKS is ``demo_jwks()``
    (like Istio's samples/jwt-server demo key), or by ``key_file``."""
    import jwt as pyjwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = serialization.load_pem_private_key(
        Path(key_file).read_bytes() if key_file else demo_key_path().read_bytes(), None
    )
    now = int(time.time())
    payload: dict[str, Any] = {"iss": issuer, "sub": subject, "iat": now, "exp": now + ttl}
    if audience:
        payload["aud"] = audience[0] if len(audience) == 1 else list(audience)
    payload.update(claims or {})
    if not isinstance(key, rsa.RSAPrivateKey):
        raise MeshauthzError(f"{key_file}: not an RSA private key (RS256 needs one)")
    return pyjwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


__all__ = [
    "RESET",
    "CurlError",
    "Response",
    "Target",
    "check_request",
    "demo_jwks",
    "find_entry",
    "interpret",
    "mint_token",
    "read_log",
    "resolve_url",
    "send",
]
