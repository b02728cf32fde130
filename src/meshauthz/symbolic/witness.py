"""Witnesses: a solver's model as a request in the request format, confirmed
by the concrete decision path before anyone sees it.

``witness_request`` writes the model as the request format
(``meshauthz/schemas/request.schema.json``); ``Confirmer.decide`` decides it
exactly as ``meshauthz check`` does (``request_from_data`` → ``resolve`` →
``Decider.decide``). A witness the concrete path decides otherwise than the
engine claims raises ``WitnessMismatch``: that is a bug in the encoding,
never an answer.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import z3

from meshauthz.decide.decision import Decision
from meshauthz.decide.engine import Decider, Prepared
from meshauthz.decide.request import DEFAULT_SOURCE_IP, resolve
from meshauthz.decide.request_spec import request_from_data
from meshauthz.decide.runner import ExtAuthzAssumption
from meshauthz.envoy.hcm import HcmConfigError, normalize_path
from meshauthz.mesh import MeshSnapshot
from meshauthz.symbolic.chain import End
from meshauthz.symbolic.jwt import wishes as jwt_wishes
from meshauthz.symbolic.jwt import witness_token
from meshauthz.symbolic.space import Space

# The caller's identity in a witness when no matcher reads it.
ANY_PRINCIPAL = "cluster.local/ns/default/sa/default"


class WitnessMismatch(AssertionError):
    """The concrete decision of a witness is not the one the engine derived (a bug)."""


@dataclass(frozen=True, slots=True)
class Destination:
    workload: str  # "namespace/name"
    port: int
    protocol: str  # "http" | "tcp"

    def to_json(self) -> dict[str, Any]:
        """The keys every JSON document of the engine names a destination with."""
        return {"workload": self.workload, "port": self.port, "protocol": self.protocol}


def _string(model: z3.ModelRef, v: z3.SeqRef) -> str:
    value = model.eval(v, model_completion=True)
    assert isinstance(value, z3.SeqRef)
    return str(value.as_string())


def _ip(model: z3.ModelRef, v6: z3.BoolRef, ip: z3.BitVecRef) -> str:
    n = model.eval(ip, model_completion=True)
    assert isinstance(n, z3.BitVecNumRef)
    if z3.is_true(model.eval(v6, model_completion=True)):
        return str(ipaddress.IPv6Address(n.as_long()))
    return str(ipaddress.IPv4Address(n.as_long() & 0xFFFFFFFF))


def witness_request(
    model: z3.ModelRef,
    space: Space,
    dest: Destination,
    caller: str | None = None,
    host: str | None = None,
) -> dict[str, Any]:
    """The request ``model`` describes, in the request format. ``caller``: the
    workload ("namespace/name") the model's caller is, when callers are workloads;
    ``host``: the Host left out when the request has it (the default on both sides)."""
    src = _ip(model, space.src_v6, space.src)
    remote = _ip(model, space.remote_v6, space.remote)
    req: dict[str, Any] = {}
    if caller is not None:
        req["from"] = caller
    elif z3.is_true(model.eval(space.plaintext, model_completion=True)):
        req["from"] = {"plaintext": True, "ip": src}
    else:
        principal = _string(model, space.principal) if "principal" in space.used else ANY_PRINCIPAL
        req["from"] = {"principal": principal, "ip": src}
    if remote != src:
        req["remoteIP"] = remote
    req["to"] = dest.workload
    req["port"] = dest.port
    req["protocol"] = dest.protocol
    if space.http:
        req["method"] = _string(model, space.method)
        req["path"] = _string(model, space.path) if "path" in space.used else "/"
        if "host" in space.used and _string(model, space.host) != host:
            req["host"] = _string(model, space.host)
        headers: dict[str, Any] = {}
        for h in space.headers.values():
            if h.name not in space.used:
                continue
            values = [
                _string(model, v)
                for s, v in zip(h.sent, h.values, strict=True)
                if z3.is_true(model.eval(s, model_completion=True))
            ]
            if values:
                headers[h.name] = values[0] if len(values) == 1 else values
        if req["method"] == "QUERY" and "content-type" not in headers:
            # the codec refuses a QUERY without one; no matcher reads it
            headers["content-type"] = "text/plain"
        if headers:
            req["headers"] = headers
    sni = _string(model, space.sni) if "sni" in space.used else ""
    if sni:
        req["sni"] = sni
    req.update(witness_token(model, space))
    return req


_FAMILIAR_METHODS = ("POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
WISH_TIMEOUT_MS = 2_000


def _plain_path(path: z3.SeqRef) -> z3.BoolRef:
    """A path every normalization leaves as it is: letters, digits, "-", "_" and
    single slashes."""
    plain = z3.Union(
        z3.Range("a", "z"), z3.Range("A", "Z"), z3.Range("0", "9"), z3.Re("-"), z3.Re("_")
    )
    segment = z3.Concat(z3.Re("/"), z3.Star(plain))
    return z3.InRe(path, z3.Plus(segment))


def readable_model(
    solver: z3.Solver, space: Space, host: str | None, timeout_ms: int
) -> z3.ModelRef:
    """A model of the solver's constraints (just checked sat) with the values a
    reader expects wherever they fit: the default caller address, no
    X-Forwarded-For, the destination's usual Host, GET, a path of plain
    characters, no SNI and no extra headers. ``timeout_ms``: the solver's own
    time limit, restored afterwards."""
    wishes: list[z3.BoolRef] = [
        z3.And(
            z3.Not(space.src_v6),
            space.src == z3.BitVecVal(int(ipaddress.ip_address(DEFAULT_SOURCE_IP)), 128),
        ),
        z3.And(space.remote_v6 == space.src_v6, space.remote == space.src),
        space.sni == z3.StringVal(""),
    ]
    if space.http:
        wishes.append(space.method == z3.StringVal("GET"))
        if "path" in space.used:
            wishes.append(_plain_path(space.path))
        if host is not None and "host" in space.used:
            wishes.append(space.host == z3.StringVal(host))
        wishes.extend(z3.Not(sent) for h in space.headers.values() for sent in h.sent)
        if space.jwt is not None:
            wishes.extend(jwt_wishes(space.jwt))
    fallback = solver.model()
    # wishes are worth a short wait only: the model found is a witness already
    solver.set("timeout", WISH_TIMEOUT_MS)
    try:
        if solver.check(*wishes) == z3.sat:  # usually they all fit at once
            return solver.model()
        solver.push()
        for wish in wishes:
            if solver.check(wish) == z3.sat:
                solver.add(wish)
            elif space.http and wish is wishes[3]:  # not GET: the next most familiar method
                for m in _FAMILIAR_METHODS:
                    if solver.check(space.method == z3.StringVal(m)) == z3.sat:
                        solver.add(space.method == z3.StringVal(m))
                        break
        model = solver.model() if solver.check() == z3.sat else fallback
        solver.pop()
        return model
    finally:
        solver.set("timeout", timeout_ms)


def default_host(snapshot: MeshSnapshot, workload: str) -> str:
    """The Host a request to ``workload`` carries when none is given (as ``resolve``)."""
    dest = snapshot.workload(workload)
    svc = next(iter(snapshot.services_for(dest)), None)
    return svc.hostname if svc is not None else dest.name


def path_is_normal(p: Prepared, path: str) -> bool:
    """Whether a client can send ``path`` so that the filters see it as it is
    (it normalizes to itself); the engine's path variable is the normalized path."""
    try:
        return normalize_path(path, p.path_options, p.runtime).path == path
    except HcmConfigError:
        return False


class Confirmer:
    """Decides witnesses on one side, as ``check`` does."""

    def __init__(self, snapshot: MeshSnapshot, ext_authz: ExtAuthzAssumption = "deny") -> None:
        self.snapshot = snapshot
        self.decider = Decider(snapshot, ext_authz=ext_authz)

    def decide(self, request: dict[str, Any]) -> Decision:
        return self.decider.decide(resolve(request_from_data(request), self.snapshot))

    def confirm(self, request: dict[str, Any], claimed: End) -> Decision:
        d = self.decide(request)
        got = (d.verdict, d.policy, d.rule)
        if got != (claimed.verdict, claimed.policy, claimed.rule):
            raise WitnessMismatch(
                f"the witness {request} is decided {got} by check, the engine derived "
                f"{(claimed.verdict, claimed.policy, claimed.rule)}"
            )
        return d


__all__ = [
    "Confirmer",
    "Destination",
    "WitnessMismatch",
    "default_host",
    "path_is_normal",
    "readable_model",
    "witness_request",
]
