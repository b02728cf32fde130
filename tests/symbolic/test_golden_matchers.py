"""Every policy of Istio's golden RBAC filters (the builder's expected output,
tests/conformance/istio/pilot/pkg/security/authz/builder/testdata, from
builder_test.go's TestGenerator_GenerateHTTP and TestGenerator_GenerateTCP) means
the same as a formula as it does to the evaluator: on requests the solver builds
to match it and to miss it, and on requests made of the filter's own values."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
import z3

from meshauthz.envoy.rbac.evaluate import PeerCertificate, RbacInput, compile_policy
from meshauthz.envoy.rbac.model import HeaderMatcher, Policy
from meshauthz.envoy.rbac.serialize import parse_rbac
from meshauthz.symbolic.matchers import Context, header_matchers, policy_formula
from meshauthz.symbolic.regex import Unencodable
from meshauthz.symbolic.space import Space
from tests.conftest import CONFORMANCE

GOLDEN = CONFORMANCE / "pilot" / "pkg" / "security" / "authz" / "builder" / "testdata"
DESTINATIONS = [("10.10.10.10", 9001), ("127.0.0.1", 80)]


def golden_policies() -> list[Any]:
    out = []
    for f in sorted(GOLDEN.glob("*/*-out*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if not isinstance(doc, dict) or not doc.get("name", "").endswith(".rbac"):
                continue
            tc = doc["typedConfig"]
            for key in ("rules", "shadowRules"):
                if key not in tc:
                    continue
                for name, policy in parse_rbac(tc[key]).policies:
                    http = f.parent.name == "http"
                    out.append(
                        pytest.param(policy, http, _strings(doc), id=f"{f.name}:{key}:{name}")
                    )
    return out


def _strings(node: Any) -> list[str]:
    """Every string value in a filter: the values its matchers name."""
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


@dataclass
class Assignment:
    """Concrete values for the request variables."""

    plaintext: bool = False
    principal: str = "td/ns/a/sa/b"
    src: str = "10.0.0.1"
    remote: str = "10.0.0.1"
    sni: str = ""
    method: str = "GET"
    path: str = "/"
    host: str = "example.org"
    headers: dict[str, list[str]] = field(default_factory=dict)

    def rbac_input(self, http: bool, dest: tuple[str, int]) -> RbacInput:
        peer = None if self.plaintext else PeerCertificate(uri_sans=("spiffe://" + self.principal,))
        headers = None
        if http:
            headers = [(":authority", self.host), (":method", self.method), (":path", self.path)]
            headers += [(n, v) for n, vs in self.headers.items() for v in vs]
        return RbacInput(
            direct_remote_ip=self.src,
            remote_ip=self.remote,
            source_ip=self.src,
            destination_ip=dest[0],
            destination_port=dest[1],
            requested_server_name=self.sni,
            peer=peer,
            headers=headers,
        )

    def substitution(self, space: Space) -> list[tuple[z3.ExprRef, z3.ExprRef]]:
        def ip(s: str) -> tuple[z3.ExprRef, z3.ExprRef]:
            a = ipaddress.ip_address(s)
            return z3.BoolVal(a.version == 6), z3.BitVecVal(int(a), 128)

        sv6, sv = ip(self.src)
        rv6, rv = ip(self.remote)
        pairs: list[tuple[z3.ExprRef, z3.ExprRef]] = [
            (space.plaintext, z3.BoolVal(self.plaintext)),
            (space.principal, z3.StringVal(self.principal)),
            (space.src_v6, sv6),
            (space.src, sv),
            (space.remote_v6, rv6),
            (space.remote, rv),
            (space.sni, z3.StringVal(self.sni)),
            (space.method, z3.StringVal(self.method)),
            (space.path, z3.StringVal(self.path)),
            (space.host, z3.StringVal(self.host)),
        ]
        for name, var in space.headers.items():
            values = self.headers.get(name, [])
            assert len(values) <= len(var.values)
            for i, (sent, value) in enumerate(zip(var.sent, var.values, strict=True)):
                pairs.append((sent, z3.BoolVal(i < len(values))))
                pairs.append((value, z3.StringVal(values[i] if i < len(values) else "")))
        return pairs


def from_model(m: z3.ModelRef, space: Space) -> Assignment:
    def s(v: z3.SeqRef) -> str:
        return str(m.eval(v, model_completion=True).as_string())

    def ip(v6: z3.BoolRef, v: z3.BitVecRef) -> str:
        n = m.eval(v, model_completion=True).as_long()
        if z3.is_true(m.eval(v6, model_completion=True)):
            return str(ipaddress.IPv6Address(n))
        return str(ipaddress.IPv4Address(n & 0xFFFFFFFF))

    headers = {
        name: [
            s(val)
            for sent, val in zip(var.sent, var.values, strict=True)
            if z3.is_true(m.eval(sent, model_completion=True))
        ]
        for name, var in space.headers.items()
    }
    return Assignment(
        plaintext=z3.is_true(m.eval(space.plaintext, model_completion=True)),
        principal=s(space.principal),
        src=ip(space.src_v6, space.src),
        remote=ip(space.remote_v6, space.remote),
        sni=s(space.sni),
        method=s(space.method),
        path=s(space.path),
        host=s(space.host),
        headers={k: v for k, v in headers.items() if v},
    )


def random_assignment(rng: random.Random, vocab: list[str], space: Space) -> Assignment:
    words = [*vocab, "", "x", "/", "GET"]

    def word() -> str:
        w = rng.choice(words)
        if w.startswith("spiffe://"):
            w = w.removeprefix("spiffe://")
        return w + rng.choice(["", "", "z", "/y"])

    ips = [v.split("/")[0] for v in vocab if _is_ip(v.split("/")[0])] or ["10.0.0.1"]
    return Assignment(
        plaintext=rng.random() < 0.2,
        principal=word(),
        src=rng.choice(ips),
        remote=rng.choice(ips),
        sni=word(),
        method=word(),
        path=word(),
        host=word(),
        headers={
            name: [word() for _ in range(rng.randint(0, len(var.values)))]
            for name, var in space.headers.items()
        },
    )


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def _space(policy: Policy, http: bool) -> Space:
    space = Space(http)
    seen: dict[str, set[HeaderMatcher]] = {}
    for node in (*policy.permissions, *policy.principals):
        header_matchers(node, lambda h: seen.setdefault(h.name.lower(), set()).add(h))
    for name, ms in seen.items():
        space.add_header(name, len(ms))
    return space


@pytest.mark.parametrize(("policy", "http", "vocab"), golden_policies())
def test_golden_policy_formula_agrees_with_the_evaluator(
    policy: Policy, http: bool, vocab: list[str]
) -> None:
    concrete = compile_policy(policy)
    rng = random.Random(repr(policy)[:200])
    try:
        space = _space(policy, http)
    except Unencodable as e:
        # a header the proxy writes: the engine answers unknown, with the reason
        assert "the proxy itself writes" in str(e)
        return
    for dest in DESTINATIONS:
        ctx = Context(space, z3.Not(space.plaintext), dest[0], dest[1])
        try:
            formula = policy_formula(policy, ctx)
        except Unencodable as e:
            assert str(e), "an unknown answer says why"  # never a guessed formula
            return
        samples = [random_assignment(rng, vocab, space) for _ in range(12)]
        for wanted in (formula, z3.Not(formula)):
            solver = z3.Solver()
            solver.set("timeout", 3000)  # a model is a sample; the samples above still run
            solver.add(wanted, z3.Or(space.src_v6, z3.Extract(127, 32, space.src) == 0))
            solver.add(z3.Or(space.remote_v6, z3.Extract(127, 32, space.remote) == 0))
            if solver.check() == z3.sat:
                samples.append(from_model(solver.model(), space))
        for a in samples:
            symbolic = z3.is_true(z3.simplify(z3.substitute(formula, *a.substitution(space))))
            assert symbolic == concrete(a.rbac_input(http, dest)), (a, dest)
