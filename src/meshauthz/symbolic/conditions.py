"""A rule's match and a class of requests in the user's terms.

``reach`` and ``diff`` both say which requests a row or a change stands for:
with the AuthorizationPolicy's own field names, from the rules that decide.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from meshauthz.decide.cause import Stage
from meshauthz.resources.istio import Condition, Operation, Rule, Source
from meshauthz.resources.objects import AuthorizationPolicy
from meshauthz.symbolic.chain import End
from meshauthz.translate.rule import OPERATION_FIELDS, SOURCE_FIELDS, Problem, Spec

# Per deciding rule ("namespace/name", index): the fields as written (e.g.
# "to.operation.methods") the chain left out of it, which its match does not name.
LeftOut = Mapping[tuple[str | None, int | None], Collection[str]]


def left_out_fields(problems: Iterable[Problem]) -> dict[tuple[str | None, int | None], set[str]]:
    """The HTTP-only fields a TCP chain's build left out of its non-ALLOW rules
    (istiod's translation: the rule then matches every connection the other
    fields match), by rule."""
    out: dict[tuple[str | None, int | None], set[str]] = {}
    for p in problems:
        if p.http_only is not None:
            out.setdefault((p.policy, p.rule), set()).add(p.http_only)
    return out


def _values(name: str, values: Iterable[str], negated: bool = False) -> str:
    vs = ", ".join(values)
    return f"{name} not {vs}" if negated else f"{name} {vs}"


# The fields (as written, negation as written, model attributes) in the order
# the user reads them, not istiod's output order of translate.rule's tables.
_Field = tuple[str, str, str, str]


def _in_order(specs: tuple[Spec, ...], order: tuple[str, ...]) -> tuple[_Field, ...]:
    by_name = {s[0]: (s[0], s[3], s[4], s[5]) for s in specs}
    assert set(by_name) == set(order)
    return tuple(by_name[name] for name in order)


_SOURCE_FIELDS = _in_order(
    SOURCE_FIELDS,
    (
        "principals",
        "requestPrincipals",
        "namespaces",
        "serviceAccounts",
        "ipBlocks",
        "remoteIpBlocks",
        "trustDomains",
    ),
)
_OPERATION_FIELDS = _in_order(OPERATION_FIELDS, ("methods", "paths", "hosts", "ports"))
# What a caller of fixed identity (and address) decides by itself.
IDENTITY_DECIDED = {"principals", "namespaces", "serviceAccounts", "trustDomains"}


def _fields(
    obj: Source | Operation,
    table: tuple[_Field, ...],
    skip: set[str],
    only: Collection[str] | None = None,
    written: tuple[str, Collection[str]] = ("", ()),
) -> str:
    """``written``: the clause as written ("to.operation") and its fields left
    out (see ``LeftOut``)."""
    parts = []
    holder, left_out = written
    for label, not_label, yes, no in table:
        if label in skip:
            continue
        if getattr(obj, yes) and f"{holder}.{label}" not in left_out:
            values = getattr(obj, yes)
            if label == "methods" and only is not None:
                values = [v for v in values if v in only] or values
            parts.append(_values(label, values))
        if getattr(obj, no) and f"{holder}.{not_label}" not in left_out:
            parts.append(_values(label, getattr(obj, no), negated=True))
    return " and ".join(parts)


def _when(c: Condition, left_out: Collection[str] = ()) -> str:
    if f"when.{c.key}" in left_out:
        return ""
    parts = []
    if c.values:
        parts.append(f"{c.key} in [{', '.join(c.values)}]")
    if c.not_values:
        parts.append(f"{c.key} not in [{', '.join(c.not_values)}]")
    return " and ".join(parts)


def _any_of(parts: list[str]) -> str:
    parts = [p for p in parts if p]
    if not parts:
        return ""
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def rule_text(
    rule: Rule,
    skip: Iterable[str] = (),
    methods: Collection[str] | None = None,
    left_out: Collection[str] = (),
) -> str:
    """A rule's match in the AuthorizationPolicy's own field names, leaving out
    the source fields in ``skip`` (what a caller of fixed identity or address
    decides by itself); ``methods``: the only methods to name of those it lists
    (those of a class of requests it matched); ``left_out``: the fields its
    chain left out (see ``LeftOut``), which it does not match on."""
    skipped = set(skip)
    sources = [
        _fields(f.source, _SOURCE_FIELDS, skipped, None, ("from.source", left_out))
        for f in rule.from_
        if f.source
    ]
    ops = [
        _fields(t.operation, _OPERATION_FIELDS, set(), methods, ("to.operation", left_out))
        for t in rule.to
        if t.operation
    ]
    parts = [
        _any_of(sources) if all(sources) else "",  # one source the caller meets: no condition
        _any_of(ops) if all(ops) else "",  # one operation naming nothing (left): no condition
        *[_when(c, left_out) for c in rule.when],
    ]
    text = " and ".join(p for p in parts if p)
    return text or "any request"


def end_rule(policies: Mapping[str, AuthorizationPolicy], end: End) -> Rule | None:
    """The AuthorizationPolicy rule an end names, if it names one."""
    ap = policies.get(end.policy) if end.policy else None
    if ap is None or end.rule is None or end.rule >= len(ap.spec.rules):
        return None
    return ap.spec.rules[end.rule]


def listed_methods(rules: Iterable[Rule]) -> list[str]:
    """The methods the rules' operations list, each once."""
    return list(
        dict.fromkeys(m for r in rules for t in r.to if t.operation for m in t.operation.methods)
    )


def change_conditions(
    ends: Iterable[tuple[Mapping[str, AuthorizationPolicy], End, LeftOut]],
    http: bool,
    methods: Collection[str] | None = None,
) -> str:
    """What every request of a changed class meets, from each side's end: the
    rule that decided it there (its match), plaintext where mutual TLS reset
    it, a token the JWT filter rejected. An end that names no rule (no ALLOW
    policy matched, the default, no sidecar) adds nothing. ``methods``: the
    class's methods, when known: a rule's list names only those. Each side's
    ``LeftOut``: what its chain left out of its rules."""
    parts: list[str] = []
    for policies, end, left_out in ends:
        if end.stage == Stage.MTLS:
            parts.append("plaintext")
        elif end.stage == Stage.JWT:
            parts.append("a JWT the filter rejects")
        else:
            rule = end_rule(policies, end)
            if rule is not None:
                fields = left_out.get((end.policy, end.rule), ())
                parts.append(rule_text(rule, methods=methods, left_out=fields))
    # what every request meets, not all it takes: with no deciding rule to name,
    # say "requests", never "any request" (the other side's rules take some away)
    every = "requests" if http else "connections"
    text = " and ".join(dict.fromkeys(p for p in parts if p != "any request"))
    return text or every
