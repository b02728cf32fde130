"""The engines a Python user would reach for, deciding the same logical policies.

Each peer is built from ``meshgen.DestinationPolicies`` (per destination: the
DENY rules, the ALLOW rules, whether an ALLOW policy applies) and decides
``meshgen.Req``. The semantics are Istio's, written in each engine's own
idiom:

* cedarpy: one parsed ``PolicySet`` per destination; DENY rules are
  ``forbid``, ALLOW rules ``permit`` (Cedar denies by default and ``forbid``
  wins); a destination without an ALLOW policy gets an unconditional
  ``permit``. Principal and path are the Cedar principal and the context,
  the method is the action; a path prefix is ``like "prefix*"``.
* pycasbin: one Enforcer per destination; a rule is expanded into policy
  lines (principal x method) with ``keyMatch`` for paths (``/p/*`` is a
  prefix, which is ``keyMatch``'s meaning) and the effect
  ``some(allow) && !some(deny)``.
* Rego (regorus, compiled to its RVM; regopy, compiled to a bundle): one
  policy over data that holds every destination's rules, indexed by
  destination, the way one writes it for OPA.

``prepare(req)`` builds the engine's native request once (as meshauthz's
``prepare_request`` does), ``decide(prepared) -> bool`` is the timed call.
A missing package raises ``Unavailable`` with the reason.
"""

from __future__ import annotations

import json
from typing import Any

from meshgen import DestinationPolicies, Req, Rule


class Unavailable(Exception):
    pass


class Peer:
    name = ""

    def prepare(self, req: Req) -> Any:
        raise NotImplementedError

    def decide(self, prepared: Any) -> bool:
        raise NotImplementedError


def _cedar_str(s: str) -> str:
    return json.dumps(s)  # a Cedar string literal has JSON's escapes


def _cedar_like(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace('"', '\\"').replace("*", "\\*")
    return f'"{escaped}*"'


class CedarPeer(Peer):
    name = "cedarpy"

    def __init__(self, model: dict[str, DestinationPolicies]) -> None:
        try:
            import cedarpy
        except ImportError as e:
            raise Unavailable(f"cedarpy is not installed ({e})") from e
        self._is_authorized = cedarpy.is_authorized
        self._entities = cedarpy.Entities.from_json_str("[]")
        self._sets = {
            dest: cedarpy.PolicySet.from_str(self.policies(p)) for dest, p in model.items()
        }

    @staticmethod
    def _when(rule: Rule) -> str:
        conds = []
        if rule.principals is not None:
            conds.append(
                "["
                + ", ".join(f"Principal::{_cedar_str(p)}" for p in sorted(rule.principals))
                + "].contains(principal)"
            )
        if rule.paths_exact is not None or rule.paths_prefix is not None:
            alts = [f"context.path == {_cedar_str(p)}" for p in sorted(rule.paths_exact or ())]
            alts += [f"context.path like {_cedar_like(p)}" for p in rule.paths_prefix or ()]
            conds.append("(" + (" || ".join(alts) or "false") + ")")
        return " when { " + " && ".join(conds) + " }" if conds else ""

    @classmethod
    def _scope(cls, rule: Rule) -> str:
        if rule.methods is None:
            return "principal, action, resource"
        actions = ", ".join(f"Action::{_cedar_str(m)}" for m in sorted(rule.methods))
        return f"principal, action in [{actions}], resource"

    @classmethod
    def policies(cls, p: DestinationPolicies) -> str:
        out = [f"forbid({cls._scope(r)}){cls._when(r)};" for r in p.deny]
        out += [f"permit({cls._scope(r)}){cls._when(r)};" for r in p.allow]
        if not p.has_allow:
            out.append("permit(principal, action, resource);")
        return "\n".join(out)

    def prepare(self, req: Req) -> Any:
        request = {
            "principal": f"Principal::{_cedar_str(req.principal)}",
            "action": f"Action::{_cedar_str(req.method)}",
            "resource": f"Workload::{_cedar_str(req.destination)}",
            "context": json.dumps({"path": req.path}),  # as is_authorized would, once
        }
        return request, self._sets[req.destination]

    def decide(self, prepared: Any) -> bool:
        request, policies = prepared
        return self._is_authorized(request, policies, self._entities).allowed


_CASBIN_MODEL = """
[request_definition]
r = sub, act, path

[policy_definition]
p = sub, act, path, eft

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = (p.sub == "*" || r.sub == p.sub) && (p.act == "*" || r.act == p.act) && keyMatch(r.path, p.path)
"""


class CasbinPeer(Peer):
    name = "pycasbin"

    def __init__(self, model: dict[str, DestinationPolicies]) -> None:
        try:
            import casbin
        except ImportError as e:
            raise Unavailable(f"casbin is not installed ({e})") from e
        self._enforcers: dict[str, Any] = {}
        for dest, p in model.items():  # a model holds its policies: one each
            e = casbin.Enforcer(casbin.Enforcer.new_model(text=_CASBIN_MODEL))
            e.logger.disabled = True
            lines = [line + ["deny"] for r in p.deny for line in self.lines(r)]
            lines += [line + ["allow"] for r in p.allow for line in self.lines(r)]
            if not p.has_allow:
                lines.append(["*", "*", "*", "allow"])
            if lines:
                e.add_policies(lines)
            self._enforcers[dest] = e

    @staticmethod
    def lines(rule: Rule) -> list[list[str]]:
        if any("*" in p for p in (*(rule.paths_exact or ()), *(rule.paths_prefix or ()))):
            raise ValueError("a '*' inside a path cannot be said with keyMatch")
        principals = sorted(rule.principals) if rule.principals is not None else ["*"]
        methods = sorted(rule.methods) if rule.methods is not None else ["*"]
        if rule.paths_exact is None and rule.paths_prefix is None:
            paths = ["*"]
        else:
            paths = sorted(rule.paths_exact or ()) + [f"{p}*" for p in rule.paths_prefix or ()]
        return [[s, a, p] for s in principals for a in methods for p in paths]

    def prepare(self, req: Req) -> Any:
        return self._enforcers[req.destination].enforce, (req.principal, req.method, req.path)

    def decide(self, prepared: Any) -> bool:
        enforce, args = prepared
        return enforce(*args)


REGO = """package meshauthz

default allow := false

dest := data.dests[input.dest]

principal_ok(r) if r.principals == null
principal_ok(r) if r.principals[input.principal]

method_ok(r) if r.methods == null
method_ok(r) if r.methods[input.method]

path_ok(r) if r.paths == null
path_ok(r) if r.paths.exact[input.path]
path_ok(r) if {
	some p in r.paths.prefix
	startswith(input.path, p)
}

matches(r) if {
	principal_ok(r)
	method_ok(r)
	path_ok(r)
}

denied if {
	some r in dest.deny
	matches(r)
}

allow if {
	not denied
	not dest.has_allow
}

allow if {
	not denied
	some r in dest.allow
	matches(r)
}
"""


def rego_data(model: dict[str, DestinationPolicies]) -> dict[str, Any]:
    def rule(r: Rule) -> dict[str, Any]:
        paths = None
        if r.paths_exact is not None or r.paths_prefix is not None:
            paths = {
                "exact": {p: True for p in sorted(r.paths_exact or ())},
                "prefix": list(r.paths_prefix or ()),
            }
        return {
            "principals": {p: True for p in sorted(r.principals)} if r.principals else None,
            "methods": {m: True for m in sorted(r.methods)} if r.methods else None,
            "paths": paths,
        }

    return {
        "dests": {
            d: {
                "deny": [rule(r) for r in p.deny],
                "allow": [rule(r) for r in p.allow],
                "has_allow": p.has_allow,
            }
            for d, p in model.items()
        }
    }


def _rego_input(req: Req) -> dict[str, str]:
    return {
        "dest": req.destination,
        "principal": req.principal,
        "method": req.method,
        "path": req.path,
    }


class RegorusPeer(Peer):
    """regorus (PyPI gordon-to-regorus), compiled to an RVM program."""

    name = "regorus (RVM)"

    def __init__(self, model: dict[str, DestinationPolicies]) -> None:
        try:
            import regorus
        except ImportError as e:
            raise Unavailable(f"gordon-to-regorus is not installed ({e})") from e
        data = json.dumps(rego_data(model))
        program = regorus.Program.compile_from_modules(
            data, [("meshauthz.rego", REGO)], ["data.meshauthz.allow"]
        )
        self._vm = vm = regorus.Rvm()
        vm.load_program(program)
        vm.set_data_json(data)
        self._set_input = vm.set_input_json
        self._execute = vm.execute

    def prepare(self, req: Req) -> Any:
        return json.dumps(_rego_input(req))

    def decide(self, prepared: Any) -> bool:
        self._set_input(prepared)
        return self._execute() == "true"


class RegopyPeer(Peer):
    """regopy (rego-cpp), the policy compiled to a bundle."""

    name = "regopy (bundle)"

    def __init__(self, model: dict[str, DestinationPolicies]) -> None:
        try:
            import regopy
        except ImportError as e:
            raise Unavailable(f"regopy is not installed ({e})") from e
        self._input = regopy.Input
        self._rego = rego = regopy.Interpreter()
        rego.add_module("meshauthz.rego", REGO)
        rego.add_data_json(json.dumps(rego_data(model)))
        # a query that is a false expression is undefined in rego-cpp: bind the value
        self._bundle = rego.build("allow := data.meshauthz.allow")
        if not self._bundle.ok():
            raise RuntimeError(f"regopy could not build the bundle: {self._bundle.node()}")
        self._set_input = rego.set_input
        self._query = rego.query_bundle

    def prepare(self, req: Req) -> Any:
        return self._input(_rego_input(req))

    def decide(self, prepared: Any) -> bool:
        self._set_input(prepared)
        return self._query(self._bundle)[0]["allow"] is True


PEERS = (CedarPeer, CasbinPeer, RegorusPeer, RegopyPeer)
