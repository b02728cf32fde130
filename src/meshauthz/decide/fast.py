"""The fast decision path: a request prepared once, decided many times.

``Decider.decide`` builds, for every call, the RBAC input, the header list,
the metadata, a ``Decision`` with its reason and summary: tens of
microseconds. When the same request is decided again and again (benchmarks,
a test suite's matrix, a simulation over a request log), that work can be done
once:

    pr = decider.prepare_request(request)   # parse once: a PreparedRequest
    d = decider.decide_prepared(pr)          # FastDecision(verdict, stage, policy, rule)
    full = decider.decide_prepared(pr, trace=True)  # the full Decision, with its trace

``prepare_request`` does everything that depends only on the request and the
destination: it looks up the destination's prepared chain, applies mTLS (a
plaintext caller of a STRICT port is refused before any filter) and path
normalization (a rejected path is refused), builds the RBAC input (headers
and addresses parsed, the path stripped of its query) and reads from it the
few values the chain looks at (the path, a header's value, the peer's URI
SAN), interned. What is left for ``decide_prepared`` is running the
destination's chain, compiled once per destination and port
(``compile_chain``): for the chains istiod builds without CUSTOM and JWT,
one generated function that tries the DENY filters' policies, then the ALLOW
filter's, each an ``if`` on a Python expression
(``meshauthz.envoy.rbac.evaluate.PythonEmitter``), and returns a decision built in
advance. The verdict, stage, policy and rule are those ``decide`` gives
(tests/decide/test_fast.py compares both on random requests).

A chain the generated function does not cover (CUSTOM providers, a
RequestAuthentication's JWT filter, matchers that read what earlier filters
write, filters out of istiod's order) falls back to ``decide`` and takes its
answer: always the same result, just not faster.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from meshauthz.decide.request import Request
from meshauthz.envoy.hcm import check_method, normalize_path, remote_address
from meshauthz.envoy.rbac.evaluate import PeerCertificate, PythonEmitter, RbacInput
from meshauthz.envoy.rbac.model import (
    Action,
    IdAnd,
    IdMetadata,
    IdNot,
    IdOr,
    PermAnd,
    PermMetadata,
    PermNot,
    PermOr,
    Policy,
)
from meshauthz.envoy.request_headers import Downstream, request_headers
from meshauthz.translate.hcm_headers import header_settings

if TYPE_CHECKING:
    from meshauthz.decide.engine import Decider, Prepared


class FastDecision(NamedTuple):
    """The outcome of a decision without its explanation (compare ``Decision``)."""

    verdict: str  # "ALLOW" | "DENY"
    stage: str  # mTLS, normalization, CUSTOM, JWT, DENY, ALLOW, default, error
    policy: str | None = None  # "namespace/name"
    rule: int | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict == "ALLOW"


DEFAULT_ALLOW = FastDecision("ALLOW", "default")
NO_ALLOW_MATCHED = FastDecision("DENY", "ALLOW")
MTLS_REFUSED = FastDecision("DENY", "mTLS")
PATH_REJECTED = FastDecision("DENY", "normalization")
ERROR = FastDecision("DENY", "error")

RunFn = Callable[[Any], FastDecision]


class PreparedRequest:
    """A request with its per-request work done: ``run(args)`` decides it.

    ``args`` is what the destination's chain reads (a tuple of values read
    from ``inp``, or ``inp`` itself); ``inp`` is the RBAC input, None when the
    decision was settled before any filter or is left to ``decide``."""

    __slots__ = ("args", "inp", "request", "run")

    def __init__(self, request: Request, run: RunFn, args: Any, inp: RbacInput | None) -> None:
        self.request = request
        self.run = run
        self.args = args
        self.inp = inp

    def __repr__(self) -> str:
        r = self.request
        return f"PreparedRequest({r.method} {r.path} to {r.destination.key}:{r.port})"


class FastChain(NamedTuple):
    """A destination's compiled chain: ``run(extract(inp))`` decides."""

    run: RunFn
    extract: Callable[[RbacInput], Any] | None  # None: run takes the RbacInput
    source: str = ""  # the generated code, for whoever wonders what runs


# --- compiling a destination's chain ------------------------------------------------------

_WRITTEN_BY_FILTERS = ("envoy.filters.http.rbac", "envoy.filters.network.rbac", "envoy.common")


def _reads_filter_metadata(node: Any) -> bool:
    """Whether a permission or principal reads metadata that RBAC filters write."""
    match node:
        case PermAnd(rules=subs) | PermOr(rules=subs) | IdAnd(ids=subs) | IdOr(ids=subs):
            return any(_reads_filter_metadata(s) for s in subs)
        case PermNot(rule=sub) | IdNot(id=sub):
            return _reads_filter_metadata(sub)
        case PermMetadata(metadata=m) | IdMetadata(metadata=m):
            return m.filter in _WRITTEN_BY_FILTERS
    return False


_Check = tuple[str, Callable[[RbacInput], bool], Policy, FastDecision]


def compile_chain(prepared: Prepared) -> FastChain | None:
    """The destination's RBAC filters as one function, or None when the chain
    needs the general engine (see the module docstring).

    It mirrors ``_Run.run`` in engine.py for the chains it accepts: filters
    with shadow rules only never decide; AUDIT (LOG) never denies; a DENY
    filter denies with its first matching policy, in Envoy's order; then the
    ALLOW filter allows with its first matching policy or denies with none."""
    if prepared.custom or (prepared.protocol == "http" and prepared.jwt_providers):
        return None
    deny: list[_Check] = []
    allow: list[_Check] | None = None
    for stage in prepared.rest:
        if stage.compiled is None:
            return None
        engine = stage.compiled.engine
        if engine is None:  # shadow (dry-run) rules only: they never decide
            continue
        policies = dict(engine.rbac.policies)
        for policy in policies.values():
            if any(_reads_filter_metadata(n) for n in (*policy.permissions, *policy.principals)):
                return None
        bf = stage.built

        def outcome(verdict: str, name: str, bf: Any = bf) -> FastDecision:
            src = bf.sources.get(name)
            return FastDecision(verdict, bf.stage, *(src[:2] if src else (None, None)))

        if allow is not None:  # something after the ALLOW filter: not istiod's order
            return None
        if engine.action is Action.LOG:
            continue  # AUDIT: marks the request, never denies
        if engine.action is Action.DENY and bf.stage != "ALLOW":
            deny.extend((n, fn, policies[n], outcome("DENY", n)) for n, fn in engine.matchers)
        elif engine.action is Action.ALLOW and bf.stage == "ALLOW":
            allow = [(n, fn, policies[n], outcome("ALLOW", n)) for n, fn in engine.matchers]
        else:
            return None
    try:
        return _generated(deny, allow, f"{prepared.workload.key}:{prepared.port}")
    except (SyntaxError, RecursionError, MemoryError, ValueError):  # too deep for Python
        return FastChain(_closures(deny, allow), None)


def _generated(deny: list[_Check], allow: list[_Check] | None, where: str) -> FastChain:
    """The chain as generated code: ``extract(inp)`` reads the values the
    policies look at (done by prepare_request), ``run(values)`` tries the
    policies in order, each an ``if`` on an expression, and returns an
    outcome built in advance."""
    em = PythonEmitter()
    checks: list[str] = []
    for name, _, policy, outcome in [*deny, *(allow or ())]:
        checks.append(f"    # {name}")
        checks.append(f"    if {em.policy(policy)}:")
        checks.append(f"        return {em.constant(outcome)}")
    final = DEFAULT_ALLOW if allow is None else NO_ALLOW_MATCHED
    checks.append(f"    return {em.constant(final)}")
    consts = em.constants()
    text = "\n".join(checks)
    used = sorted(set(re.findall(r"\bv\d+\b", text)), key=lambda v: int(v[1:]))
    if re.search(r"\binp\b", text):  # a compiled closure's call: it takes the input
        used.append("inp")
    values = "".join(f"{v}, " for v in used)
    source = "\n".join(
        [
            f"def make({', '.join(consts)}):",
            "  def extract(inp):",
            *(f"    {line}" for line in em.prologue()),
            f"    return ({values})",
            "  def run(values):",
            *([f"    {values} = values"] if used else []),
            *checks,
            "  return run, extract",
            "",
        ]
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<meshauthz chain {where}>", "exec"), namespace)
    run, extract = namespace["make"](**consts)
    return FastChain(run, extract, source)


def _closures(deny: list[_Check], allow: list[_Check] | None) -> RunFn:
    """The chain over the compiled closures (for a chain too deep to generate)."""
    d = tuple((fn, o) for _, fn, _, o in deny)
    a = tuple((fn, o) for _, fn, _, o in allow) if allow is not None else None

    def run(inp: RbacInput) -> FastDecision:
        for matches, outcome in d:
            if matches(inp):
                return outcome
        if a is None:
            return DEFAULT_ALLOW
        for matches, outcome in a:
            if matches(inp):
                return outcome
        return NO_ALLOW_MATCHED

    return run


def chain_for(decider: Decider, prepared: Prepared) -> FastChain | None:
    key = (prepared.workload.key, prepared.port, prepared.protocol)
    chains = decider._fast_chains
    if key in chains:
        return chains[key]
    chain = chains[key] = compile_chain(prepared)
    return chain


# --- preparing a request -------------------------------------------------------------------


def _const(d: FastDecision) -> RunFn:
    return lambda args: d


def _intern(v: Any) -> Any:
    return sys.intern(v) if type(v) is str else v


def prepare_request(decider: Decider, r: Request) -> PreparedRequest:
    """The per-request part of ``_Run.run`` in engine.py, done once (keep in step)."""
    try:
        p = decider.prepare(r.destination, r.port, r.protocol)
        chain = chain_for(decider, p)
        if chain is None:
            return PreparedRequest(r, _fallback(decider, r), None, None)
        if p.mtls_mode == "STRICT" and r.plaintext:
            return PreparedRequest(r, _const(MTLS_REFUSED), None, None)
        peer = None
        if not r.plaintext and p.mtls_mode != "DISABLE":
            uri = sys.intern(p.principal_prefix + r.source_principal)  # type: ignore[operator]
            peer = PeerCertificate(uri_sans=(uri,))
        headers: list[tuple[str, str]] | None = None
        if r.protocol == "http":
            path = normalize_path(r.path, p.normalization).path  # type: ignore[arg-type]
            if path is None or check_method(r.method, r.headers) is not None:
                return PreparedRequest(r, _const(PATH_REJECTED), None, None)
            headers = [
                (":authority", r.host),
                (":method", sys.intern(r.method)),
                (":path", path),
                # what the HCM adds, rewrites and drops before any filter
                *request_headers(
                    header_settings(p.workload.proxy == "gateway", p.xff),
                    Downstream(
                        peer is not None,
                        peer,
                        (p.workload.identity.spiffe_uri,),
                        r.source_ip,
                        r.remote_ip,
                    ),
                    r.headers,
                ),
            ]
            if r.remote_ip is not None and not any(n == "x-forwarded-for" for n, _ in r.headers):
                headers.append(("x-forwarded-for", r.remote_ip))
        remote_ip = r.remote_ip
        if remote_ip is None:  # from X-Forwarded-For, as the destination's HCM is set up
            xff = [v for n, v in (headers or ()) if n == "x-forwarded-for"]
            remote_ip = remote_address(
                r.source_ip, xff, p.xff.xff_num_trusted_hops, p.xff.use_remote_address
            )
        inp = RbacInput(
            direct_remote_ip=r.source_ip,
            remote_ip=remote_ip,
            source_ip=r.source_ip,
            destination_ip=p.workload.address,
            destination_port=p.port,
            requested_server_name=r.sni,
            peer=peer,
            headers=headers,
            dynamic_metadata={},
            filter_state={},
        )
        if chain.extract is None:
            return PreparedRequest(r, chain.run, inp, inp)
        args = tuple(_intern(v) for v in chain.extract(inp))
        return PreparedRequest(r, chain.run, args, inp)
    except Exception:  # decide() fails closed on the same error
        return PreparedRequest(r, _const(ERROR), None, None)


def _fallback(decider: Decider, r: Request) -> RunFn:
    def run(args: Any) -> FastDecision:
        return as_fast(decider.decide(r))

    return run


def as_fast(d: Any) -> FastDecision:
    """A ``Decision`` reduced to what a FastDecision holds."""
    return FastDecision(d.verdict, d.stage, d.policy, d.rule)


__all__ = [
    "FastChain",
    "FastDecision",
    "PreparedRequest",
    "as_fast",
    "compile_chain",
    "prepare_request",
]
