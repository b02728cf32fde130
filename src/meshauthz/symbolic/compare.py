"""Two meshes compared over every request: what NEW allows that OLD denied
("opened"), and the reverse ("closed"), per destination workload, port and
protocol, each class of requests with a confirmed witness.

A class is a pair (how OLD's chain ends, how NEW's chain ends): the deciding
stage, policy and rule on each side. The solver finds a request in a class
not yet reported, the witness is decided concretely on both sides, the class
is set aside, and the search goes on (up to ``max_classes`` per destination
and direction).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Generic, Literal, TypeVar

import z3
from msgspec import Struct, field

from meshauthz.ambient.topology import enrollment
from meshauthz.decide.cause import Stage
from meshauthz.decide.engine import Decider, Prepared
from meshauthz.decide.request import Transport
from meshauthz.decide.runner import ExtAuthzAssumption
from meshauthz.envoy.rbac.model import (
    HeaderMatcher,
    PermAnd,
    PermDestinationIp,
    PermNot,
    PermOr,
)
from meshauthz.mesh import (
    MeshSnapshot,
    MeshWorkload,
    inbound_port,
    inbound_ports,
    listener_mtls_mode,
    select_policies,
)
from meshauthz.resources.objects import AuthorizationPolicy
from meshauthz.symbolic.chain import End, SymbolicChain, encode_chain
from meshauthz.symbolic.conditions import (
    LeftOut,
    change_conditions,
    end_rule,
    left_out_fields,
    listed_methods,
)
from meshauthz.symbolic.jwt import add_jwt_space, chain_policies
from meshauthz.symbolic.matchers import header_matchers
from meshauthz.symbolic.regex import Unencodable
from meshauthz.symbolic.space import Space
from meshauthz.symbolic.witness import (
    Confirmer,
    Destination,
    WitnessMismatch,
    default_host,
    guess,
    holds_with,
    method_classes,
    path_is_normal,
    readable_model,
    witness_request,
)

Callers = Literal["any", "workloads"]
# A question the solver has not settled in this time is answered unknown, never guessed.
SOLVER_TIMEOUT_MS = 30_000
# Naming a class's methods is for the reader: a method not settled in this time is named.
NARROW_TIMEOUT_MS = 2_000
MAX_NOT_NORMAL = 64  # witnesses whose path is no normalized path, set aside before giving up


class Change(Struct, frozen=True):
    """A class of requests one side allows and the other denies."""

    destination: Destination
    description: str
    witness: dict[str, Any]
    old: End
    new: End
    # the class's methods among those the deciding rules list (None: not narrowed)
    methods: frozenset[str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.destination.to_json(),
            "description": self.description,
            "witness": self.witness,
            "old": self.old.to_json(),
            "new": self.new.to_json(),
        }


class Unknown(Struct, frozen=True):
    """A destination the engine cannot answer for exactly, and why."""

    destination: Destination
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {**self.destination.to_json(), "reason": self.reason}


class Comparison(Struct):
    opened: list[Change] = field(default_factory=list)
    closed: list[Change] = field(default_factory=list)
    unknown: list[Unknown] = field(default_factory=list)
    compared: int = 0  # workloads (or given destinations) compared

    @property
    def equivalent(self) -> bool:
        return not (self.opened or self.closed or self.unknown)

    def to_json(self) -> dict[str, Any]:
        return {
            "equivalent": self.equivalent,
            "opened": [c.to_json() for c in self.opened],
            "closed": [c.to_json() for c in self.closed],
            "unknown": [u.to_json() for u in self.unknown],
        }


@contextmanager
def short_timeout(solver: z3.Solver, ms: int) -> Iterator[z3.Solver]:
    """``solver`` answering within ``ms`` for a while, then within
    ``SOLVER_TIMEOUT_MS`` again: for the questions whose answer is only a help."""
    solver.set("timeout", ms)
    try:
        yield solver
    finally:
        solver.set("timeout", SOLVER_TIMEOUT_MS)


def question(*formulas: z3.BoolRef) -> z3.Solver:
    """A fresh solver holding ``formulas``, with the engine's timeout (z3 is much
    slower on a question once push/pop have made it incremental)."""
    solver = z3.Solver()
    solver.set("timeout", SOLVER_TIMEOUT_MS)
    solver.add(*formulas)
    return solver


def sat(*formulas: z3.BoolRef) -> bool:
    """Whether ``formulas`` have a model; the solver giving up is ``Unencodable``
    (an unknown answer, never a guess)."""
    solver = question(*formulas)
    verdict = solver.check()
    if verdict == z3.unknown:
        raise Unencodable(f"the solver gave up ({solver.reason_unknown()})")
    return bool(verdict == z3.sat)


def _protocols(snapshot: MeshSnapshot, w: MeshWorkload, port: int) -> set[Transport]:
    listener = inbound_port(snapshot, w, port).listener
    if listener == "http":
        return {"http"}
    if listener == "tcp":
        return {"tcp"}
    return {"http", "tcp"}  # detected from the traffic: both chains exist


def _resource(r: Any) -> tuple[Any, ...]:
    """What an object means for policy: its names, labels, annotations and spec."""
    return (
        r.kind,
        r.namespace,
        r.name,
        sorted(r.labels.items()),
        sorted(r.annotations.items()),
        r.spec,
    )


def _workload(w: MeshWorkload) -> tuple[Any, ...]:
    return (
        w.kind,
        w.name,
        sorted(w.labels.items()),
        w.service_account,
        w.ports,
        w.address,
        w.identity,
        w.proxy,
    )


def changed_namespaces(old: MeshSnapshot, new: MeshSnapshot) -> set[str] | None:
    """The namespaces whose workloads may decide some request differently, or
    None when a mesh-wide input changed (then every workload may). A workload's
    chain is built from the policies of its namespace and the root namespace,
    its own attributes, its Services, the authentication policies and the mesh
    config: a namespace where none of these changed decides every request alike."""
    if (
        old.mesh_config != new.mesh_config
        or old.domain_suffix != new.domain_suffix
        or [_resource(r) for r in old.request_authentications]
        != [_resource(r) for r in new.request_authentications]
        or [_resource(r) for r in old.peer_authentications]
        != [_resource(r) for r in new.peer_authentications]
        or len(old.gateways) + len(new.gateways) > 0
    ):
        return None

    def by_namespace(snap: MeshSnapshot) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for ap in snap.authorization_policies:
            out.setdefault(ap.namespace, []).append(_resource(ap))
        for w in snap.workloads:
            out.setdefault(w.namespace, []).append(_workload(w))
        for svc in snap.services:
            out.setdefault(svc.namespace, []).append(_resource(svc.resource))
        for name, ns in snap.namespaces.items():
            out.setdefault(name, []).append(sorted(ns.labels.items()))
        return out

    a, b = by_namespace(old), by_namespace(new)
    changed = {ns for ns in a.keys() | b.keys() if a.get(ns) != b.get(ns)}
    if old.root_namespace in changed or old.root_namespace != new.root_namespace:
        return None
    return changed


def destinations(
    old: MeshSnapshot, new: MeshSnapshot, *, changed: set[str] | None = None
) -> list[Destination]:
    """Every workload, port and protocol both meshes define, in a stable order;
    with ``changed`` (``changed_namespaces``), only in those namespaces."""
    out: set[Destination] = set()
    new_by_key = {w.key: w for w in new.workloads}
    for wo in old.workloads:
        wn = new_by_key.get(wo.key)
        if wn is None or (changed is not None and wo.namespace not in changed):
            continue
        ports: set[int] = set()
        for snap, w in ((old, wo), (new, wn)):
            ports |= {p.port for p in inbound_ports(snap, w)}
            ports |= {p.container_port for p in w.ports}
        for port in ports:
            for proto in _protocols(old, wo, port) | _protocols(new, wn, port):
                out.add(Destination(wo.key, port, proto))
    return sorted(out, key=lambda d: (d.workload, d.port, d.protocol))


def _same_chain(a: Prepared, b: Prepared) -> bool:
    """Both destinations decide every request alike for a reason visible in
    their configuration: the same filters (notes aside), mTLS mode, path options,
    JWT filter and destination address."""
    return (
        [(s.built.stage, s.built.filter) for s in (*a.custom, *a.rest)]
        == [(s.built.stage, s.built.filter) for s in (*b.custom, *b.rest)]
        and a.mtls_mode == b.mtls_mode
        and a.path_options == b.path_options
        and a.jwt == b.jwt
        and a.workload.address == b.workload.address
        and a.header_settings == b.header_settings
        and a.runtime == b.runtime
    )


def unenforced(p: Prepared) -> SymbolicChain:
    """The chain of a destination without a sidecar (nor ztunnel): none runs, so
    ``check`` allows every request at the "no sidecar" stage."""
    return SymbolicChain(p, [(z3.BoolVal(True), End("ALLOW", Stage.NO_SIDECAR))])


def _rbac_nodes(p: Prepared) -> Iterator[Any]:
    """Every permission and principal of the RBAC policies ``p``'s filters
    enforce or shadow."""
    for policy in chain_policies([p]):
        yield from policy.permissions
        yield from policy.principals


def _reads_destination_ip(node: Any) -> bool:
    match node:
        case PermDestinationIp():
            return True
        case PermAnd(rules=subs) | PermOr(rules=subs):
            return any(_reads_destination_ip(n) for n in subs)
        case PermNot(rule=sub):
            return _reads_destination_ip(sub)
    return False


def chain_shape(p: Prepared) -> tuple[Any, ...]:
    """What the encoding and the ends of ``p``'s chain are made of, the
    destination workload aside: two destinations of one shape (replicas, pods of
    one app) have the same formulas over the same space. The workload's address
    counts only where a filter reads it, the Host only where one reads it."""
    stages = [*p.custom, *p.rest]
    reads_ip = reads_host = False

    def header(h: HeaderMatcher) -> None:
        nonlocal reads_host
        reads_host = reads_host or h.name.lower() == ":authority"

    for node in _rbac_nodes(p):
        reads_ip = reads_ip or _reads_destination_ip(node)  # False for a principal
        header_matchers(node, header)
    return (
        [(s.built.stage, s.built.filter, s.built.sources, s.built.provider) for s in stages],
        [s.policy.key for s in p.selected],
        p.mtls_mode,
        p.path_options,
        p.jwt,
        p.header_settings,
        p.runtime,
        p.empty_rules,
        p.not_evaluated,
        p.not_evaluated_before,
        p.peer_filter_state,
        p.principal_prefix,
        p.workload.address if reads_ip else None,
        reads_host,
    )


_Answer = TypeVar("_Answer")


class ByShape(Generic[_Answer]):
    """Answers kept by chain shape (``chain_shape``), found by equality: a
    shape holds the filters, which are not hashable."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[tuple[tuple[Any, ...], _Answer]] = []

    def get(self, shape: tuple[Any, ...]) -> _Answer | None:
        return next((answer for key, answer in self._items if key == shape), None)

    def add(self, shape: tuple[Any, ...], answer: _Answer) -> None:
        self._items.append((shape, answer))


def build_space(http: bool, prepared: Iterable[Prepared]) -> Space:
    """The request variables for chains ``prepared`` (raises ``Unencodable``)."""
    prepared = list(prepared)
    space = Space(http)
    if not http:
        return space
    matchers: dict[str, set[HeaderMatcher]] = {}

    def add(h: HeaderMatcher) -> None:
        matchers.setdefault(h.name.lower(), set()).add(h)

    for p in prepared:
        for node in _rbac_nodes(p):
            header_matchers(node, add)
    for name, ms in sorted(matchers.items()):
        space.add_header(name, sum(1 for m in ms if m.kind != "present"))
    written = (
        m.string.value if m.string is not None else m.value for m in matchers.get(":authority", ())
    )
    space.hosts_named = sorted({v for v in written if v})
    add_jwt_space(space, prepared)
    return space


def _callers_constraint(
    space: Space, old: MeshSnapshot, new: MeshSnapshot
) -> tuple[z3.BoolRef, dict[tuple[str, int, bool], str]]:
    """Callers limited to the workloads both meshes define alike (identity and
    address): the constraint, and each caller's (principal, address) -> key."""
    import ipaddress

    new_by_key = {w.key: w for w in new.workloads}
    options = []
    keys: dict[tuple[str, int, bool], str] = {}
    for w in old.workloads:
        other = new_by_key.get(w.key)
        if other is None or w.synthetic:
            continue
        if (other.identity.principal, other.address) != (w.identity.principal, w.address):
            continue
        # a workload neither a sidecar nor ztunnel carries sends plaintext (as
        # `check` resolves it); one that changes this between the sides is left out
        outside = [enrollment(snap, x).mode == "none" for snap, x in ((old, w), (new, other))]
        if outside[0] != outside[1]:
            continue
        ip = ipaddress.ip_address(w.address)
        v6 = ip.version == 6
        principal = "" if outside[0] else w.identity.principal
        options.append(
            z3.And(
                space.plaintext if outside[0] else z3.Not(space.plaintext),
                space.use("principal") == z3.StringVal(principal),
                space.src == z3.BitVecVal(int(ip), 128),
                space.src_v6 == z3.BoolVal(v6),
                space.remote == space.src,
                space.remote_v6 == space.src_v6,
            )
        )
        keys[(principal, int(ip), v6)] = w.key
    return (z3.Or(*options) if options else z3.BoolVal(False)), keys


Policies = Mapping[str, AuthorizationPolicy]  # by "namespace/name"


def describe(
    dest: Destination,
    sides: Iterable[tuple[Policies, End, LeftOut]],
    methods: Collection[str] | None = None,
) -> str:
    """A class of changed requests in the user's terms: what each of its
    requests meets (the deciding rules' matches on each side as their chains
    match, naming of the methods they list only ``methods``), and where to;
    the change's ``old`` and ``new`` name those rules, its witness is one such
    request."""
    conditions = change_conditions(sides, dest.protocol == "http", methods)
    return f"{conditions} to {dest.workload}:{dest.port}"


class Comparer:
    """Compares two meshes (or one mesh with itself under two ext_authz assumptions)."""

    def __init__(
        self,
        old: MeshSnapshot,
        new: MeshSnapshot,
        *,
        callers: Callers = "any",
        ext_authz: ExtAuthzAssumption = "deny",
        max_classes: int = 8,
    ) -> None:
        self.old, self.new = old, new
        self.callers = callers
        self.ext_authz = ext_authz
        self.max_classes = max_classes
        self.deciders = (
            Decider(old, ext_authz=self.ext_authz),
            Decider(new, ext_authz=self.ext_authz),
        )
        self.confirmers = (
            Confirmer(old, ext_authz, self.deciders[0]),
            Confirmer(new, ext_authz, self.deciders[1]),
        )
        self.policies: tuple[Policies, Policies] = (
            {ap.key: ap for ap in old.authorization_policies},
            {ap.key: ap for ap in new.authorization_policies},
        )
        # per destination, what each side's chain left out of its rules
        self._left_out: dict[Destination, tuple[LeftOut, LeftOut]] = {}
        self._inputs: dict[str, bool] = {}
        self._seeds: list[z3.ModelRef] = []
        self._encoded = 0  # destinations whose chains were encoded and asked about
        # the answers of the one question so far (see ``destination``)
        self._unchanged = self._changed = 0
        # (shape, the changes found for a destination of that shape)
        self._shapes: ByShape[tuple[list[Change], list[Change]]] = ByShape()
        # mesh-wide inputs (mesh config, authentication policies) the same on both sides
        self.changed = changed_namespaces(old, new)
        self.same_mesh_inputs = self.changed is not None
        self.request_authentications = bool(
            old.request_authentications or new.request_authentications
        )

    def compare(self, only: list[Destination] | None = None) -> Comparison:
        result = Comparison()
        if only is None:
            new_keys = {w.key for w in self.new.workloads}
            result.compared = sum(1 for w in self.old.workloads if w.key in new_keys)
            only = destinations(self.old, self.new, changed=self.changed)
        else:
            result.compared = len(only)
        for dest in only:
            try:
                self.destination(dest, result)
            except Unencodable as e:
                result.unknown.append(Unknown(dest, str(e)))
        return result

    def change(
        self,
        dest: Destination,
        witness: dict[str, Any],
        old: End,
        new: End,
        methods: frozenset[str] | None = None,
    ) -> Change:
        left_out = self._left_out.get(dest, ({}, {}))
        sides = ((self.policies[0], old, left_out[0]), (self.policies[1], new, left_out[1]))
        return Change(dest, describe(dest, sides, methods), witness, old, new, methods)

    def class_methods(
        self,
        solver: z3.Solver,
        space: Space,
        chains: tuple[SymbolicChain, SymbolicChain],
        ends: tuple[End, End],
        model: z3.ModelRef,
    ) -> frozenset[str] | None:
        """Which of the methods the deciding rules list some request of the
        class has (the solver holds the question): a rule that allows GET and
        POST where only POST changed is described by POST. ``model``'s request
        (the witness) with another method is tried first, by evaluation; a
        method the solver cannot settle in time counts as in the class."""
        rules = [end_rule(p, e) for p, e in zip(self.policies, ends, strict=True)]
        listed = listed_methods(r for r in rules if r is not None)
        if not listed or "method" not in space.used:
            return None
        conds = [chains[0].cond_of(ends[0]), chains[1].cond_of(ends[1])]
        whole = z3.And(*solver.assertions(), *conds)

        def in_class(m: str) -> bool:
            value = z3.StringVal(m)
            if holds_with(model, whole, [(space.method, value)]):
                return True
            return bool(solver.check(*conds, space.method == value) != z3.unsat)

        with short_timeout(solver, NARROW_TIMEOUT_MS):
            return frozenset(m for m in listed if in_class(m))

    def _prepare(self, i: int, dest: Destination) -> Prepared:
        snap = (self.old, self.new)[i]
        proto: Transport = "http" if dest.protocol == "http" else "tcp"
        return self.deciders[i].prepare(snap.workload(dest.workload), dest.port, proto)

    def _same_inputs(self, key: str) -> bool:
        """Whether a workload's chains are built from the same inputs on both
        sides (its attributes, the policies selected for it, their content), so
        that they are the same chains: the common case, told without building."""
        hit = self._inputs.get(key)
        if hit is None:
            fingerprints = []
            for snap in (self.old, self.new):
                w = snap.workload(key)
                fingerprints.append(
                    (
                        _workload(w),
                        [_resource(s.policy) for s in select_policies(snap, w)],
                        [
                            _resource(s.policy)
                            for s in select_policies(snap, w, "RequestAuthentication")
                        ]
                        if self.request_authentications
                        else [],
                    )
                )
            hit = self._inputs[key] = fingerprints[0] == fingerprints[1]
        return hit

    def destination(self, dest: Destination, result: Comparison) -> None:
        modes = [
            enrollment(snap, snap.workload(dest.workload)).mode for snap in (self.old, self.new)
        ]
        if modes == ["none", "none"]:
            return  # nothing enforces on either side: every request reaches the app
        for side, mode in zip(("old", "new"), modes, strict=True):
            if mode == "ambient":
                raise Unencodable(
                    f"{dest.workload} is in ambient mode on the {side} side (ztunnel and "
                    "waypoints enforce): the symbolic engine models sidecar and gateway proxies"
                )
        enforced = [mode != "none" for mode in modes]
        if (
            all(enforced)
            and self.same_mesh_inputs
            and self._same_inputs(dest.workload)
            and listener_mtls_mode(self.old, self.old.workload(dest.workload), dest.port)
            == listener_mtls_mode(self.new, self.new.workload(dest.workload), dest.port)
        ):
            return
        po, pn = self._prepare(0, dest), self._prepare(1, dest)
        if all(enforced) and _same_chain(po, pn):
            return
        self._left_out[dest] = (
            left_out_fields(po.build.problems),
            left_out_fields(pn.build.problems),
        )
        http = dest.protocol == "http"
        self._seeds = []  # the requests found at this destination, both questions
        shapes = (chain_shape(po), chain_shape(pn))
        shape = (
            tuple(enforced),
            dest.port,
            dest.protocol,
            shapes,
            # a witness names the Host only where a filter reads it
            tuple(default_host(snap, dest.workload) for snap in (self.old, self.new))
            if http and (shapes[0][-1] or shapes[1][-1])
            else None,
        )
        found = self._shapes.get(shape)
        if found is not None:
            reused = self._reuse(dest, found)
            if reused is not None:
                result.opened.extend(reused[0])
                result.closed.extend(reused[1])
                return
        # the chains that run: a side without a sidecar has none
        sides = ((po, enforced[0]), (pn, enforced[1]))
        running = [p for p, on in sides if on]
        for p in running:
            if http and p.path_options.unmodelled():
                raise Unencodable(str(p.path_options.unmodelled()))
        space = build_space(http, running)
        keys: dict[tuple[str, int, bool], str] | None = None
        if self.callers == "workloads":
            constraint, keys = _callers_constraint(space, self.old, self.new)
            space.extra.append(constraint)
        co, cn = (
            encode_chain(p, space, self.ext_authz) if on else unenforced(p) for p, on in sides
        )
        domain = space.domain()
        self._encoded += 1
        if self._encoded > 1 and 4 * self._changed <= self._unchanged:
            # A change that reaches many destinations' chains (a mesh-wide or
            # namespace-wide policy) mostly changes no decision: one question then
            # answers both directions where it is unsatisfiable, and a request it
            # finds starts the search of the two below. Where it is satisfiable it
            # costs more than either direction, so it is asked only while at least
            # four in five of its answers have been "no change", and not at the
            # first destination: a change to one workload's policies reaches one.
            either = question(domain, z3.Xor(co.allowed, cn.allowed))
            verdict = either.check()
            if verdict == z3.unsat:
                self._unchanged += 1
                self._shapes.add(shape, ([], []))
                return
            if verdict == z3.sat:
                self._changed += 1
                self._seeds.append(either.model())
        answered: list[list[Change]] = []
        for opened in (True, False):
            asked = (
                z3.And(z3.Not(co.allowed), cn.allowed)
                if opened
                else z3.And(co.allowed, z3.Not(cn.allowed))
            )
            solver = question(domain, asked)
            changes = self.classes(solver, space, dest, running, (co, cn), keys)
            (result.opened if opened else result.closed).extend(changes)
            answered.append(changes)
        self._shapes.add(shape, (answered[0], answered[1]))

    def _reuse(
        self, dest: Destination, changes: tuple[list[Change], list[Change]]
    ) -> tuple[list[Change], list[Change]] | None:
        """The changes of a destination of the same shape, their witnesses sent
        to ``dest`` and confirmed there on both sides; None when one is decided
        otherwise (then ``dest`` is asked afresh)."""
        out: tuple[list[Change], list[Change]] = ([], [])
        for found, into in zip(changes, out, strict=True):
            for c in found:
                witness = {**c.witness, "to": dest.workload}
                try:
                    self.confirmers[0].confirm(witness, c.old)
                    self.confirmers[1].confirm(witness, c.new)
                except WitnessMismatch:
                    return None
                into.append(self.change(dest, witness, c.old, c.new, c.methods))
        return out

    def classes(
        self,
        solver: z3.Solver,
        space: Space,
        dest: Destination,
        prepared: list[Prepared],
        chains: tuple[SymbolicChain, SymbolicChain],
        keys: dict[tuple[str, int, bool], str] | None,
    ) -> list[Change]:
        out: list[Change] = []
        hosts = {default_host(snap, dest.workload) for snap in (self.old, self.new)}
        host = hosts.pop() if len(hosts) == 1 else None
        not_normal = 0
        methods = method_classes(prepared) if "path" in space.used else []
        while len(out) < self.max_classes:
            # a path makes the solver's search slow: first the requests found so far
            found = guess(solver, space, self._seeds, methods) if methods else None
            if found is None:
                verdict = solver.check()
                if verdict == z3.unknown:
                    raise Unencodable(f"the solver gave up ({solver.reason_unknown()})")
                if verdict == z3.unsat:
                    break
            model = readable_model(solver, space, host, SOLVER_TIMEOUT_MS, found)
            self._seeds.append(model)
            path = model.eval(space.path, model_completion=True).as_string()
            if "path" in space.used and not all(path_is_normal(p, path) for p in prepared):
                not_normal += 1
                if not_normal > MAX_NOT_NORMAL:
                    raise Unencodable("too many candidate paths that are not normalized paths")
                solver.add(space.path != z3.StringVal(path))
                continue
            caller = None
            if keys is not None:
                principal = model.eval(space.principal, model_completion=True).as_string()
                src = model.eval(space.src, model_completion=True).as_long()
                v6 = z3.is_true(model.eval(space.src_v6, model_completion=True))
                caller = keys[(principal, src, v6)]
            witness = witness_request(model, space, dest, caller, host)
            old_end, new_end = chains[0].end_in(model), chains[1].end_in(model)
            self.confirmers[0].confirm(witness, old_end)
            self.confirmers[1].confirm(witness, new_end)
            named = self.class_methods(solver, space, chains, (old_end, new_end), model)
            out.append(self.change(dest, witness, old_end, new_end, named))
            solver.add(z3.Not(z3.And(chains[0].cond_of(old_end), chains[1].cond_of(new_end))))
        return out


def compare_meshes(
    old: MeshSnapshot,
    new: MeshSnapshot,
    *,
    callers: Callers = "any",
    ext_authz: ExtAuthzAssumption = "deny",
    max_classes: int = 8,
) -> Comparison:
    """Every request to every destination both meshes define, decided on both sides."""
    return Comparer(
        old, new, callers=callers, ext_authz=ext_authz, max_classes=max_classes
    ).compare()


__all__ = [
    "Callers",
    "Change",
    "Comparer",
    "Comparison",
    "Unknown",
    "build_space",
    "compare_meshes",
    "describe",
    "destinations",
    "unenforced",
]
