"""Every policy of Istio's golden RBAC filters that reads the JWT
(tests/conformance/istio/pilot/pkg/security/authz/builder/testdata, from
builder_test.go's TestGenerator_GenerateHTTP: ``requestPrincipals``,
``request.auth.principal``, ``audiences``, ``presenter`` and ``claims``, nested
and with lists, as istiod writes them) means the same as a formula over the
claims as it does to the evaluator over the JWT filter's metadata, matcher by
matcher: on payloads the solver builds to match it and to miss it, and on
payloads made of the filter's own values (strings, lists holding them among
others, numbers, objects)."""

from __future__ import annotations

import random
from typing import Any

import msgspec.structs
import pytest
import z3

from meshauthz.envoy.jwt_authn import JWT_FILTER, JwtAuthentication, JwtProvider, RequirementRule
from meshauthz.envoy.rbac.evaluate import RbacInput, compile_node
from meshauthz.envoy.rbac.model import IdAny, IdMetadata, PermAny, PermMetadata, Policy
from meshauthz.symbolic.jwt import claim_value, jwt_space
from meshauthz.symbolic.matchers import Context, node_formula
from meshauthz.symbolic.space import LIST, OTHER, STRING, ClaimVar, JwtSpace, Space
from meshauthz.translate.requestauthn import requirement
from tests.symbolic.test_golden_matchers import golden_policies

CONFIG = JwtAuthentication(
    providers=(
        JwtProvider(
            "origins-0",
            issuer="requestPrincipals",
            payload_in_metadata="payload",
            space_delimited_claims=("permission", "scope"),
        ),
    ),
    rules=(RequirementRule("/", requirement(["origins-0"])),),
    bypass_cors_preflight=True,
)
DEST = ("10.10.10.10", 9001)


def jwt_nodes(policy: Policy) -> list[IdMetadata | PermMetadata]:
    """The policy's matchers on the JWT filter's metadata."""
    out: list[IdMetadata | PermMetadata] = []

    def walk(node: Any) -> None:
        if isinstance(node, IdMetadata | PermMetadata):
            if node.metadata.filter == JWT_FILTER:
                out.append(node)
        elif isinstance(node, msgspec.Struct):
            for name in node.__struct_fields__:
                walk(getattr(node, name))
        elif isinstance(node, tuple):
            for n in node:
                walk(n)

    walk(policy)
    return out


def jwt_goldens() -> list[Any]:
    """Each distinct JWT matcher of the golden filters, with its filter's values."""
    out: dict[Any, Any] = {}
    for param in golden_policies():
        policy, http, vocab = param.values
        for node in jwt_nodes(policy) if http else ():
            if node not in out:
                out[node] = pytest.param(
                    node, vocab, id=f"{param.id}:{'.'.join(node.metadata.path)}"
                )
    return list(out.values())


def _set(payload: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    holder = payload
    for k in path[:-1]:
        nxt = holder.get(k)
        if not isinstance(nxt, dict):
            nxt = holder[k] = {}
        holder = nxt
    holder[path[-1]] = value


def random_payload(rng: random.Random, vocab: list[str], js: JwtSpace) -> dict[str, Any]:
    """Claims at the paths the policy reads: a value of the filter's own words
    (as they are, cut, or with more), a list of them with numbers among them,
    a number, an object, or nothing."""
    words = [*vocab, "", "x"]

    def word() -> str:
        w = rng.choice(words)
        return rng.choice([w, w[:-1], w + "z", "a" + w])

    payload: dict[str, Any] = {}
    for path, var in sorted(js.claims.items(), key=lambda kv: len(kv[0])):
        choice = rng.randrange(5)
        if choice == 0:
            continue
        value: Any = (
            word()
            if choice == 1
            else [*[word() for _ in range(rng.randint(0, len(var.items)))], 7]
            if choice == 2
            else rng.choice([3, {"k": word()}, None, True])
        )
        if path in {("iss",), ("sub",)} and not isinstance(value, str):
            continue  # Envoy's JWT parser refuses a token with those
        _set(payload, path, value)
    return payload


def substitution(js: JwtSpace, payload: dict[str, Any]) -> list[tuple[z3.ExprRef, z3.ExprRef]]:
    """The claim variables for ``payload`` (its lists' non-string elements left out)."""
    pairs: list[tuple[z3.ExprRef, z3.ExprRef]] = []
    for path, var in js.claims.items():
        node: Any = payload
        for k in path:
            node = node.get(k) if isinstance(node, dict) else None
        strings = [s for s in node if isinstance(s, str)] if isinstance(node, list) else []
        assert len(strings) <= len(var.items)
        kind = STRING if isinstance(node, str) else LIST if isinstance(node, list) else OTHER
        pairs.append((var.kind, z3.IntVal(kind)))
        pairs.append((var.string, z3.StringVal(node if isinstance(node, str) else "")))
        for i, (sent, item) in enumerate(zip(var.sent, var.items, strict=True)):
            pairs.append((sent, z3.BoolVal(i < len(strings))))
            pairs.append((item, z3.StringVal(strings[i] if i < len(strings) else "")))
    return pairs


def from_model(m: z3.ModelRef, js: JwtSpace) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    claims: list[tuple[tuple[str, ...], ClaimVar]] = sorted(
        js.claims.items(), key=lambda kv: len(kv[0])
    )
    for path, var in claims:
        value = claim_value(m, var)
        if value is not None:
            _set(payload, path, value)
    return payload


def test_the_golden_filters_have_jwt_matchers() -> None:
    # the walk must reach the matchers: an empty parameter set would only skip
    assert len(jwt_goldens()) >= 28


@pytest.mark.parametrize(("node", "vocab"), jwt_goldens())
def test_golden_jwt_matchers_agree_with_the_evaluator(
    node: IdMetadata | PermMetadata, vocab: list[str]
) -> None:
    rng = random.Random(repr(node)[:200])
    space = Space(True)
    holder = (
        Policy((PermAny(),), (node,))
        if isinstance(node, IdMetadata)
        else Policy((node,), (IdAny(),))
    )
    js = jwt_space(space, CONFIG, [holder])
    ctx = Context(space, z3.Not(space.plaintext), *DEST)
    ctx.jwt_payload = z3.BoolVal(True)  # the filter passed with the token's payload
    concrete = compile_node(node)
    formula = node_formula(node, ctx)
    # payloads the solver builds to match it and to miss it, and payloads made
    # of the filter's values
    payloads = [random_payload(rng, vocab, js) for _ in range(60)]
    for wanted in (formula, z3.Not(formula)):
        solver = z3.Solver()
        solver.set("timeout", 30_000)
        solver.add(wanted, *space.extra)
        assert solver.check() == z3.sat
        payloads.append(from_model(solver.model(), js))
    matched = 0
    for payload in payloads:
        inp = RbacInput(dynamic_metadata={JWT_FILTER: {"payload": payload}})
        symbolic = z3.simplify(z3.substitute(formula, *substitution(js, payload)))
        assert z3.is_true(symbolic) or z3.is_false(symbolic), symbolic  # every claim given
        assert z3.is_true(symbolic) == concrete(inp), payload
        matched += concrete(inp)
    assert 0 < matched < len(payloads)
