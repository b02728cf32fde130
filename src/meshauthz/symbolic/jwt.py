"""A RequestAuthentication's JWT filter as formulas, and its token in witnesses.

The filter is the one istiod builds (``meshauthz.translate.requestauthn``):
one rule for every path requiring, of the providers, any one valid token or
none. What it does with a request (``meshauthz.envoy.jwt_authn``) ends in one
of three ways, and the variables of ``space.JwtSpace`` say which:

- no token where a provider reads one, or a CORS preflight (bypassed): the
  request goes on without a payload;
- a token no provider accepts (an issuer none has, an audience none allows,
  expired, a bad signature, unreadable): 401 or 403, the chain ends at the
  JWT stage;
- a token a provider accepts (its issuer, one of its audiences): the request
  goes on with the token's payload, the space-delimited claims split into
  lists, which the ``request.auth.*`` matchers read (``matchers``).

Why these are all the cases: with several tokens, each provider checks every
token in its own locations and the payload is the last accepted one's; so any
request ends as one of the three, with a payload some provider accepts, and
the same token alone in that provider's location ends alike. That argument
needs one filter: the engine encodes a destination whose two sides run the
same filter, or one side none. Two different filters, which could each see
another token of one request, are not encoded (unknown), nor are a filter not
in istiod's shape, a provider reading tokens from cookies only, a matcher on a
header a token travels in, a claim the providers split differently, or a
value matcher istiod does not write.

A claim's value is a string, a list (its string elements: one per list
matcher on the claim, enough to tell any two lists apart), or
anything else (absent, a number, an object: no string matcher matches it).
What Envoy's JWT parser requires of the registered claims (``iss``, ``sub``,
``jti`` strings, ``aud`` a string or strings, the times numbers) is part of
the domain, so that every accepted payload is one a token can carry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import z3

from meshauthz.decide.engine import Prepared
from meshauthz.envoy.jwt_authn import (
    JWT_FILTER,
    JwtAuthentication,
    JwtProvider,
    RequirementRule,
    audiences_allowed,
    jwks_problem,
)
from meshauthz.envoy.jwt_authn.evaluate import DEFAULT_HEADER
from meshauthz.envoy.rbac.model import MetadataMatcher, Policy, ValueMatcher
from meshauthz.symbolic.matchers import Context, metadata_matchers
from meshauthz.symbolic.regex import Unencodable
from meshauthz.symbolic.space import (
    CLAIM_CHAR,
    LIST,
    OTHER,
    STRING,
    ClaimVar,
    JwtSpace,
    Space,
)
from meshauthz.translate.requestauthn import requirement

_STRINGS = ("iss", "sub", "jti")  # a string when present (jwt.cc)
_NUMBERS = ("iat", "nbf", "exp")  # a number when present
_REGISTERED = frozenset({*_STRINGS, *_NUMBERS, "aud"})
_PLAIN = z3.Star(
    z3.Union(z3.Range("a", "z"), z3.Range("A", "Z"), z3.Range("0", "9"), z3.Re("-"), z3.Re("."))
)
# What a witness's rejected token holds: long expired, whichever provider reads it.
EXPIRED = 1


def chain_policies(prepared: Iterable[Prepared]) -> list[Policy]:
    """The RBAC policies of the chains, enforced and shadow."""
    out: list[Policy] = []
    for p in prepared:
        for stage in (*p.custom, *p.rest):
            cf = stage.compiled
            for engine in (cf.shadow_engine, cf.engine) if cf is not None else ():
                if engine is not None:
                    out.extend(policy for _, policy in engine.rbac.policies)
    return out


def claim_reads(policies: Iterable[Policy], key: str) -> dict[tuple[str, ...], set[ValueMatcher]]:
    """Each claim path the policies' matchers read (below the payload's metadata
    key), with the matchers tried on its list elements: a list matches one when
    some element does, so one element per such matcher tells any list apart."""
    out: dict[tuple[str, ...], set[ValueMatcher]] = {}

    def add(m: MetadataMatcher) -> None:
        if m.filter != JWT_FILTER or len(m.path) < 2 or m.path[0] != key:
            return
        on_elements = out.setdefault(m.path[1:], set())

        def walk(v: ValueMatcher) -> None:
            if v.kind == "list" and v.one_of is not None:
                on_elements.add(v.one_of)
            for s in v.or_matchers:
                walk(s)

        walk(m.value)

    for policy in policies:
        for node in (*policy.permissions, *policy.principals):
            metadata_matchers(node, add)
    return out


def _check(config: JwtAuthentication) -> str:
    """The payload's metadata key; raises ``Unencodable`` for a filter whose
    cases are not the three above."""
    names = [p.name for p in config.providers]
    if config.rules != (RequirementRule("/", requirement(names)),) or config.requirement_map:
        raise Unencodable("a jwt_authn filter not in the shape istiod builds")
    keys = {p.payload_in_metadata for p in config.providers}
    if len(keys) != 1 or "" in keys:
        raise Unencodable("JWT providers writing their payloads under different keys")
    for p in config.providers:
        if p.from_cookies and not (p.from_headers or p.from_params):
            raise Unencodable(f"the JWT provider {p.issuer!r} reads tokens from cookies only")
        if _REGISTERED & set(p.space_delimited_claims):
            raise Unencodable(f"the JWT provider {p.issuer!r} splits a registered claim")
    return keys.pop()


def token_headers(config: JwtAuthentication) -> set[str]:
    """The headers a token travels in to some provider."""
    out: set[str] = set()
    for p in config.providers:
        if not (p.from_headers or p.from_params or p.from_cookies):
            out.add(DEFAULT_HEADER[0])
        out |= {h.name.lower() for h in p.from_headers}
        if p.from_cookies:
            out.add("cookie")
    return out


def add_jwt_space(space: Space, prepared: Iterable[Prepared]) -> None:
    """The token variables and their domain, when a side has a JWT filter
    (raises ``Unencodable``); after the headers are in ``space``."""
    ps = list(prepared)
    configs = {p.jwt for p in ps if p.jwt is not None}
    if not space.http or not configs:
        return
    if len(configs) > 1:
        raise Unencodable(
            "the two sides' JWT filters differ (their RequestAuthentications): a request "
            "with tokens in several places is not encoded"
        )
    config = configs.pop()
    for name in sorted(token_headers(config) & set(space.headers)):
        raise Unencodable(f"a matcher on the header {name!r}, where a JWT travels")
    jwt_space(space, config, chain_policies(ps))


def jwt_space(space: Space, config: JwtAuthentication, policies: Iterable[Policy]) -> JwtSpace:
    """The token variables for ``config`` and the claims ``policies`` read, their
    domain added to ``space`` (raises ``Unencodable``)."""
    key = _check(config)
    reads = claim_reads(policies, key)
    for path in reads:
        if len(path) == 1:
            split = {path[0] in p.space_delimited_claims for p in config.providers}
            if len(split) > 1:
                raise Unencodable(f"the claim {path[0]!r}, which some JWT providers split")
    js = space.jwt = JwtSpace(key, config)
    js.claim(("iss",))
    for path, on_elements in sorted(reads.items()):
        js.claim(path, len(on_elements))
    if any(p.audiences for p in config.providers):
        # one element more for the audience a provider allows
        js.claim(("aud",), len(reads.get(("aud",), ())) + 1)
    space.extra.append(_domain(js, config))
    return js


def _domain(js: JwtSpace, config: JwtAuthentication) -> z3.BoolRef:
    split = set(config.providers[0].space_delimited_claims)
    c: list[z3.BoolRef] = []
    for path, v in js.claims.items():
        c.append(z3.And(v.kind >= OTHER, v.kind <= LIST))
        c.extend(z3.InRe(s, z3.Star(CLAIM_CHAR)) for s in v.strings())
        head = path[0]
        if (len(path) > 1 and head in _REGISTERED) or path in {(n,) for n in _NUMBERS}:
            c.append(v.kind == OTHER)
        elif path in {(n,) for n in _STRINGS}:
            c.append(v.kind != LIST)
        if len(path) == 1 and head in split:
            # a split string is a list: what stays a string holds no other character
            c.append(z3.Implies(v.kind == STRING, z3.InRe(v.string, z3.Star(z3.Re(" ")))))
        for q, w in js.claims.items():
            if len(q) < len(path) and path[: len(q)] == q:
                # a value below q: q holds an object
                c.append(z3.Implies(v.kind != OTHER, w.kind == OTHER))
    accepted = [accepts(p, js) for p in config.providers]
    c.append(z3.Implies(js.accepted, z3.Or(z3.BoolVal(False), *accepted)))
    return z3.And(*c)


def _audience_forms(audience: str) -> list[str]:
    """Every presented audience Envoy's audience check takes for ``audience``:
    it drops one http:// or https:// scheme and one trailing slash from both,
    so each is such a core with a scheme or a slash or both; the check itself
    (``audiences_allowed``) keeps those it takes."""
    cores = {audience}
    for scheme in ("http://", "https://"):
        cores |= {c.removeprefix(scheme) for c in cores}
    cores |= {c.removesuffix("/") for c in cores}
    forms = {s + c + t for c in cores for s in ("", "http://", "https://") for t in ("", "/")}
    return sorted(f for f in forms if audiences_allowed([audience], [f]))


def accepts(p: JwtProvider, js: JwtSpace) -> z3.BoolRef:
    """Provider ``p`` accepts the token: its issuer, one of its audiences."""
    c: list[z3.BoolRef] = []
    if p.issuer:
        iss = js.claims[("iss",)]
        c.append(z3.And(iss.kind == STRING, iss.string == z3.StringVal(p.issuer)))
    if p.audiences:
        aud = js.claims[("aud",)]
        forms = [z3.StringVal(f) for a in p.audiences for f in _audience_forms(a)]

        def allowed(s: z3.SeqRef) -> z3.BoolRef:
            return z3.Or(*[s == f for f in forms])

        c.append(
            z3.Or(
                z3.And(aud.kind == STRING, allowed(aud.string)),
                z3.And(
                    aud.kind == LIST,
                    z3.Or(
                        *[z3.And(s, allowed(i)) for s, i in zip(aud.sent, aud.items, strict=True)]
                    ),
                ),
            )
        )
    return z3.And(z3.BoolVal(True), *c)


def _has(space: Space, name: str) -> z3.BoolRef:
    """A header with a non-empty value (a header not in the space is absent)."""
    h = space.headers.get(name)
    if h is None:
        return z3.BoolVal(False)
    space.used.add(name)
    return z3.Or(*[z3.And(s, z3.Length(v) > 0) for s, v in zip(h.sent, h.values, strict=True)])


def preflight(space: Space, config: JwtAuthentication) -> z3.BoolRef:
    """A CORS preflight, which the filter lets through unverified."""
    if not config.bypass_cors_preflight:
        return z3.BoolVal(False)
    return z3.And(
        space.method == z3.StringVal("OPTIONS"),
        _has(space, "origin"),
        _has(space, "access-control-request-method"),
    )


def jwt_filter(config: JwtAuthentication, ctx: Context) -> z3.BoolRef:
    """The requests the filter rejects; the context learns when it passes a payload."""
    js = ctx.space.jwt
    if js is None or js.config != config:
        raise AssertionError("the space was built without this JWT filter")
    if any(p.local_jwks is not None and jwks_problem(p.local_jwks) for p in config.providers):
        # Envoy refuses the filter's config: every request is a 401
        ctx.jwt_payload = z3.BoolVal(False)
        return z3.BoolVal(True)
    checked = z3.And(js.token, z3.Not(preflight(ctx.space, config)))
    ctx.jwt_payload = z3.And(checked, js.accepted)
    return z3.And(checked, z3.Not(js.accepted))


def wishes(js: JwtSpace) -> list[z3.BoolRef]:
    """What makes a witness easy to read: no token, claims of plain characters,
    short lists."""
    out: list[z3.BoolRef] = [z3.Not(js.token)]
    out.extend(z3.InRe(s, _PLAIN) for v in js.claims.values() for s in v.strings())
    out.extend(z3.Not(s) for v in js.claims.values() for s in v.sent)
    return out


def _text(model: z3.ModelRef, v: z3.SeqRef) -> str:
    """A string of the model, character by character (``as_string`` escapes)."""
    n = model.eval(z3.Length(v), model_completion=True)
    assert isinstance(n, z3.IntNumRef)
    codes = []
    for i in range(n.as_long()):
        c = model.eval(z3.StrToCode(z3.SubString(v, i, 1)), model_completion=True)
        assert isinstance(c, z3.IntNumRef)
        codes.append(chr(c.as_long()))
    return "".join(codes)


def claim_value(model: z3.ModelRef, v: ClaimVar) -> Any:
    """The claim's value in the model (None: left out of the payload)."""
    kind = model.eval(v.kind, model_completion=True)
    assert isinstance(kind, z3.IntNumRef)
    if kind.as_long() == STRING:
        return _text(model, v.string)
    if kind.as_long() == LIST:
        return [
            _text(model, item)
            for sent, item in zip(v.sent, v.items, strict=True)
            if z3.is_true(model.eval(sent, model_completion=True))
        ]
    return None


def location(p: JwtProvider) -> dict[str, str] | None:
    """Where a witness's token travels to ``p`` (None: Envoy's default,
    ``Authorization: Bearer``, the request format's default too)."""
    if p.from_headers:
        h = p.from_headers[0]
        return {"header": h.name.lower(), "prefix": h.value_prefix}
    if p.from_params:
        return {"param": p.from_params[0]}
    return None


def witness_token(model: z3.ModelRef, space: Space) -> dict[str, Any]:
    """The request format's ``jwt`` (and ``jwtLocation``) for the model's token."""
    js = space.jwt
    if js is None or not z3.is_true(model.eval(js.token, model_completion=True)):
        return {}
    if z3.is_true(model.eval(preflight(space, js.config), model_completion=True)):
        return {}  # not verified: the request without it goes the same way
    providers = js.config.providers
    if z3.is_true(model.eval(js.accepted, model_completion=True)):
        claims: dict[str, Any] = {}
        for path, v in sorted(js.claims.items(), key=lambda kv: len(kv[0])):
            value = claim_value(model, v)
            if value is None:
                continue
            holder = claims
            for k in path[:-1]:
                holder = holder.setdefault(k, {})
                assert isinstance(holder, dict), "a claim below a value (the domain excludes it)"
            holder[path[-1]] = value
        provider = next(
            p for p in providers if z3.is_true(model.eval(accepts(p, js), model_completion=True))
        )
    else:
        provider = providers[0]
        claims = {"iss": provider.issuer or "meshauthz.invalid", "exp": EXPIRED}
    out: dict[str, Any] = {"jwt": claims}
    where = location(provider)
    if where is not None:
        out["jwtLocation"] = where
    return out


__all__ = [
    "EXPIRED",
    "accepts",
    "add_jwt_space",
    "chain_policies",
    "claim_reads",
    "claim_value",
    "jwt_filter",
    "jwt_space",
    "location",
    "preflight",
    "token_headers",
    "wishes",
    "witness_token",
]
