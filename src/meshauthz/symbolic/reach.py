"""Who can reach whom: for every caller and every destination workload, port
and protocol, whether all, none or some requests are allowed.

Callers are each workload of the manifests (with the identity and address
``decide.request.resolve_source`` gives it, as ``check`` resolves a workload
caller), each gateway workload ("gateway:ns/name": its identity and address,
the original client's address in X-Forwarded-For), any plaintext caller, and
callers given by identity and/or address. For one caller and destination the
chain's ends (``chain.encode_chain``) the caller can reach are enumerated,
one solver model each, and every model becomes a witness request that
``check`` decides as the engine says (``witness.Confirmer``): the verdict is
"all" when every reachable end allows, "none" when every one denies, else
"some", with the conditions rendered from the rules that allow and the DENY
rules that take requests away, in the AuthorizationPolicy's own fields.

A gateway caller that policies select itself is its clients' requests through
it: the gateway's chain and the destination's, encoded together
(``GatewayHop``, following ``decide.gateway_hop``). A destination in ambient
mode without a waypoint is decided by its ztunnel (``symbolic.ztunnel``), and
through such a gateway by the gateway's chain then ztunnel's one decision on
the gateway's connections; one a waypoint can be in front of is "unknown".

The library:

    reach(snapshot, *, callers=None, destinations=None, ext_authz="deny") -> Reachability
        ``Reachability.rows``: ``Row(caller, destination, verdict, conditions,
        allowed_witness, denied_witness, deciding)``; ``.to_json()`` gives
        ``{"rows": [...]}`` in the shape ``meshauthz reach -o json`` prints.
    mesh_callers(snapshot) -> list[Caller]
        the workloads, gateways and "any plaintext caller".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

import z3
from msgspec import Struct, field
from msgspec.structs import replace

from meshauthz.ambient.evaluate import Connection, SpiffeIdentity
from meshauthz.ambient.topology import enrollment, service_waypoint, workload_waypoint
from meshauthz.ambient.ztunnel_config import (
    IstiodAmbient,
    ZtunnelWorkload,
    istiod_ambient,
    ztunnel_workload,
)
from meshauthz.decide.engine import Decider, Prepared
from meshauthz.decide.gateway_hop import through_gateway
from meshauthz.decide.path import client_in_mesh
from meshauthz.decide.request import DEFAULT_SOURCE_IP, resolve, resolve_source
from meshauthz.decide.request_spec import RequestSpec, SourceSpec, request_from_data
from meshauthz.decide.runner import ExtAuthzAssumption
from meshauthz.envoy.request_headers import LOOPBACK
from meshauthz.mesh import MeshSnapshot
from meshauthz.mesh.labels import match, subset_of
from meshauthz.mesh.selection import select_policies
from meshauthz.symbolic.chain import End, SymbolicChain, encode_chain
from meshauthz.symbolic.compare import (
    MAX_NOT_NORMAL,
    SOLVER_TIMEOUT_MS,
    ByShape,
    build_space,
    chain_shape,
    destinations,
    question,
    short_timeout,
)
from meshauthz.symbolic.conditions import (
    IDENTITY_DECIDED,
    LeftOut,
    end_rule,
    left_out_fields,
    rule_text,
)
from meshauthz.symbolic.regex import Unencodable
from meshauthz.symbolic.space import Space, ip_value, model_ip, read_of
from meshauthz.symbolic.witness import (
    ANY_PRINCIPAL,
    Confirmer,
    Destination,
    WitnessMismatch,
    default_host,
    path_is_normal,
    readable_model,
    string_constants,
    witness_request,
)
from meshauthz.symbolic.ztunnel import ztunnel_ends

Verdict = Literal["all", "none", "some", "unknown"]
CallerKind = Literal["workload", "gateway", "plaintext", "identity", "address"]
PLAINTEXT = "plaintext"
GATEWAY_PREFIX = "gateway:"
# How long a question whether any request satisfies a formula is first asked
# with no value fixed (``open_check``).
OPEN_CHECK_MS = 1_000


class Caller(Struct, frozen=True):
    """Who sends the requests of one row."""

    label: str  # what rows show as "from"
    kind: CallerKind
    workload: str | None = None  # "ns/name" for a workload or gateway of the manifests
    principal: str | None = None  # None: plaintext
    ip: str | None = None  # None: any address
    namespace: str | None = None

    @staticmethod
    def parse(text: str) -> Caller:
        """``principal=ID[,ip=ADDR]`` or ``ip=ADDR`` (``--caller``); raises ValueError."""
        fields: dict[str, str] = {}
        for part in text.split(","):
            key, eq, value = part.strip().partition("=")
            if not eq or key not in ("principal", "ip") or not value or key in fields:
                raise ValueError(
                    f"{text!r}: give principal=ID, optionally with ,ip=ADDRESS, or ip=ADDRESS"
                )
            fields[key] = value.strip()
        ip = fields.get("ip")
        if ip is not None:
            try:
                ip = str(ipaddress.ip_address(ip))
            except ValueError:
                raise ValueError(f"{text!r}: {ip!r} is not an IP address") from None
        principal = fields.get("principal")
        if principal is None:
            return Caller(text, "address", ip=ip)
        principal = principal.removeprefix("spiffe://")
        src = resolve_source(RequestSpec(SourceSpec(principal=principal), to=""), None)
        return Caller(text, "identity", principal=principal, ip=ip, namespace=src.namespace)

    def given(self) -> dict[str, Any]:
        """The request variables this caller fixes (by name), with their values."""
        out: dict[str, Any] = {"plaintext": self.principal is None}
        if self.principal is not None:
            out["principal"] = self.principal
        if self.ip is not None:
            out["src"] = out["src_v6"] = self.ip
            if self.kind != "gateway":
                out["remote"] = out["remote_v6"] = self.ip
        return out

    def sender(self, ip: str) -> str | dict[str, Any]:
        """The request's "from" for check: the workload itself, else this
        principal or plaintext from ``ip``."""
        if self.workload is not None:
            return self.workload
        if self.principal is None:
            return {"plaintext": True, "ip": ip}
        return {"principal": self.principal, "ip": ip}

    def fixed(self, space: Space) -> list[tuple[z3.ExprRef, z3.ExprRef]]:
        """``given`` as the space's variables and z3 values."""
        return [(getattr(space, n), _CALLER_VALUES[n](v)) for n, v in self.given().items()]

    def constraint(self, space: Space) -> z3.BoolRef:
        """The requests this caller can send, over the destination's variables."""
        c: list[z3.BoolRef] = []
        if self.principal is None:
            c.append(space.plaintext)
        else:
            c.append(z3.Not(space.plaintext))
            c.append(space.use("principal") == z3.StringVal(self.principal))
        if self.ip is not None:
            ip, v6 = ip_value(self.ip)
            c.append(space.src == ip)
            c.append(space.src_v6 == v6)
        if self.kind != "gateway" and self.ip is not None:
            # no X-Forwarded-For of its own: the remote address is the caller's
            c.append(z3.And(space.remote == space.src, space.remote_v6 == space.src_v6))
        return z3.And(*c)


def mesh_callers(snapshot: MeshSnapshot) -> list[Caller]:
    """Each workload (waypoints aside) and gateway, then any plaintext caller."""
    out: list[Caller] = []
    for w in sorted(snapshot.workloads, key=lambda w: w.key):
        if w.is_waypoint:
            continue
        src = resolve_source(RequestSpec(SourceSpec(workload=w.key), to=w.key), snapshot)
        gateway = w.proxy == "gateway"
        out.append(
            Caller(
                f"{GATEWAY_PREFIX}{w.key}" if gateway else w.key,
                "gateway" if gateway else "workload",
                workload=w.key,
                principal=src.principal,
                ip=src.ip,
                namespace=src.namespace,
            )
        )
    out.append(Caller(PLAINTEXT, "plaintext"))
    return out


class Deciding(Struct, frozen=True):
    """A policy rule that decides some of a row's requests, and where it is written."""

    end: End
    file: str | None
    line: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.end.verdict,
            "stage": str(self.end.stage),
            "policy": self.end.policy,
            "rule": self.end.rule,
            "file": self.file,
            "line": self.line,
        }


class Row(Struct, frozen=True):
    caller: Caller
    destination: Destination
    verdict: Verdict
    conditions: str | None = None
    allowed_witness: dict[str, Any] | None = None
    denied_witness: dict[str, Any] | None = None
    deciding: tuple[Deciding, ...] = ()
    # Through a gateway whose own policies take part: the witnesses are the
    # client's requests to the gateway, these the requests it sends on (None
    # for one the gateway denies).
    allowed_onward: dict[str, Any] | None = None
    denied_onward: dict[str, Any] | None = None
    two_hops: bool = False

    def to_json(self) -> dict[str, Any]:
        d = self.destination
        out = {
            "from": self.caller.label,
            "to": d.workload,
            "port": d.port,
            "protocol": d.protocol,
            "verdict": self.verdict,
            "conditions": self.conditions,
            "allowedWitness": self.allowed_witness,
            "deniedWitness": self.denied_witness,
        }
        if self.two_hops:
            out["allowedWitnessOnward"] = self.allowed_onward
            out["deniedWitnessOnward"] = self.denied_onward
        return out


class Reachability(Struct):
    rows: list[Row] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"rows": [r.to_json() for r in self.rows]}


# ------------------------------------------------------------------ conditions


# ------------------------------------------------------------------ the engine


_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")


def _wishes(space: Space, host: str, caller: Caller) -> list[list[z3.BoolRef]]:
    """``witness.readable_model``'s familiar values, leaving out the caller's
    address when the caller fixes it: all of them, then all but the method."""
    wishes = [
        z3.And(space.remote_v6 == space.src_v6, space.remote == space.src),
        space.sni == z3.StringVal(""),
    ]
    if caller.ip is None:
        src, v6 = ip_value(DEFAULT_SOURCE_IP)
        wishes.append(z3.And(space.src_v6 == v6, space.src == src))
    if not space.http:
        return [wishes]
    if "host" in space.used:
        wishes.append(space.host == z3.StringVal(host))
    wishes.extend(z3.Not(sent) for h in space.headers.values() for sent in h.sent)
    return [[*wishes, space.method == z3.StringVal(m)] for m in _METHODS] + [wishes]


# _strings' answers by AST id, with the formula kept so the id stays its own:
# the same formulas are asked about again and again within a row.
_STRINGS: dict[int, tuple[z3.ExprRef, list[str]]] = {}


def _strings(f: z3.ExprRef, limit: int = 64) -> list[str]:
    """The string constants of ``f`` (the policies' own paths, hosts, ...)."""
    hit = _STRINGS.get(f.get_id())
    if hit is not None:
        return hit[1]
    if len(_STRINGS) > 4096:
        _STRINGS.clear()
    _STRINGS[f.get_id()] = (f, found := string_constants([f], limit))
    return found


def _paths(f: z3.ExprRef, limit: int = 16) -> list[str]:
    """String constants of ``f`` that could be a path."""
    return [s for s in _strings(f) if s.startswith("/")][:limit]


def _hosts(f: z3.ExprRef, limit: int = 4) -> list[str]:
    """String constants of ``f`` that could be a Host (a name with a dot)."""
    return [s for s in _strings(f) if "." in s and "/" not in s and " " not in s][:limit]


def open_check(solver: z3.Solver) -> z3.CheckSatResult:
    """The solver's answer with no value fixed, for a short while only
    (``OPEN_CHECK_MS``): where no request satisfies the constraints, this "no"
    comes at once, while trying every familiar value in turn would take long.
    The solver's timeout is ``SOLVER_TIMEOUT_MS`` after."""
    with short_timeout(solver, OPEN_CHECK_MS):
        return solver.check()


def familiar_model(
    solver: z3.Solver, space: Space, host: str, caller: Caller, hint: z3.ExprRef | None = None
) -> z3.ModelRef | None:
    """A model with familiar values, None when the solver's constraints have
    none. The solver is asked with the values given first, then with each of
    ``hint``'s paths: z3 answers string questions with every variable fixed
    far faster than open ones, but only where there is an answer: whether
    there is none is asked first, as it is (``open_check``)."""
    if open_check(solver) == z3.unsat:
        return None
    sets = _wishes(space, host, caller)
    if hint is not None and "path" in space.used:
        paths = _paths(hint)  # once: a walk over the whole formula
        sets[1:1] = [
            [*sets[i], space.path == z3.StringVal(p)] for i in range(len(sets) - 1) for p in paths
        ]
    for wishes in sets:
        if solver.check(*wishes) == z3.sat:
            return solver.model()
    verdict = solver.check()
    if verdict == z3.unknown:
        raise Unencodable(f"the solver gave up ({solver.reason_unknown()})")
    if verdict == z3.unsat:
        return None
    return readable_model(solver, space, host, SOLVER_TIMEOUT_MS)


class Found(Struct, frozen=True):
    """A request of a row, the end the formulas give it, confirmed by ``check``
    (through a gateway: the client's request, and the request sent on)."""

    end: End
    request: dict[str, Any]
    onward: dict[str, Any] | None = None


# A destination's chain over its space, the space's domain, and the caller
# variables the chain's ends read (``Reacher.encoded``).
Encoded = tuple[Space, SymbolicChain, z3.BoolRef, frozenset[str]]
# A row with its allowed and denied witnesses as found.
RowFound = tuple["Row", Found | None, Found | None]


def _loopback(v6: z3.BoolRef, ip: z3.BitVecRef) -> z3.BoolRef:
    """A peer for which the gateway appends its own address (``request_headers.LOOPBACK``)."""
    return z3.Or(*[z3.And(v6 if a.version == 6 else z3.Not(v6), ip == int(a)) for a in LOOPBACK])


class GatewayHop(Struct):
    """A row through a gateway whose own policies take part (``decide.gateway_hop``):
    the client's request decided at the gateway, then the onward request at the
    destination, both chains over one space. The space's caller variables are
    the client's (plaintext, its address, the remote address the gateway
    derives); the destination's are substituted: the gateway's identity and
    address, the client's address as the remote one (the last X-Forwarded-For
    entry, which the gateway appends)."""

    gateway: Destination  # the gateway workload, the port its clients reach, the protocol
    via: Caller  # the gateway as the destination's caller
    trusted_hops: int  # the gateway's numTrustedProxies
    chain: SymbolicChain  # the gateway's DENY ends, then the destination's ends
    gateway_ends: list[End]  # the ends that are the gateway's decision
    gateway_allows: list[tuple[z3.BoolRef, End]]  # the gateway's ALLOW ends
    constraint: z3.BoolRef  # what the gateway's clients can send
    # what the gateway's chain and the destination's left out of their rules
    left_out: tuple[LeftOut, LeftOut]

    def at_gateway(self, end: End) -> bool:
        return any(end is e for e in self.gateway_ends)

    def client_request(
        self, model: z3.ModelRef, space: Space, host: str
    ) -> tuple[dict[str, Any], str]:
        """The client's request a model describes, and the SNI of the onward one."""
        req = witness_request(model, space, self.gateway, None, host)
        src = req["from"]["ip"]
        remote = req.pop("remoteIP", src)
        req["from"] = {"plaintext": True, "ip": src}
        if space.http:
            req.setdefault("host", host)  # the client names the destination's Service
            if remote != src:  # the entry the gateway's trusted hops lead to
                xff = ", ".join([remote] + [src] * (self.trusted_hops - 1))
                req["headers"] = {**req.get("headers", {}), "x-forwarded-for": xff}
        return req, req.pop("sni", "")


def gateway_hop(
    pg: Prepared, p: Prepared | End, via: Caller, ext_authz: ExtAuthzAssumption
) -> tuple[GatewayHop, Space]:
    """Both chains over one space (raises ``Unencodable``). ``p``: the
    destination's chain, or how its ztunnel decides every connection from the
    gateway (an ambient destination no waypoint is in front of)."""
    http = pg.protocol == "http"
    if isinstance(p, End):
        space = build_space(http, (pg,))
        dest_ends = [(z3.BoolVal(True), p)]
        chain_of = pg
    elif http and (pg.path_options, pg.runtime) != (p.path_options, p.runtime):
        # the space's path is the one both normalize to: they must normalize alike
        raise Unencodable(
            f"the gateway {pg.workload.key} and {p.workload.key} normalize paths differently"
        )
    else:
        space = build_space(http, (p, pg))
        dest_ends = encode_chain(p, space, ext_authz).ends
        chain_of = p
    if http and pg.path_options.unmodelled():
        raise Unencodable(str(pg.path_options.unmodelled()))
    g = encode_chain(pg, space, ext_authz)
    # at the gateway: a plaintext client (no certificate, no SNI)
    at_gw = [(space.plaintext, z3.BoolVal(True)), (space.sni, z3.StringVal(""))]
    gw_ip, gw_v6 = ip_value(pg.workload.address)
    remote: z3.ExprRef
    remote_v6: z3.ExprRef
    if http:  # the gateway appends its peer (itself for a loopback peer); the last entry
        loop = _loopback(space.src_v6, space.src)
        remote, remote_v6 = z3.If(loop, gw_ip, space.src), z3.If(loop, gw_v6, space.src_v6)
    else:  # a TCP destination sees the gateway's connection only
        remote, remote_v6 = gw_ip, gw_v6
    at_dest = [
        (space.plaintext, z3.BoolVal(via.principal is None)),
        (space.principal, z3.StringVal(via.principal or "")),
        (space.src, gw_ip),
        (space.src_v6, gw_v6),
        (space.remote, remote),
        (space.remote_v6, remote_v6),
    ]
    gends = [(z3.substitute(c, *at_gw), e) for c, e in g.ends]
    passed = z3.Or(*[c for c, e in gends if e.verdict == "ALLOW"] or [z3.BoolVal(False)])
    ends = [(c, e) for c, e in gends if e.verdict == "DENY"]
    ends += [(z3.And(passed, z3.substitute(c, *at_dest)), e) for c, e in dest_ends]
    hops = pg.xff.xff_num_trusted_hops if http else 0
    same = z3.And(space.remote == space.src, space.remote_v6 == space.src_v6)
    hop = GatewayHop(
        Destination(pg.workload.key, pg.port, pg.protocol),
        via,
        hops,
        SymbolicChain(chain_of, ends),
        [e for _, e in gends if e.verdict == "DENY"],
        [(c, e) for c, e in gends if e.verdict == "ALLOW"],
        z3.BoolVal(True) if hops else same,
        (
            left_out_fields(pg.build.problems),
            {} if isinstance(p, End) else left_out_fields(p.build.problems),
        ),
    )
    return hop, space


class Reacher:
    """Answers rows for one mesh, each destination prepared and encoded once."""

    def __init__(self, snapshot: MeshSnapshot, ext_authz: ExtAuthzAssumption = "deny") -> None:
        self.snapshot = snapshot
        self.ext_authz = ext_authz
        self.decider = Decider(snapshot, ext_authz=ext_authz)
        self.confirmer = Confirmer(snapshot, ext_authz)
        self.policies = {ap.key: ap for ap in snapshot.authorization_policies}
        self._gateway_policy_keys: dict[str, list[str]] = {}
        self._entries: dict[str, list[Destination]] | None = None
        self._istiod: IstiodAmbient | None = None
        # each chain shape's encoding (``encoded``)
        self._encoded: ByShape[Encoded | Unencodable] = ByShape()
        # the rows of each caller class, by destination shape (``_classes``)
        self._shapes: dict[
            tuple[Any, ...], tuple[SymbolicChain, z3.BoolRef, dict[tuple[Any, ...], RowFound]]
        ] = {}

    def prepared(self, d: Destination) -> Prepared:
        proto: Any = d.protocol
        return self.decider.prepare(self.snapshot.workload(d.workload), d.port, proto)

    def rows(self, dest: Destination, callers: list[Caller]) -> Iterator[Row]:
        target = self.snapshot.workload(dest.workload)
        if not target.auto_mtls:  # a workload's proxy sends plaintext there, as check has it
            callers = [replace(c, principal=None) if c.workload else c for c in callers]
        mode = enrollment(self.snapshot, target)
        waypoint = None
        if mode.mode == "ambient":
            waypoint = self._waypoint(dest)
            if waypoint is None:  # ztunnel alone decides
                yield from self.ztunnel_rows(dest, callers)
                return
        if mode.mode in ("ambient", "none"):
            # a waypoint enforces too (ambient), or nothing does: `check` decides
            # such requests hop by hop
            why = (
                f"{dest.workload} is in ambient mode and requests to it can go through "
                f"the waypoint {waypoint}: the symbolic engine models ztunnel alone, "
                "sidecar and gateway proxies; use check"
                if mode.mode == "ambient"
                else f"{dest.workload} has no sidecar and ztunnel does not capture it: "
                "nothing enforces authorization there, every request reaches it"
            )
            for c in callers:
                yield Row(c, dest, "unknown" if mode.mode == "ambient" else "all", why)
            return
        p = self.prepared(dest)
        encoded = self.encoded(p, dest, callers)
        if isinstance(encoded, Unencodable):
            for c in callers:
                yield Row(c, dest, "unknown", str(encoded))
            return
        space, chain, domain, reads = encoded
        host = default_host(self.snapshot, dest.workload)
        classes = self._classes(dest, space, chain, domain, host, callers)
        for c in callers:
            if c.kind == "gateway" and c.workload is not None and self._gateway_policies(c):
                # the gateway's own filters decide first, on what its clients send
                yield self.through_gateway(c, dest, p)
                continue
            key = _caller_class(c, reads)
            try:
                hit = classes.get(key)
                if hit is not None:
                    row = self.same_as(hit, c, dest)
                    if row is not None:
                        yield row
                        continue
                row, allowed, denied = self.found_row(c, dest, p, space, chain, domain, host)
                classes[key] = (row, allowed, denied)
                yield row
            except Unencodable as e:
                yield Row(c, dest, "unknown", str(e))

    def encoded(
        self, p: Prepared, dest: Destination, callers: list[Caller]
    ) -> Encoded | Unencodable:
        """``p``'s chain encoded over its space, with the space's domain and the
        caller variables its ends read (``_caller_class``); one encoding for
        destinations of one chain shape (``compare.chain_shape``: replicas, pods
        of one app) on one port, whose formulas are the same."""
        principal = any(c.principal is not None for c in callers)
        shape = (chain_shape(p), dest.port, dest.protocol, principal)
        hit = self._encoded.get(shape)
        if hit is not None:
            return hit
        try:
            if dest.protocol == "http" and p.path_options.unmodelled():
                raise Unencodable(str(p.path_options.unmodelled()))
            space = build_space(dest.protocol == "http", (p,))
            if principal:
                space.use("principal")  # read by the callers' constraints
            chain = encode_chain(p, space, self.ext_authz)
            variables = {n: getattr(space, n) for n in _CALLER_VALUES}
            reads = read_of([c for c, _ in chain.ends], variables)
            found: Encoded | Unencodable = (space, chain, space.domain(), reads)
        except Unencodable as e:
            found = e
        self._encoded.add(shape, found)
        return found

    def _classes(
        self,
        dest: Destination,
        space: Space,
        chain: SymbolicChain,
        domain: z3.BoolRef,
        host: str,
        callers: list[Caller],
    ) -> dict[tuple[Any, ...], RowFound]:
        """The rows found so far for the callers' classes at destinations whose
        formulas are the very ones of ``dest``'s (z3 shares equal terms: the same
        AST ids) with the same callers: replicas, ports a policy treats alike.
        The terms are kept with the rows, so that their ids stay theirs."""
        shape = (
            dest.protocol,
            tuple((c.get_id(), e) for c, e in chain.ends),
            domain.get_id(),
            tuple(sorted(space.used)),
            tuple(space.headers),
            host if "host" in space.used else None,
            tuple(callers),
        )
        hit = self._shapes.get(shape)
        if hit is None:
            hit = self._shapes[shape] = (chain, domain, {})
        return hit[2]

    def same_as(self, hit: RowFound, caller: Caller, dest: Destination) -> Row | None:
        """The row of a caller the formulas cannot tell from an earlier one
        (``_caller_class``, ``_classes``): its answer, with the witnesses sent by
        this caller to ``dest``, each confirmed by ``check``. None when ``check``
        decides one otherwise (what the formulas cannot tell apart, the path
        from caller to destination can: a workload calling itself)."""
        row, allowed, denied = hit
        witnesses: list[dict[str, Any] | None] = []
        for found in (allowed, denied):
            if found is None:
                witnesses.append(None)
                continue
            req = {**found.request, "to": dest.workload, "port": dest.port}
            if caller.kind == "workload":
                req["from"] = caller.workload
            try:
                self.confirmer.confirm(req, found.end)
            except WitnessMismatch:
                return None
            witnesses.append(req)
        return replace(
            row,
            caller=caller,
            destination=dest,
            allowed_witness=witnesses[0],
            denied_witness=witnesses[1],
        )

    def _waypoint(self, dest: Destination) -> str | None:
        """A waypoint some request to ``dest`` goes through (``decide.path.binding_for``:
        the workload's, or that of a Service or ServiceEntry naming it), if any."""
        snap = self.snapshot
        w = snap.workload(dest.workload)
        bindings = [workload_waypoint(snap, w)]
        bindings += [service_waypoint(snap, svc) for svc in snap.services_for(w)]
        for se in snap.service_entries:
            sel = se.spec.workload_selector
            if sel is not None and se.namespace == w.namespace and match(sel.labels, w.labels):
                bindings.append(service_waypoint(snap, se))
        return next((b.waypoint.key for b in bindings if b.waypoint is not None), None)

    def _held(self, dest: Destination) -> ZtunnelWorkload:
        if self._istiod is None:
            self._istiod = istiod_ambient(self.snapshot, self.decider.flags)
        return ztunnel_workload(self.snapshot, dest.workload, self.decider.flags, self._istiod)

    def ztunnel_rows(self, dest: Destination, callers: list[Caller]) -> Iterator[Row]:
        """Rows for a destination in ambient mode that no waypoint is in front of:
        its ztunnel decides each connection (``symbolic.ztunnel``)."""
        held = self._held(dest)
        space = Space(False)
        domain = space.domain()
        for c in callers:
            if c.kind == "gateway" and c.workload is not None and self._gateway_policies(c):
                # ztunnel decides every connection from the gateway alike
                req: dict[str, Any] = {"from": c.workload, "to": dest.workload, "port": dest.port}
                d = self.confirmer.decide({**req, "protocol": dest.protocol})
                yield self.through_gateway(c, dest, End(d.verdict, d.stage, d.policy, d.rule))
                continue
            try:
                yield self.ztunnel_row(c, dest, held, space, domain)
            except Unencodable as e:
                yield Row(c, dest, "unknown", str(e))

    def ztunnel_row(
        self,
        caller: Caller,
        dest: Destination,
        held: ZtunnelWorkload,
        space: Space,
        domain: z3.BoolRef,
    ) -> Row:
        def request(ip: str) -> dict[str, Any]:
            req: dict[str, Any] = {"from": caller.sender(ip)}
            req.update(to=dest.workload, port=dest.port, protocol=dest.protocol)
            if dest.protocol == "http":
                req.update(method="GET", path="/")
            return req

        def confirmed(req: dict[str, Any], end: End) -> tuple[End, dict[str, Any]]:
            self.confirmer.confirm(req, end)
            return end, req

        ip0 = caller.ip or DEFAULT_SOURCE_IP
        req0 = request(ip0)
        r = resolve(request_from_data(req0), self.snapshot)
        if caller.workload is not None or caller.ip is not None:
            # everything ztunnel reads is given: one connection decides every request
            d = self.confirmer.decide(req0)
            end = End(d.verdict, d.stage, d.policy, d.rule)
            ok = d.verdict == "ALLOW"
            return Row(
                caller,
                dest,
                "all" if ok else "none",
                None,
                req0 if ok else None,
                None if ok else req0,
                (self.deciding(end),),
            )
        captured, _ = client_in_mesh(self.snapshot, r)
        identity = r.source_principal if captured else None
        peer = SpiffeIdentity.parse(identity) if identity else None
        ends = ztunnel_ends(
            held.policies, Connection.of(ip0, r.destination.address, r.port, peer), space
        )

        def at(ip: str) -> list[tuple[z3.ExprRef, z3.ExprRef]]:
            value, v6 = ip_value(ip)
            return [(space.src, value), (space.src_v6, v6)]

        at_ip0 = at(ip0)

        def address(cond: z3.BoolRef) -> str | None:
            """The default address if it satisfies ``cond``, else one that does."""
            if z3.is_true(z3.simplify(z3.substitute(cond, *at_ip0))):
                return ip0
            solver = question(domain, cond)
            verdict = solver.check()
            if verdict == z3.unknown:
                raise Unencodable(f"the solver gave up ({solver.reason_unknown()})")
            if verdict == z3.unsat:
                return None
            return model_ip(solver.model(), space.src_v6, space.src)

        def end_at(ip: str) -> End:
            values = at(ip)
            for cond, end, _ in ends:
                if z3.is_true(z3.simplify(z3.substitute(cond, *values))):
                    return end
            raise AssertionError("the ends of ztunnel's decision partition the addresses")

        found: dict[str, tuple[End, dict[str, Any]]] = {}
        for verdict in ("ALLOW", "DENY"):
            ip = address(z3.Or(*[c for c, e, _ in ends if e.verdict == verdict] or [False]))
            if ip is not None:
                req = request(ip)
                found[verdict] = confirmed(req, end_at(ip))
        allowed, denied = found.get("ALLOW"), found.get("DENY")
        verdict_: Verdict = "some" if allowed and denied else ("all" if allowed else "none")
        deciding = [e for e, _ in found.values()]
        conditions = None
        if verdict_ == "some":
            grants: list[str] = []
            unless: list[str] = []
            for cond, e, text in ends:
                if text is None or address(cond) is None:
                    continue
                deciding.append(e)
                (grants if e.verdict == "ALLOW" else unless).append(text)
            conditions = " or ".join(grants) or "any request"
            if unless:
                conditions += "; unless " + " or ".join(unless)
        return Row(
            caller,
            dest,
            verdict_,
            conditions,
            allowed[1] if allowed else None,
            denied[1] if denied else None,
            tuple(self.deciding(e) for e in dict.fromkeys(deciding)),
        )

    def _gateway_policies(self, c: Caller) -> list[str]:
        assert c.workload is not None
        hit = self._gateway_policy_keys.get(c.workload)
        if hit is None:
            w = self.snapshot.workload(c.workload)
            hit = self._gateway_policy_keys[c.workload] = [
                s.policy.key for s in select_policies(self.snapshot, w)
            ]
        return hit

    def entry_ports(self, gateway: str, protocol: str) -> list[Destination]:
        """The ports of ``gateway`` its clients send ``protocol`` to."""
        if self._entries is None:
            self._entries = {}
            for d in destinations(self.snapshot, self.snapshot):
                self._entries.setdefault(d.workload, []).append(d)
        return [d for d in self._entries.get(gateway, []) if d.protocol == protocol]

    def through_gateway(self, caller: Caller, dest: Destination, p: Prepared | End) -> Row:
        """A gateway row whose gateway has policies of its own: one row per port
        its clients can use, merged (all / none when every port says so). ``p``:
        the destination's chain, or its ztunnel's decision on the gateway's
        connections."""
        assert caller.workload is not None
        host = default_host(self.snapshot, dest.workload)
        entries = self.entry_ports(caller.workload, dest.protocol)
        if not entries:
            return Row(
                caller,
                dest,
                "unknown",
                f"AuthorizationPolicies apply to the gateway {caller.workload} itself "
                f"({', '.join(self._gateway_policies(caller))}), which receives no "
                f"{dest.protocol} on any port the manifests declare: use check",
            )
        rows = []
        for entry in entries:
            try:
                pg = self.prepared(entry)
                hop, space = gateway_hop(pg, p, caller, self.ext_authz)
                client = Caller(caller.label, "plaintext")
                row, _, _ = self.found_row(
                    client, dest, hop.chain.prepared, space, hop.chain, space.domain(), host, hop
                )
                rows.append(replace(row, caller=caller, two_hops=True))
            except Unencodable as e:
                return Row(
                    caller, dest, "unknown", f"at the gateway {entry.workload}:{entry.port}: {e}"
                )
        return _merge(rows, entries)

    def found_row(
        self,
        caller: Caller,
        dest: Destination,
        p: Prepared,
        space: Space,
        chain: SymbolicChain,
        domain: z3.BoolRef,
        host: str,
        hop: GatewayHop | None = None,
    ) -> RowFound:
        """The row of ``caller`` to ``dest``, with the allowed and the denied
        witness found (what ``same_as`` answers another caller of its class from)."""
        fixed = caller.fixed(space)

        def known(f: z3.BoolRef) -> z3.BoolRef:
            """``f`` for this caller, simplified: often a constant."""
            return z3.simplify(z3.substitute(f, *fixed) if fixed else f)

        live = [(c, e) for c, e in ((known(c), e) for c, e in chain.ends) if not z3.is_false(c)]
        base_: list[z3.BoolRef] = []

        def base() -> list[z3.BoolRef]:
            if not base_:
                base_.extend((domain, caller.constraint(space)))
                if hop is not None:
                    base_.append(hop.constraint)
            return base_

        def find(extra: list[z3.BoolRef]) -> Found | None:
            """A request of the caller satisfying ``extra``, as a confirmed witness."""
            solver = question(*base(), *extra)
            for _ in range(MAX_NOT_NORMAL + 1):
                model = familiar_model(solver, space, host, caller, z3.And(*extra))
                if model is None:
                    return None
                path = model.eval(space.path, model_completion=True).as_string()
                if "path" in space.used and not path_is_normal(p, path):
                    solver.add(space.path != z3.StringVal(path))
                    continue
                end = chain.end_in(model)
                if hop is not None:
                    req, sni = hop.client_request(model, space, host)
                    return self.confirm_hop(hop, dest, req, sni, end)
                witness = witness_request(model, space, dest, caller.workload, host)
                self.confirmer.confirm(witness, end)
                return Found(end, witness)
            raise Unencodable("too many candidate paths that are not normalized paths")

        # the plainest request first (GET / with the usual Host), decided on the
        # formulas with every variable given; then one of the other kind
        first = self.plain(caller, dest, space, chain, domain, fixed, host, hop=hop) or find([])
        if first is None:  # no request of this caller gets here at all
            none = Row(caller, dest, "none", "no request from this caller reaches the port")
            return none, None, None
        found = [first]
        other = [c for c, e in live if e.verdict != first.end.verdict]
        second = None
        if other:
            want = z3.Or(*other)
            second = self.guess(caller, dest, space, chain, domain, fixed, host, want, hop)
            second = second or find([want])
        if second is not None:
            found.append(second)
        allowed = [f for f in found if f.end.verdict == "ALLOW"]
        denied = [f for f in found if f.end.verdict == "DENY"]
        verdict_: Verdict = "some" if allowed and denied else ("all" if allowed else "none")
        ends = [f.end for f in found]

        def decides(c: z3.BoolRef) -> bool:
            return (
                z3.is_true(c)
                or self.guess(caller, dest, space, chain, domain, fixed, host, c, hop) is not None
                or self._sat([*base(), c], space, host, caller)
            )

        gateway_grants: list[End] = []
        if verdict_ == "some":
            # every other rule that allows some of the caller's requests, or
            # takes some away by a DENY, for the conditions
            for c, e in live:
                if e in ends or (e.verdict == "DENY" and e.policy is None):
                    continue
                if decides(c):
                    ends.append(e)
            if hop is not None:  # the gateway's rules that let requests the destination allows
                passed = z3.Or(*[c for c, e in live if e.verdict == "ALLOW"])
                for c, e in hop.gateway_allows:
                    if e.policy is not None and decides(z3.simplify(z3.And(known(c), passed))):
                        gateway_grants.append(e)
        # in the chain's order, not the order they were found in (which the
        # solver's models decide)
        order = {e: i for i, (_, e) in enumerate(chain.ends)}
        ends.sort(key=lambda e: order.get(e, len(order)))
        if verdict_ != "some":
            conditions = None
        elif hop is None:
            conditions = self.conditions(caller, ends, left_out_fields(p.build.problems))
        else:
            conditions = self.hop_conditions(hop, dest, ends, gateway_grants)
        row = Row(
            caller,
            dest,
            verdict_,
            conditions,
            allowed[0].request if allowed else None,
            denied[0].request if denied else None,
            tuple(self.deciding(e) for e in dict.fromkeys([*gateway_grants, *ends])),
            allowed[0].onward if allowed else None,
            denied[0].onward if denied else None,
        )
        return row, allowed[0] if allowed else None, denied[0] if denied else None

    def confirm_hop(
        self, hop: GatewayHop, dest: Destination, req: dict[str, Any], sni: str, end: End
    ) -> Found:
        """The client's request through the gateway as ``decide.gateway_hop``
        decides it: the end the formulas give it must be the hop and decision."""
        t = through_gateway(
            self.confirmer.decider, req, dest.workload, dest.port, dest.protocol, sni=sni
        )
        at_gateway = hop.at_gateway(end)
        d = t.at_gateway if at_gateway else t.at_destination
        got = None if d is None else (d.verdict, d.policy, d.rule)
        if at_gateway != t.decided_at_gateway or got != (end.verdict, end.policy, end.rule):
            where = "the gateway" if t.decided_at_gateway else dest.workload
            raise WitnessMismatch(
                f"the witness {req} (then {t.onward}) is decided {got} at {where} by check, "
                f"the engine derived {(end.verdict, end.policy, end.rule)} at "
                f"{'the gateway' if at_gateway else dest.workload}"
            )
        return Found(end, req, t.onward)

    def _sat(self, formulas: list[z3.BoolRef], space: Space, host: str, caller: Caller) -> bool:
        """Whether some request satisfies ``formulas``: asked as it is first
        (``open_check``: no model is wanted here, so a "yes" does as well as a
        "no"), then with the familiar values given (``familiar_model``)."""
        solver = z3.Solver()
        solver.add(*formulas)
        verdict = open_check(solver)
        if verdict != z3.unknown:
            return bool(verdict == z3.sat)
        return familiar_model(solver, space, host, caller, formulas[-1]) is not None

    def plain(
        self,
        caller: Caller,
        dest: Destination,
        space: Space,
        chain: SymbolicChain,
        domain: z3.BoolRef,
        fixed: list[tuple[z3.ExprRef, z3.ExprRef]],
        host: str,
        method: str = "GET",
        path: str = "/",
        want: z3.BoolRef | None = None,
        host_sent: str | None = None,
        hop: GatewayHop | None = None,
    ) -> Found | None:
        """The caller's plain request (by default GET /; the usual Host, no
        headers, no SNI, no X-Forwarded-For) and the end the formulas give it,
        confirmed by ``check``; None when it is not in the space, does not
        satisfy ``want``, or a formula does not reduce to a constant."""
        ip = caller.ip or DEFAULT_SOURCE_IP
        addr, v6 = ip_value(ip)
        values = [*fixed]
        given = {v.get_id() for v, _ in fixed}
        for var, value in (
            (space.src, addr),
            (space.src_v6, v6),
            (space.remote, addr),
            (space.remote_v6, v6),
            (space.sni, z3.StringVal("")),
            # a plaintext caller's is never read, but the space has one
            (space.principal, z3.StringVal(caller.principal or ANY_PRINCIPAL)),
            (space.method, z3.StringVal(method)),
            (space.path, z3.StringVal(path)),
            (space.host, z3.StringVal(host_sent or host)),
        ):
            if var.get_id() not in given:
                values.append((var, value))
        for h in space.headers.values():
            values += [(sent, z3.BoolVal(False)) for sent in h.sent]
            values += [(v, z3.StringVal("")) for v in h.values]
        # one model holding every value, evaluated without completion: a
        # variable left out keeps a formula open, and the guess is dropped
        ctx = z3.main_ctx()
        model = z3.ModelRef(z3.Z3_mk_model(ctx.ref()), ctx)
        for var, value in values:
            model.update_value(var, value)

        def holds(f: z3.ExprRef) -> bool | None:
            v = model.eval(f, model_completion=False)
            return True if z3.is_true(v) else (False if z3.is_false(v) else None)

        if not holds(domain):
            return None
        if want is not None and not holds(want):
            return None
        end = None
        for cond, e in chain.ends:
            taken = holds(cond)
            if taken is None:
                return None
            if taken:
                end = e
                break
        if end is None:
            return None
        req: dict[str, Any] = {}
        if hop is not None:
            req["from"] = {"plaintext": True, "ip": ip}
            req.update(to=hop.gateway.workload, port=hop.gateway.port, protocol=dest.protocol)
            if space.http:
                req.update(method=method, path=path, host=host_sent or host)
            return self.confirm_hop(hop, dest, req, "", end)
        req["from"] = caller.sender(ip)
        req.update(to=dest.workload, port=dest.port, protocol=dest.protocol)
        if space.http:
            req.update(method=method, path=path)
            if host_sent is not None and host_sent != host:
                req["host"] = host_sent
        self.confirmer.confirm(req, end)
        return Found(end, req)

    def guess(
        self,
        caller: Caller,
        dest: Destination,
        space: Space,
        chain: SymbolicChain,
        domain: z3.BoolRef,
        fixed: list[tuple[z3.ExprRef, z3.ExprRef]],
        host: str,
        want: z3.BoolRef,
        hop: GatewayHop | None = None,
    ) -> Found | None:
        """A plain request satisfying ``want`` among the familiar methods and the
        paths the formulas name, each decided on the formulas (z3 takes far
        longer to search for one than to evaluate a few dozen)."""
        if not space.http:
            return None
        paths = ["/", *_paths(want)] if "path" in space.used else ["/"]
        hosts = [host]
        if "host" in space.used:  # the policies' own (case-insensitive matches hold no constant)
            hosts = list(dict.fromkeys([host, *space.hosts_named[:4], *_hosts(want)]))
        for sent in hosts:
            for method in _METHODS:
                for path in paths:
                    hit = self.plain(
                        caller,
                        dest,
                        space,
                        chain,
                        domain,
                        fixed,
                        host,
                        method,
                        path,
                        want,
                        sent,
                        hop,
                    )
                    if hit is not None:
                        return hit
        return None

    def hop_conditions(
        self, hop: GatewayHop, dest: Destination, ends: list[End], gateway_grants: list[End]
    ) -> str:
        """The gateway's conditions on what its clients send, then the destination's."""
        client = Caller("", "plaintext")
        at_gw = [*gateway_grants, *(e for e in ends if hop.at_gateway(e))]
        at_dest = [e for e in ends if not hop.at_gateway(e)]
        return (
            f"at the gateway {hop.gateway.workload}: "
            f"{self.conditions(client, at_gw, hop.left_out[0])}; "
            f"then at {dest.workload}: {self.conditions(hop.via, at_dest, hop.left_out[1])}"
        )

    def deciding(self, end: End) -> Deciding:
        ap = self.policies.get(end.policy) if end.policy else None
        if ap is None:
            return Deciding(end, None, None)
        if end.rule is not None and end.rule < len(ap.spec.rules):
            loc = ap.location("spec", "rules", end.rule)
            return Deciding(end, ap.file, loc.line or ap.line)
        return Deciding(end, ap.file, ap.line)

    def _rule(self, end: End, caller: Caller, left_out: LeftOut) -> str | None:
        """The deciding rule's match as its chain matches (``left_out``), leaving
        out what the caller decides by itself (its identity, and its address if
        fixed)."""
        rule = end_rule(self.policies, end)
        if rule is None:
            return None
        skip = set(IDENTITY_DECIDED) if caller.principal is not None else set()
        if caller.ip is not None:
            skip.add("ipBlocks")
        return rule_text(rule, skip, left_out=left_out.get((end.policy, end.rule), ()))

    def conditions(self, caller: Caller, ends: list[End], left_out: LeftOut) -> str:
        """Allowed when one allowing rule matches, unless a DENY rule does;
        ``left_out``: what the chain of ``ends`` left out of its rules."""
        grants: list[str] = []
        for end in (e for e in ends if e.verdict == "ALLOW"):
            text = self._rule(end, caller, left_out)
            if text is None:
                grants.append("any request")
            else:
                grants.append(f"{text} [{end.policy} rule {end.rule}]")
        unless = []
        for end in (e for e in ends if e.verdict == "DENY"):
            if str(end.stage) == "DENY":
                text = self._rule(end, caller, left_out)
                if text is not None:
                    unless.append(f"{text} [{end.policy} rule {end.rule}]")
        out = " or ".join(dict.fromkeys(grants)) or "any request"
        if unless:
            out += "; unless " + " or ".join(dict.fromkeys(unless))
        return out


# The variables a caller fixes (``Caller.given``), by name, with how each
# value is written for z3 (``Caller.fixed``): an address is two variables, its
# bits and whether it is IPv6.
_CALLER_VALUES: dict[str, Callable[[Any], z3.ExprRef]] = {
    "plaintext": z3.BoolVal,
    "principal": z3.StringVal,
    "src": lambda ip: ip_value(ip)[0],
    "src_v6": lambda ip: ip_value(ip)[1],
    "remote": lambda ip: ip_value(ip)[0],
    "remote_v6": lambda ip: ip_value(ip)[1],
}


def _caller_class(caller: Caller, reads: frozenset[str]) -> tuple[Any, ...]:
    """What a destination's chain can tell of a caller. A workload's: the values
    it fixes of the variables the chain reads (``reads``), and whether it fixes
    an identity and an address at all (the row's conditions leave those out);
    two workloads of one class get the same row but for the witnesses' sender.
    Any other caller is a class of its own."""
    if caller.kind != "workload" or caller.workload is None:
        return ("caller", caller)
    given = caller.given()
    return (
        caller.principal is None,
        caller.ip is None,
        *(given.get(name) for name in _CALLER_VALUES if name in reads),
    )


def _merge(rows: list[Row], entries: list[Destination]) -> Row:
    """One row from the rows through each port of a gateway."""
    first = rows[0]
    verdicts = {r.verdict for r in rows}
    if len(rows) == 1 or (len(verdicts) == 1 and verdicts != {"some"}):
        return first
    allowed = next((r for r in rows if r.allowed_witness is not None), None)
    denied = next((r for r in rows if r.denied_witness is not None), None)
    return Row(
        first.caller,
        first.destination,
        "some",
        "; ".join(
            f"through port {e.port}: {r.conditions or r.verdict}"
            for r, e in zip(rows, entries, strict=True)
        ),
        allowed.allowed_witness if allowed else None,
        denied.denied_witness if denied else None,
        tuple(dict.fromkeys(d for r in rows for d in r.deciding)),
        allowed.allowed_onward if allowed else None,
        denied.denied_onward if denied else None,
        two_hops=True,
    )


def reach(
    snapshot: MeshSnapshot,
    *,
    callers: list[Caller] | None = None,
    only: Iterable[Destination] | None = None,
    ext_authz: ExtAuthzAssumption = "deny",
) -> Reachability:
    """Every caller against every destination (``only``: a subset of them)."""
    callers = mesh_callers(snapshot) if callers is None else callers
    reacher = Reacher(snapshot, ext_authz)
    result = Reachability()
    for dest in destinations(snapshot, snapshot) if only is None else only:
        result.rows.extend(reacher.rows(dest, callers))
    return result


__all__ = [
    "DEFAULT_SOURCE_IP",
    "GATEWAY_PREFIX",
    "PLAINTEXT",
    "Caller",
    "Deciding",
    "Reachability",
    "Reacher",
    "Row",
    "Verdict",
    "mesh_callers",
    "reach",
    "select_workloads",
]


# ------------------------------------------------------------------ selections


def select_workloads(snapshot: MeshSnapshot, selector: str) -> set[str]:
    """The workloads ``selector`` names: ``k=v[,k=v]`` (labels), ``ns/name`` (a
    workload, or the workloads of that Service) or ``ns`` (a namespace)."""
    sel = selector.strip()
    if "=" in sel:
        want: dict[str, str] = {}
        for part in sel.split(","):
            k, _, v = part.partition("=")
            want[k.strip()] = v.strip()
        return {w.key for w in snapshot.workloads if subset_of(want, w.labels)}
    if "/" in sel:
        out = {w.key for w in snapshot.workloads if w.key == sel}
        for s in snapshot.services:
            if s.key == sel:
                out |= {w.key for w in snapshot.workloads_for(s)}
        return out
    return {w.key for w in snapshot.workloads if w.namespace == sel}
