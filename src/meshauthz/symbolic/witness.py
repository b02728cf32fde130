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

import re
import time
from collections.abc import Iterable
from typing import Any

import z3
from msgspec import Struct

from meshauthz.decide.decision import Decision
from meshauthz.decide.engine import Decider, Prepared
from meshauthz.decide.request import DEFAULT_SOURCE_IP, resolve
from meshauthz.decide.request_spec import request_from_data
from meshauthz.decide.runner import ExtAuthzAssumption
from meshauthz.envoy.hcm import HcmConfigError, normalize_path
from meshauthz.envoy.rbac.evaluate import RbacInput
from meshauthz.envoy.rbac.matchers import compile_header
from meshauthz.envoy.rbac.model import HeaderMatcher
from meshauthz.mesh import MeshSnapshot
from meshauthz.symbolic.chain import End
from meshauthz.symbolic.jwt import chain_policies, witness_token
from meshauthz.symbolic.jwt import wishes as jwt_wishes
from meshauthz.symbolic.matchers import header_matchers
from meshauthz.symbolic.space import METHODS, Space, ip_value, model_ip

# The caller's identity in a witness when no matcher reads it.
ANY_PRINCIPAL = "cluster.local/ns/default/sa/default"


class WitnessMismatch(AssertionError):
    """The concrete decision of a witness is not the one the engine derived (a bug)."""


class Destination(Struct, frozen=True):
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
    src = model_ip(model, space.src_v6, space.src)
    remote = model_ip(model, space.remote_v6, space.remote)
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


# The methods a reader expects, most familiar first.
FAMILIAR_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
# What a readable witness may cost the solver in all: the model found is a
# witness already, and its looks are not worth a wait.
WISH_BUDGET_MS = 500
_PLAIN_PATH = re.compile(r"(/[A-Za-z0-9_-]*)+")


def _plain_path(path: z3.SeqRef) -> z3.BoolRef:
    """A path every normalization leaves as it is: letters, digits, "-", "_" and
    single slashes (``_PLAIN_PATH``)."""
    plain = z3.Union(
        z3.Range("a", "z"), z3.Range("A", "Z"), z3.Range("0", "9"), z3.Re("-"), z3.Re("_")
    )
    segment = z3.Concat(z3.Re("/"), z3.Star(plain))
    return z3.InRe(path, z3.Plus(segment))


def string_constants(formulas: Iterable[z3.ExprRef], limit: int = 256) -> list[str]:
    """The string constants of ``formulas`` (the policies' own paths, hosts, ...),
    in the order met."""
    out: dict[str, None] = {}
    todo, seen = list(reversed(list(formulas))), set()
    while todo and len(out) < limit:
        e = todo.pop()
        if e.get_id() in seen:
            continue
        seen.add(e.get_id())
        if z3.is_string_value(e):
            out[e.as_string()] = None
        todo.extend(reversed(e.children()))
    return list(out)


def _plain_paths(solver: z3.Solver, limit: int = 16) -> list[str]:
    """Plain paths the policies name (a prefix or exact path as written, a suffix
    after "/"): the likeliest readable paths, cheap to try."""
    out: dict[str, None] = {}
    for s in string_constants(solver.assertions()):
        p = s if s.startswith("/") else "/" + s
        if _PLAIN_PATH.fullmatch(p):
            out[p] = None
    return list(out)[:limit]


_PLAIN_HOST = re.compile(
    r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+(:[0-9]+)?"
)


def _plain_hosts(space: Space, limit: int = 8) -> list[str]:
    """Host names the policies write, lower case (a name and maybe a port)."""
    return [h for h in space.hosts_named if _PLAIN_HOST.fullmatch(h)][:limit]


class _Wisher:
    """Checks of the solver's constraints with wishes assumed, within one budget."""

    def __init__(self, solver: z3.Solver, budget_ms: int, model: z3.ModelRef) -> None:
        self.solver = solver
        self.deadline = time.monotonic() + budget_ms / 1000
        self.model = model
        self.out_of_time = False

    def fits(self, *wishes: z3.BoolRef) -> bool:
        left = int((self.deadline - time.monotonic()) * 1000)
        if left <= 0:
            self.out_of_time = True
            return False
        self.solver.set("timeout", left)
        if self.solver.check(*wishes) != z3.sat:
            return False
        self.model = self.solver.model()
        return True


Assignment = list[tuple[z3.ExprRef, z3.ExprRef]]


def _changed(model: z3.ModelRef, changes: Assignment) -> z3.ModelRef:
    """A copy of ``model`` with ``changes`` made to it (``model`` stays as it is)."""
    ctx = model.ctx
    out = z3.ModelRef(z3.Z3_mk_model(ctx.ref()), ctx)
    for d in model.decls():
        out.update_value(d, model[d])
    for var, value in changes:
        out.update_value(var, value)
    return out


def _true_of(model: z3.ModelRef, formula: z3.BoolRef) -> bool:
    return bool(z3.is_true(model.eval(formula, model_completion=True)))


class _Candidate:
    """A concrete request (a model) changed one wish at a time, each change
    kept only if the solver's constraints still evaluate to true: no search."""

    def __init__(self, solver: z3.Solver, model: z3.ModelRef | None = None) -> None:
        self.formula = z3.And(*solver.assertions())
        self.model = _changed(solver.model() if model is None else model, [])

    def value(self, e: z3.ExprRef) -> z3.ExprRef:
        return self.model.eval(e, model_completion=True)

    def fits(self, changes: Assignment) -> bool:
        trial = _changed(self.model, changes)
        if not _true_of(trial, self.formula):
            return False
        self.model = trial
        return True


def holds_with(model: z3.ModelRef, formula: z3.BoolRef, changes: Assignment) -> bool:
    """Whether ``formula`` is true of ``model``'s request with ``changes`` made
    to it, by evaluation alone."""
    return _true_of(_changed(model, changes), formula)


def method_classes(prepared: Iterable[Prepared]) -> list[str]:
    """One method of each class of methods no ``:method`` matcher of the chains
    tells apart (the familiar ones first)."""
    fns = []

    def add(h: HeaderMatcher) -> None:
        if h.name.lower() == ":method":
            fns.append(compile_header(h))

    for policy in chain_policies(prepared):
        for node in (*policy.permissions, *policy.principals):
            header_matchers(node, add)
    out: dict[tuple[bool, ...], str] = {}
    for m in (*FAMILIAR_METHODS, *METHODS):
        inp = RbacInput(headers=((":method", m),))
        out.setdefault(tuple(fn(inp) for fn in fns), m)
    return list(out.values())


def guess(
    solver: z3.Solver, space: Space, seeds: list[z3.ModelRef], methods: list[str]
) -> z3.ModelRef | None:
    """A model of the solver's constraints among the requests found before (the
    latest first), as they are or with another of ``methods``, by evaluation
    alone; None when none is one. The next class of a comparison often differs
    from the last only in its method, and evaluating is far cheaper than a search
    over paths."""
    for seed in reversed(seeds[-4:]):
        c = _Candidate(solver, seed)
        if c.fits([]):
            return c.model
        if space.http and any(c.fits([(space.method, z3.StringVal(m))]) for m in methods):
            return c.model
    return None


def _evaluated_wishes(
    solver: z3.Solver,
    space: Space,
    host: str | None,
    default_src: z3.BitVecNumRef,
    model: z3.ModelRef | None,
) -> tuple[z3.ModelRef, bool]:
    """``readable_model``'s wishes granted one by one on the solver's model (or
    ``model``) by evaluation alone: the model, and whether every wish was granted."""
    c = _Candidate(solver, model)
    granted = True

    def wish(*alternatives: Assignment) -> None:
        nonlocal granted
        if not any(c.fits(a) for a in alternatives):
            granted = False

    wish([(space.src_v6, z3.BoolVal(False)), (space.src, default_src)])
    wish([(space.remote_v6, c.value(space.src_v6)), (space.remote, c.value(space.src))])
    if "sni" in space.used:
        wish([(space.sni, z3.StringVal(""))])
    if space.http:
        wish(*[[(space.method, z3.StringVal(m))] for m in FAMILIAR_METHODS])
        if "path" in space.used and not _PLAIN_PATH.fullmatch(_string(c.model, space.path)):
            wish(*[[(space.path, z3.StringVal(p))] for p in [*_plain_paths(solver), "/"]])
        if "host" in space.used:
            hosts = [host] if host is not None else []
            wish(*[[(space.host, z3.StringVal(h))] for h in [*hosts, *_plain_hosts(space)]])
        for h in space.headers.values():
            for sent in h.sent:
                wish([(sent, z3.BoolVal(False))])
    return c.model, granted


def readable_model(
    solver: z3.Solver,
    space: Space,
    host: str | None,
    timeout_ms: int,
    model: z3.ModelRef | None = None,
) -> z3.ModelRef:
    """A model of the solver's constraints (just checked sat) with the values a
    reader expects wherever they fit, in this order: the default caller address,
    no X-Forwarded-For, no SNI, a familiar method (GET first), a path of plain
    characters (the policies' own plain paths first), the destination's usual
    Host and no extra headers.

    The wishes are first granted on the solver's model by evaluating the
    constraints (the usual case, without any search); only a wish that needs
    several values changed at once asks the solver, with each wish an equality
    it settles by propagation (a path among the policies' own plain paths before
    any regex), all of them within ``WISH_BUDGET_MS``. ``timeout_ms``: the
    solver's own time limit, restored afterwards. ``model``: a model of the
    constraints to start from (by default the solver's)."""
    default_src = ip_value(DEFAULT_SOURCE_IP)[0]
    evaluated, granted = _evaluated_wishes(solver, space, host, default_src, model)
    if granted:
        return evaluated
    # each wish: the alternatives, most wished first; the first that fits is kept
    groups: list[list[z3.BoolRef]] = [
        [z3.And(z3.Not(space.src_v6), space.src == default_src)],
        [z3.And(space.remote_v6 == space.src_v6, space.remote == space.src)],
        [space.sni == z3.StringVal("")],
    ]
    path = "path" in space.used
    tail: list[list[z3.BoolRef]] = []
    if space.http:
        groups.append([space.method == z3.StringVal(m) for m in FAMILIAR_METHODS])
        if "host" in space.used:
            hosts = [*([host] if host is not None else []), *_plain_hosts(space)]
            if hosts:
                tail.append([space.host == z3.StringVal(h) for h in hosts])
        tail.extend([z3.Not(sent)] for h in space.headers.values() for sent in h.sent)
        if space.jwt is not None:
            tail.extend([wish] for wish in jwt_wishes(space.jwt))
    w = _Wisher(solver, WISH_BUDGET_MS, evaluated)
    try:
        firsts = [g[0] for g in groups + tail]
        if w.fits(*firsts) and (not path or _PLAIN_PATH.fullmatch(_string(w.model, space.path))):
            return w.model
        kept: list[z3.BoolRef] = []
        for group in groups:
            if len(group) > 1 and not w.fits(*kept, z3.Or(*group)):
                continue  # none of them fits: no need to try each
            kept.extend(next(([alt] for alt in group if w.fits(*kept, alt)), []))
        if path:
            current = _string(w.model, space.path)
            if _PLAIN_PATH.fullmatch(current):
                kept.append(space.path == z3.StringVal(current))
            else:
                tries = [space.path == z3.StringVal(p) for p in _plain_paths(solver)]
                if tries and w.fits(*kept, z3.Or(*tries)):
                    kept.extend(next(([t] for t in tries if w.fits(*kept, t)), []))
                elif w.fits(*kept, _plain_path(space.path)):
                    kept.append(_plain_path(space.path))
        for group in tail:
            kept.extend(next(([alt] for alt in group if w.fits(*kept, alt)), []))
        # out of time: the evaluated model, which does not depend on the machine's load
        return evaluated if w.out_of_time else w.model
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

    def __init__(
        self,
        snapshot: MeshSnapshot,
        ext_authz: ExtAuthzAssumption = "deny",
        decider: Decider | None = None,
    ) -> None:
        """``decider``: one of ``snapshot`` with ``ext_authz`` to share (its
        destinations prepared once for the formulas and the witnesses)."""
        self.snapshot = snapshot
        self.decider = Decider(snapshot, ext_authz=ext_authz) if decider is None else decider

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
    "FAMILIAR_METHODS",
    "Confirmer",
    "Destination",
    "WitnessMismatch",
    "default_host",
    "guess",
    "method_classes",
    "path_is_normal",
    "readable_model",
    "string_constants",
    "witness_request",
]
