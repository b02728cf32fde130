"""One AuthorizationPolicy rule -> one Envoy RBAC policy, as istiod builds it.

A rule becomes a list of permission conjunctions (one per ``to``, or one if
there is none) and a list of principal conjunctions (one per ``from``). Each
``when`` condition lands on the permission side (destination.*,
connection.sni, experimental.envoy.filters.*) or the principal side (all
others) and is appended to every conjunction of that side. Field order inside
a conjunction follows istiod's, so the generated config compares equal to
istiod's byte for byte once serialized.

Every node carries a Note that points at the field in the user's file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from msgspec import Struct, field

from meshauthz.envoy.rbac.model import (
    Action,
    IdAnd,
    IdAny,
    IdAuthenticated,
    IdDirectRemoteIp,
    IdFilterState,
    IdHeader,
    IdMetadata,
    IdNot,
    IdOr,
    IdRemoteIp,
    MetadataMatcher,
    Note,
    PermAnd,
    PermAny,
    PermDestinationIp,
    PermDestinationPort,
    PermHeader,
    Permission,
    PermMetadata,
    PermNot,
    PermOr,
    PermRequestedServerName,
    PermUriTemplate,
    PermUrlPath,
    Policy,
    Principal,
    StringMatcher,
    ValueMatcher,
)
from meshauthz.errors import Location
from meshauthz.resources.istio import Rule
from meshauthz.resources.objects import AuthorizationPolicy
from meshauthz.translate import matchers as m
from meshauthz.translate.trustdomain import TrustDomainBundle

PEER_PRINCIPAL_FILTER_STATE = "io.istio.peer_principal"

# Attribute keys of `when` conditions (and the fields that share a generator).
SOURCE_IP = "source.ip"
REMOTE_IP = "remote.ip"
SOURCE_NAMESPACE = "source.namespace"
SOURCE_SERVICE_ACCOUNT = "source.serviceAccount"
SOURCE_TRUST_DOMAIN = "source.trustDomain"
SOURCE_PRINCIPAL = "source.principal"
REQUEST_PRINCIPAL = "request.auth.principal"
REQUEST_AUDIENCES = "request.auth.audiences"
REQUEST_PRESENTER = "request.auth.presenter"
REQUEST_CLAIMS = "request.auth.claims"
REQUEST_HEADERS = "request.headers"
DESTINATION_IP = "destination.ip"
DESTINATION_PORT = "destination.port"
CONNECTION_SNI = "connection.sni"
ENVOY_FILTER = "experimental.envoy.filters."
# Keys istiod uses internally for operation fields.
METHOD_KEY = ":method"
HOST_KEY = ":authority"
PATH_KEY = "path-matcher"


class InvalidRule(ValueError):
    """The rule cannot be modelled at all (istiod skips it for every action)."""


class RuleDropped(ValueError):
    """An ALLOW rule had a value that cannot be generated: istiod drops the rule.
    ``http_only``: the field as written, when the value is an HTTP-only field on TCP."""

    def __init__(self, message: str, http_only: str | None = None) -> None:
        super().__init__(message)
        self.http_only = http_only


class HttpOnly(m.GenerationError):
    """An HTTP-only field on a TCP chain."""


# --- the model ----------------------------------------------------------------


class _Value(Struct):
    text: str
    index: int  # position in the list as written (for the note's line)


class _Field(Struct):
    """One attribute of a from/to/when element with its values and not-values.
    Objects for `when` conditions are shared by every conjunction of their
    side, as in istiod (this matters for trust-domain rewriting)."""

    key: str
    kind: str
    values: list[_Value]
    not_values: list[_Value]
    section: str
    name: str  # the field as the user wrote it, e.g. source.principals
    not_name: str
    path: tuple[str | int, ...]
    not_path: tuple[str | int, ...]


class Problem(Struct):
    """Something istiod logs while translating (and then skips or ignores)."""

    severity: str  # "error": istiod logs an error; "info": a debug-level note
    message: str
    policy: str | None = None
    rule: int | None = None
    location: Location | None = None
    provider: str | None = None
    # An HTTP-only field (as written) that a TCP chain left out, or for which it
    # dropped the rule (ALLOW).
    http_only: str | None = None


# Leaf matchers (a principal, a method, a path) by kind and value, shared by
# every rule of a mesh (``TranslationCache.leaves``): a value written in many
# policies is then one object.
Leaves = dict[tuple[str, str], Any]
_Leaf = TypeVar("_Leaf")


class _Context:
    """One rule's translation. A plain class, not a dataclass: a dataclass's
    methods are compiled when its module is imported (start-up)."""

    __slots__ = (
        "action",
        "base",
        "file",
        "for_tcp",
        "leaves",
        "line_at",
        "policy",
        "problems",
        "record",
        "rule",
        "use_authenticated",
    )

    def __init__(
        self,
        record: AuthorizationPolicy,
        rule: int,
        action: Action,
        for_tcp: bool,
        use_authenticated: bool,
        problems: list[Problem],
        leaves: Leaves,
    ) -> None:
        self.record = record
        self.rule = rule
        self.action = action
        self.for_tcp = for_tcp
        self.use_authenticated = use_authenticated
        self.problems = problems
        self.leaves = leaves
        self.policy = f"{record.namespace}/{record.name}"  # one string for all notes
        doc = record.doc
        self.file = doc.file
        self.base: tuple[str | int, ...] = record.base
        self.line_at: Callable[[tuple[str | int, ...]], int | None] = doc.line_finder()

    def note(
        self,
        path: tuple[str | int, ...],
        section: str | None = None,
        field: str | None = None,
        value: str | None = None,
    ) -> Note:
        line = self.line_at(self.base + path)
        return Note(self.policy, self.rule, section, field, value, self.file, line)

    def note_at(self, path: tuple[str | int, ...], section: str, field: str, value: str) -> Note:
        """``note`` of a path already inside the document (``base`` + the path)."""
        return Note(self.policy, self.rule, section, field, value, self.file, self.line_at(path))

    def leaf(self, kind: str, value: str, make: Callable[..., _Leaf], *args: Any) -> _Leaf:
        """``make(*args)``, the leaf matcher of ``value`` as a ``kind``: made once."""
        key = (kind, value)
        hit = self.leaves.get(key)
        if hit is None:
            hit = self.leaves[key] = make(*args)
        return hit


class RuleModel(Struct):
    permissions: list[list[_Field]] = field(default_factory=list)
    principals: list[list[_Field]] = field(default_factory=list)
    permission_paths: list[tuple[tuple[str | int, ...], str | None]] = field(default_factory=list)
    principal_paths: list[tuple[tuple[str | int, ...], str | None]] = field(default_factory=list)


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def _not(name: str) -> str:
    return "not" + name[:1].upper() + name[1:]


Spec = tuple[str, str, str, str, str, str]


def _fields(*table: tuple[str, str, str]) -> tuple[Spec, ...]:
    """(written field, attribute key, generator, its negation as written, and
    both as model attributes) for each of ``table``'s fields."""
    return tuple(
        (name, key, kind, _not(name), _snake(name), _snake(_not(name))) for name, key, kind in table
    )


SOURCE_FIELDS = _fields(
    # (written field, attribute key, generator) in istiod's output order
    ("principals", SOURCE_PRINCIPAL, "principal"),
    ("requestPrincipals", REQUEST_PRINCIPAL, "request_principal"),
    ("serviceAccounts", SOURCE_SERVICE_ACCOUNT, "service_account"),
    ("trustDomains", SOURCE_TRUST_DOMAIN, "trust_domain"),
    ("namespaces", SOURCE_NAMESPACE, "namespace"),
    ("remoteIpBlocks", REMOTE_IP, "remote_ip"),
    ("ipBlocks", SOURCE_IP, "source_ip"),
)
OPERATION_FIELDS = _fields(
    ("hosts", HOST_KEY, "host"),
    ("methods", METHOD_KEY, "method"),
    ("paths", PATH_KEY, "path"),
    ("ports", DESTINATION_PORT, "port"),
)
_PERMISSION_KINDS = frozenset(
    {"host", "method", "path", "port", "destination_ip", "sni", "envoy_filter"}
)
# Generators that make one matcher for all values (not one per value).
_EXTENDED = frozenset({"request_principal", "audiences", "presenter", "claims", "envoy_filter"})


def _when_kind(key: str) -> str | None:
    exact = {
        DESTINATION_IP: "destination_ip",
        DESTINATION_PORT: "port",
        CONNECTION_SNI: "sni",
        SOURCE_IP: "source_ip",
        REMOTE_IP: "remote_ip",
        SOURCE_NAMESPACE: "namespace",
        SOURCE_TRUST_DOMAIN: "trust_domain",
        SOURCE_SERVICE_ACCOUNT: "service_account",
        SOURCE_PRINCIPAL: "principal",
        REQUEST_PRINCIPAL: "request_principal",
        REQUEST_AUDIENCES: "audiences",
        REQUEST_PRESENTER: "presenter",
    }
    # istiod tests the exact keys and the envoy-filter prefix in this order;
    # headers and claims are recognised by prefix only.
    for k in (DESTINATION_IP, DESTINATION_PORT, CONNECTION_SNI):
        if key == k:
            return exact[k]
    if key.startswith(ENVOY_FILTER):
        return "envoy_filter"
    if key in exact:
        return exact[key]
    if key.startswith(REQUEST_HEADERS):
        return "header"
    if key.startswith(REQUEST_CLAIMS):
        return "claims"
    return None


def _values(items: tuple[str, ...]) -> list[_Value]:
    return [_Value(v, i) for i, v in enumerate(items)]


def new_model(record: AuthorizationPolicy, index: int, rule: Rule) -> RuleModel:
    """Arrange a rule's fields as istiod does. Raises InvalidRule for an
    unknown `when` key."""
    base = ("spec", "rules", index)
    base_perm: list[_Field] = []
    base_prin: list[_Field] = []
    for c, cond in enumerate(rule.when):
        kind = _when_kind(cond.key)
        if kind is None:
            raise InvalidRule(f"unknown attribute {cond.key}")
        if not cond.values and not cond.not_values:
            continue
        f = _Field(
            cond.key,
            kind,
            _values(cond.values),
            _values(cond.not_values),
            "when",
            cond.key,
            cond.key,
            (*base, "when", c, "values"),
            (*base, "when", c, "notValues"),
        )
        (base_perm if kind in _PERMISSION_KINDS else base_prin).append(f)

    model = RuleModel()
    for j, frm in enumerate(rule.from_):
        fields = _clause_fields(frm.source, SOURCE_FIELDS, "from", "source", (*base, "from", j))
        model.principals.append(fields + base_prin)
        model.principal_paths.append(((*base, "from", j), "from"))
    if not rule.from_:
        model.principals.append(list(base_prin))
        model.principal_paths.append((base, None))

    for j, to in enumerate(rule.to):
        fields = _clause_fields(to.operation, OPERATION_FIELDS, "to", "operation", (*base, "to", j))
        model.permissions.append(fields + base_perm)
        model.permission_paths.append(((*base, "to", j), "to"))
    if not rule.to:
        model.permissions.append(list(base_perm))
        model.permission_paths.append((base, None))
    return model


def migrate_trust_domain(model: RuleModel, bundle: TrustDomainBundle) -> None:
    """Rewrite principals and trust domains for the bundle's aliases, in
    place. Like istiod, a shared `when` condition is rewritten once per
    principal conjunction it belongs to."""
    for fields in model.principals:
        for f in fields:
            if f.key == SOURCE_PRINCIPAL:
                f.values = _replace(f.values, bundle)
                f.not_values = _replace(f.not_values, bundle)
            elif f.key == SOURCE_TRUST_DOMAIN:
                f.values = _expand(f.values, bundle)
                f.not_values = _expand(f.not_values, bundle)


def _replace(values: list[_Value], bundle: TrustDomainBundle) -> list[_Value]:
    out: list[_Value] = []
    for v in values:
        texts = bundle.replace_aliases(v.text)
        if len(texts) == 1 and texts[0] is v.text:  # as written (most principals)
            out.append(v)
        else:
            out.extend(_Value(t, v.index) for t in texts)
    return out


def _expand(values: list[_Value], bundle: TrustDomainBundle) -> list[_Value]:
    out: list[_Value] = []
    seen: set[str] = set()
    for v in values:
        for t in bundle.expand_trust_domain(v.text):
            if t not in seen:
                seen.add(t)
                out.append(_Value(t, v.index))
    return out


# --- generation -------------------------------------------------------------------


def generate(
    model: RuleModel,
    record: AuthorizationPolicy,
    index: int,
    action: Action,
    *,
    for_tcp: bool,
    use_authenticated: bool = True,
    problems: list[Problem] | None = None,
    leaves: Leaves | None = None,
) -> Policy:
    """The Envoy policy for a modelled rule. Raises RuleDropped when an ALLOW
    rule has a value that cannot be generated (for other actions the value is
    left out and the match gets broader; that is recorded in ``problems``).
    ``leaves``: leaf matchers made for other rules, reused (and added to)."""
    ctx = _Context(
        record,
        index,
        action,
        for_tcp,
        use_authenticated,
        problems if problems is not None else [],
        {} if leaves is None else leaves,
    )
    perms: list[Permission] = []
    for fields, (path, section) in zip(model.permissions, model.permission_paths, strict=True):
        note = ctx.note(path, section or "to")
        parts: list[Permission] = []
        for f in fields:
            parts.extend(_permissions(f, ctx))
        perms.append(PermAnd(tuple(parts) if parts else (PermAny(note=note),), note=note))
    ids: list[Principal] = []
    for fields, (path, section) in zip(model.principals, model.principal_paths, strict=True):
        note = ctx.note(path, section or "from")
        pparts: list[Principal] = []
        for f in fields:
            pparts.extend(_principals(f, ctx))
        ids.append(IdAnd(tuple(pparts) if pparts else (IdAny(note=note),), note=note))
    return Policy(tuple(perms), tuple(ids), note=ctx.note(("spec", "rules", index)))


def _attempt(ctx: _Context, f: _Field, negated: bool, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, or None when it fails for a non-ALLOW rule (value left out)."""
    try:
        return fn(*args)
    except m.GenerationError as e:
        _left_out(ctx, f, negated, e)
        return None


def _left_out(ctx: _Context, f: _Field, negated: bool, e: m.GenerationError) -> None:
    """A value that cannot be generated: istiod drops an ALLOW rule (RuleDropped),
    and leaves the value out of any other."""
    name = f.not_name if negated else f.name
    written = name if name.startswith(f.section) else f"{f.section}.{name}"
    http_only = written if isinstance(e, HttpOnly) else None
    if ctx.action is Action.ALLOW:
        raise RuleDropped(str(e), http_only) from None
    loc = ctx.record.location(*(f.not_path if negated else f.path))
    ctx.problems.append(
        Problem(
            "info",
            f"{name}: {e}; left out, so the rule matches more requests",
            ctx.policy,
            ctx.rule,
            loc,
            http_only=http_only,
        )
    )


def _value_note(ctx: _Context, f: _Field, v: _Value, negated: bool) -> Note:
    path = f.not_path if negated else f.path
    return ctx.note((*path, v.index), f.section, f.not_name if negated else f.name, v.text)


def _list_note(ctx: _Context, f: _Field, negated: bool) -> Note:
    return ctx.note(f.not_path if negated else f.path, f.section, f.not_name if negated else f.name)


def _joined_note(ctx: _Context, f: _Field, values: list[_Value], negated: bool) -> Note:
    if len(values) == 1:
        return _value_note(ctx, f, values[0], negated)
    n = _list_note(ctx, f, negated)
    return Note(
        n.policy, n.rule, n.section, n.field, ", ".join(v.text for v in values), n.file, n.line
    )


def _permissions(f: _Field, ctx: _Context) -> list[Permission]:
    out: list[Permission] = []
    for negated, values in ((False, f.values), (True, f.not_values)):
        if not values:
            continue
        wrap_note = _list_note(ctx, f, negated)
        if f.kind in _EXTENDED:
            note = _joined_note(ctx, f, values, negated)
            p = _attempt(ctx, f, negated, _permission_all, f, values, ctx, note)
            if p is not None:
                out.append(PermNot(p, note=wrap_note) if negated else p)
            continue
        ors: list[Permission] = []
        path = ctx.base + (f.not_path if negated else f.path)
        name = f.not_name if negated else f.name
        for v in values:
            note = ctx.note_at((*path, v.index), f.section, name, v.text)
            try:
                ors.append(_permission_one(f, v.text, ctx, note))
            except m.GenerationError as e:
                _left_out(ctx, f, negated, e)
        if ors:
            o = PermOr(tuple(ors), note=wrap_note)
            out.append(PermNot(o, note=wrap_note) if negated else o)
    return out


def _principals(f: _Field, ctx: _Context) -> list[Principal]:
    out: list[Principal] = []
    for negated, values in ((False, f.values), (True, f.not_values)):
        if not values:
            continue
        wrap_note = _list_note(ctx, f, negated)
        if f.kind in _EXTENDED:
            p = _attempt(ctx, f, negated, _principal_all, f, values, ctx, negated)
            if p is not None:
                out.append(IdNot(p, note=wrap_note) if negated else p)
            continue
        ors: list[Principal] = []
        path = ctx.base + (f.not_path if negated else f.path)
        name = f.not_name if negated else f.name
        for v in values:
            note = ctx.note_at((*path, v.index), f.section, name, v.text)
            try:
                ors.append(_principal_one(f, v.text, ctx, note))
            except m.GenerationError as e:
                _left_out(ctx, f, negated, e)
        if ors:
            o = IdOr(tuple(ors), note=wrap_note)
            out.append(IdNot(o, note=wrap_note) if negated else o)
    return out


def _http_only(f: _Field, ctx: _Context) -> None:
    if ctx.for_tcp:
        raise HttpOnly(f'"{f.key}" is HTTP only')


def _permission_one(f: _Field, v: str, ctx: _Context, note: Note) -> Permission:
    match f.kind:  # the most written first: a match tries its cases in turn
        case "method":
            _http_only(f, ctx)
            return PermHeader(ctx.leaf("method", v, m.header_matcher, METHOD_KEY, v), note=note)
        case "path":
            _http_only(f, ctx)
            if m.contains_path_template(v):
                return PermUriTemplate(m.path_template(v), note=note)
            return PermUrlPath(ctx.leaf("path", v, m.string_matcher, v), note=note)
        case "host":
            _http_only(f, ctx)
            return PermHeader(ctx.leaf("host", v, m.host_matcher, v), note=note)
        case "port":
            return PermDestinationPort(m.parse_port(v), note=note)
        case "destination_ip":
            return PermDestinationIp(m.parse_cidr(v), note=note)
        case "sni":
            return PermRequestedServerName(m.string_matcher(v), note=note)
    raise m.GenerationError("unimplemented")


def _permission_all(f: _Field, values: list[_Value], ctx: _Context, note: Note) -> Permission:
    if f.kind != "envoy_filter":
        raise m.GenerationError("unimplemented")
    # experimental.envoy.filters.<filter>[<key>]: a dynamic-metadata match.
    body = f.key.removeprefix("experimental.").removesuffix("]")
    filter_name, sep, key = body.partition("[")
    if not sep:
        raise m.GenerationError(f"invalid key: {f.key}")
    matchers: list[ValueMatcher] = []
    for v in values:
        t = v.text
        if t.startswith("[") and t.endswith("]"):
            inner = m.string_value(m.string_matcher(t.strip("[]")))
            matchers.append(ValueMatcher("list", one_of=inner))
        else:
            matchers.append(m.string_value(m.string_matcher(t)))
    return PermMetadata(MetadataMatcher(filter_name, (key,), m.or_values(matchers)), note=note)


def _peer(s: StringMatcher, ctx: _Context, note: Note) -> Principal:
    if ctx.use_authenticated:
        return IdAuthenticated(s, note=note)
    return IdFilterState(PEER_PRINCIPAL_FILTER_STATE, s, note=note)


def _principal_one(f: _Field, v: str, ctx: _Context, note: Note) -> Principal:
    match f.kind:  # the most written first: a match tries its cases in turn
        case "principal":
            return _peer(ctx.leaf("principal", v, m.string_matcher, v, m.SPIFFE_PREFIX), ctx, note)
        case "source_ip":
            return IdDirectRemoteIp(m.parse_cidr(v), note=note)
        case "remote_ip":
            return IdRemoteIp(m.parse_cidr(v), note=note)
        case "namespace":
            pattern = ".*".join(m.quote_meta(p) for p in v.split("*"))
            return _peer(m.regex(f".*/ns/{pattern}/.*"), ctx, note)
        case "service_account":
            ns, sep, sa = v.partition("/")
            if not sep:
                ns, sa = ctx.record.namespace, v
            r = f"spiffe://.+/ns/{m.quote_meta(ns)}/(.+/|)sa/{m.quote_meta(sa)}(/.+)?"
            return _peer(m.regex(r), ctx, note)
        case "trust_domain":
            if v == "*":
                s = m.prefix(m.SPIFFE_PREFIX)
            elif "*" not in v:
                s = m.prefix(f"{m.SPIFFE_PREFIX}{v}/")
            else:
                a, _, b = v.partition("*")
                s = m.regex(f"spiffe://{m.quote_meta(a)}[^/]*{m.quote_meta(b)}/.*")
            return _peer(s, ctx, note)
        case "header":
            _http_only(f, ctx)
            name = m.name_in_brackets(f.key.removeprefix(REQUEST_HEADERS))
            return IdHeader(m.header_matcher(name, v), note=note)
    raise m.GenerationError("unimplemented")


def _request_principal(v: str) -> tuple[StringMatcher, StringMatcher]:
    """(issuer, subject) matchers for ``iss/sub``; the issuer may contain '/'."""
    i = v.rfind("/")
    found = i >= 0
    iss, sub = (v[:i], v[i + 1 :]) if found else (v, "")
    if v == "*":
        return m.MATCH_ANY, m.MATCH_ANY
    if v.startswith("*"):
        if found:
            return (m.MATCH_ANY if iss == "*" else m.suffix(iss[1:])), m.exact(sub)
        return m.MATCH_ANY, m.suffix(v[1:])
    if v.endswith("*"):
        if found:
            return m.exact(iss), (m.MATCH_ANY if sub == "*" else m.prefix(sub[:-1]))
        return m.prefix(v[:-1]), m.MATCH_ANY
    return m.exact(iss), m.exact(sub)


def _principal_all(f: _Field, values: list[_Value], ctx: _Context, negated: bool) -> Principal:
    _http_only(f, ctx)
    note = _joined_note(ctx, f, values, negated)
    match f.kind:
        case "request_principal":
            alts: list[Principal] = []
            for v in values:
                vn = _value_note(ctx, f, v, negated)
                iss, sub = _request_principal(v.text)
                alts.append(
                    IdAnd(
                        (
                            IdMetadata(m.jwt_claim_matcher("iss", iss), note=vn),
                            IdMetadata(m.jwt_claim_matcher("sub", sub), note=vn),
                        ),
                        note=vn,
                    )
                )
            return alts[0] if len(alts) == 1 else IdOr(tuple(alts), note=note)
        case "audiences" | "presenter":
            claim = "aud" if f.kind == "audiences" else "azp"
            vm = m.string_or_values([v.text for v in values])
            return IdMetadata(m.jwt_claims_list_matcher([claim], vm), note=note)
        case "claims":
            claims = m.names_in_nested_brackets(f.key.removeprefix(REQUEST_CLAIMS))
            vm = m.string_or_values([v.text for v in values])
            return IdMetadata(m.jwt_claims_list_matcher(claims, vm), note=note)
    raise m.GenerationError("unimplemented")


# --- the never-matching policy -----------------------------------------------------


def match_never(record: AuthorizationPolicy) -> Policy:
    """What istiod emits for a policy without rules: it matches no request."""
    loc = record.location("spec")
    note = Note(f"{record.namespace}/{record.name}", None, None, "rules", None, loc.file, loc.line)
    return Policy(
        (PermNot(PermAny(note=note), note=note),),
        (IdNot(IdAny(note=note), note=note),),
        note=note,
    )


def _clause_fields(
    obj: Any, table: tuple[Spec, ...], section: str, holder: str, path: tuple[str | int, ...]
) -> list[_Field]:
    """The fields of one ``from.source`` or ``to.operation`` that hold values, in
    ``table`` order: a field not written holds its default, no values, and an
    empty list in a proto is the same as one not written."""
    fields: list[_Field] = []
    if obj is None:
        return fields
    p = (*path, holder)
    for name, key, kind, not_name, attr, not_attr in table:
        vals = getattr(obj, attr)
        nots = getattr(obj, not_attr)
        if not vals and not nots:
            continue
        fields.append(
            _Field(
                key,
                kind,
                _values(vals),
                _values(nots),
                section,
                f"{holder}.{name}",
                f"{holder}.{not_name}",
                (*p, name),
                (*p, not_name),
            )
        )
    return fields
