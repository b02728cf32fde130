"""The requests to one destination workload and port, as solver variables.

The variables are what the request view (``meshauthz.decide.view``) hands the
filters: the caller (an mTLS identity or plaintext), the connection's source
address and the remote address after X-Forwarded-For, the SNI and, for HTTP,
the method, the path after normalization (without its query), the Host
(``:authority``) and each header a matcher names (absent, or one or more
values). The destination address and port are fixed by the destination.

What the space holds, and why it is exact:

- strings are printable ASCII (what the HTTP/1.1 codec passes in a request
  target; header values also take tabs inside), header values without the
  leading and trailing blanks the codec trims;
- a header named by k value matchers gets k values (any request's values can
  be cut down to one witness value per matcher without changing any match);
  a header Envoy's codec joins into one entry gets one;
- the path ranges over strings starting with ``/`` without ``?`` and ``#``,
  a superset of what normalization yields; a witness whose path does not
  normalize to itself is excluded and the question asked again
  (``meshauthz.symbolic.witness``);
- headers the connection manager itself adds, rewrites or drops (``:path``
  with its query, ``x-forwarded-*``, ``x-request-id``, ``x-envoy-*``,
  hop-by-hop and framing headers) are not encoded: a matcher on one makes
  the answer unknown;
- behind a JWT filter, the token the request presents (``JwtSpace``):
  none, one the filter rejects, or one it accepts, with the claims the
  matchers read (``meshauthz.symbolic.jwt`` says why that is every case).
"""

from __future__ import annotations

import ipaddress

import z3
from msgspec import Struct, field

from meshauthz.envoy.codec import JOINED_HEADERS
from meshauthz.envoy.hcm import HTTP1_METHODS
from meshauthz.envoy.jwt_authn import JwtAuthentication
from meshauthz.envoy.rbac.matchers import ascii_lower
from meshauthz.symbolic.regex import Unencodable

_STR = z3.StringSort()
_GRAPH = z3.Range("!", "~")  # printable ASCII without space
_TEXT = z3.Union(z3.Range(" ", "~"), z3.Re("\t"))
# a header value as the codec passes it on: no blank at either end
_VALUE = z3.Option(z3.Concat(_GRAPH, z3.Option(z3.Concat(z3.Star(_TEXT), _GRAPH))))
_AUTHORITY = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@[]%"
_TCHAR = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

# Headers the connection manager writes or drops before the filters
# (meshauthz.envoy.request_headers), framing headers the codec acts on, and
# pseudo headers other than :authority and :method.
_NOT_ENCODED = frozenset(
    {
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-client-cert",
        "x-request-id",
        "x-client-trace-id",
        "keep-alive",
        "proxy-connection",
        "connection",
        "upgrade",
        "te",
        "content-length",
        "transfer-encoding",
    }
)


def _path_char() -> z3.ReRef:
    # printable ASCII without space, "?" (the query) and "#" (the fragment)
    return z3.Union(z3.Range("!", '"'), z3.Range("$", ">"), z3.Range("@", "~"))


def char_class(chars: str) -> z3.ReRef:
    """One character of ``chars``, as one flat union of ranges (the solver is
    much faster on those than on nested unions of single characters)."""
    codes = sorted({ord(c) for c in chars})
    runs: list[tuple[int, int]] = []
    for c in codes:
        if runs and runs[-1][1] == c - 1:
            runs[-1] = (runs[-1][0], c)
        else:
            runs.append((c, c))
    parts = [z3.Range(chr(a), chr(b)) for a, b in runs]
    return parts[0] if len(parts) == 1 else z3.Union(*parts)


_PATH_CHAR = _path_char()
# The methods a request in the space carries: every request in it has a :path.
# CONNECT has none (its target is host:port, envoy.request_target; with a path
# it is refused before the filters), so it is left out.
METHODS: tuple[str, ...] = tuple(sorted(HTTP1_METHODS - {"CONNECT"}))

# A JWT claim's characters: U+0000 to U+D7FF. A payload holds any code point
# but the surrogates; the matchers may name only characters below
# ``CLAIM_NAMED_LIMIT`` (``matchers`` refuses others), so every character from
# there on, kept or not, is told apart from none of U+D000..U+D7FF by any of
# them: a payload and the same with those characters replaced are decided
# alike. (One range: the solver is much slower on a union of two.)
CLAIM_NAMED_LIMIT = 0xD000
CLAIM_CHAR = z3.Range("\x00", "\ud7ff")
# A claim's value, as far as string and list matchers tell values apart.
OTHER, STRING, LIST = 0, 1, 2


class ClaimVar(Struct):
    """The value at one path of the JWT payload (below its metadata key):
    ``kind`` OTHER (absent, a number, a bool, null or an object: no string or
    list matcher matches it), STRING (``string``) or LIST (the strings
    ``items[i]`` with ``sent[i]``; other elements never match and are left out)."""

    path: tuple[str, ...]
    kind: z3.ArithRef
    string: z3.SeqRef
    sent: list[z3.BoolRef]
    items: list[z3.SeqRef]

    def strings(self) -> list[z3.SeqRef]:
        return [self.string, *self.items]


class JwtSpace(Struct):
    """The token a request presents to the destination's JWT filter: ``token``
    (one is presented where a provider reads), ``accepted`` (a provider
    accepts it; its payload is then the claims), and each claim a matcher reads."""

    key: str  # the metadata key the payload is written under
    config: JwtAuthentication  # the filter (the same on each side that has one)
    token: z3.BoolRef = field(default_factory=lambda: z3.Bool("jwt_token"))
    accepted: z3.BoolRef = field(default_factory=lambda: z3.Bool("jwt_accepted"))
    claims: dict[tuple[str, ...], ClaimVar] = field(default_factory=dict)

    def claim(self, path: tuple[str, ...], slots: int = 0) -> ClaimVar:
        """The variable of the claim at ``path``, with at least ``slots`` list items."""
        var = self.claims.get(path)
        if var is None:
            i = len(self.claims)
            var = self.claims[path] = ClaimVar(
                path, z3.Int(f"c{i}_kind"), z3.String(f"c{i}_string"), [], []
            )
        while len(var.items) < slots:
            k = len(var.items)
            var.sent.append(z3.Bool(f"{var.kind}_sent{k}"))
            var.items.append(z3.String(f"{var.kind}_item{k}"))
        return var


class HeaderVar(Struct):
    """One request header: up to ``len(values)`` entries, entry i sent iff ``sent[i]``."""

    name: str
    sent: list[z3.BoolRef]
    values: list[z3.SeqRef]

    def present(self) -> z3.BoolRef:
        return z3.Or(*self.sent) if len(self.sent) > 1 else self.sent[0]


class Space(Struct):
    """The request variables for one destination (shared by both sides of a comparison)."""

    http: bool
    plaintext: z3.BoolRef = field(default_factory=lambda: z3.Bool("plaintext"))
    principal: z3.SeqRef = field(default_factory=lambda: z3.String("principal"))
    src_v6: z3.BoolRef = field(default_factory=lambda: z3.Bool("src_v6"))
    src: z3.BitVecRef = field(default_factory=lambda: z3.BitVec("src", 128))
    remote_v6: z3.BoolRef = field(default_factory=lambda: z3.Bool("remote_v6"))
    remote: z3.BitVecRef = field(default_factory=lambda: z3.BitVec("remote", 128))
    sni: z3.SeqRef = field(default_factory=lambda: z3.String("sni"))
    method: z3.SeqRef = field(default_factory=lambda: z3.String("method"))
    path: z3.SeqRef = field(default_factory=lambda: z3.String("path"))
    host: z3.SeqRef = field(default_factory=lambda: z3.String("host"))
    headers: dict[str, HeaderVar] = field(default_factory=dict)
    jwt: JwtSpace | None = None  # with a JWT filter on a side
    extra: list[z3.BoolRef] = field(default_factory=list)  # e.g. the callers allowed
    # The string variables some matcher reads (the others keep their defaults
    # in witnesses and are left out of the constraints).
    used: set[str] = field(default_factory=set)
    # The Host values the policies write, as written: a Host matched without
    # regard to case reads best in a witness as the policy wrote it.
    hosts_named: list[str] = field(default_factory=list)

    def use(self, name: str) -> z3.SeqRef:
        """The variable ``name`` (principal, sni, method, path, host), marked as read."""
        self.used.add(name)
        var: z3.SeqRef = getattr(self, name)
        return var

    def add_header(self, name: str, slots: int) -> None:
        name = ascii_lower(name)
        if name in self.headers or not header_encodable(name):
            return
        n = 1 if name in JOINED_HEADERS else max(1, slots)
        i = len(self.headers)
        self.headers[name] = HeaderVar(
            name,
            [z3.Bool(f"h{i}_sent{k}") for k in range(n)],
            [z3.String(f"h{i}_value{k}") for k in range(n)],
        )

    def domain(self) -> z3.BoolRef:
        """What every request in the space satisfies."""
        used = self.used
        c: list[z3.BoolRef] = [
            _ip_ok(self.src_v6, self.src),
            _ip_ok(self.remote_v6, self.remote),
            *self.extra,
        ]
        if "principal" in used:
            c.append(z3.InRe(self.principal, z3.Plus(_GRAPH)))
        if "sni" in used:
            c.append(z3.InRe(self.sni, z3.Star(_GRAPH)))
        if self.http:
            c.append(_method_domain(self.method))
            if "path" in used:
                c.append(z3.InRe(self.path, z3.Concat(z3.Re("/"), z3.Star(_PATH_CHAR))))
            if "host" in used:
                c.append(z3.InRe(self.host, z3.Plus(char_class(_AUTHORITY))))
            for h in self.headers.values():
                if h.name not in used:
                    continue
                for v in h.values:
                    # no blank at either end: the codec trims them
                    c.append(z3.InRe(v, _VALUE))
            ct = self.headers.get("content-type")
            if ct is not None and "content-type" in used:
                c.append(z3.Implies(self.method == z3.StringVal("QUERY"), ct.present()))
        return z3.And(*c)


# The method variable's domain, built once (the variable is the same in every space).
_METHOD_DOMAINS: dict[int, z3.BoolRef] = {}


def _method_domain(method: z3.SeqRef) -> z3.BoolRef:
    hit = _METHOD_DOMAINS.get(method.get_id())
    if hit is None:
        hit = _METHOD_DOMAINS[method.get_id()] = z3.Or(
            *[method == z3.StringVal(m) for m in METHODS]
        )
    return hit


def _ip_ok(v6: z3.BoolRef, ip: z3.BitVecRef) -> z3.BoolRef:
    return z3.Or(v6, z3.Extract(127, 32, ip) == 0)


def ip_value(address: str) -> tuple[z3.BitVecRef, z3.BoolRef]:
    """An address as the space holds it: its 128 bits and whether it is IPv6."""
    a = ipaddress.ip_address(address)
    return z3.BitVecVal(int(a), 128), z3.BoolVal(a.version == 6)


def model_ip(model: z3.ModelRef, v6: z3.BoolRef, ip: z3.BitVecRef) -> str:
    """The address a model gives an address variable (``ip_value`` reversed)."""
    n = model.eval(ip, model_completion=True)
    assert isinstance(n, z3.BitVecNumRef)
    if z3.is_true(model.eval(v6, model_completion=True)):
        return str(ipaddress.IPv6Address(n.as_long()))
    return str(ipaddress.IPv4Address(n.as_long() & 0xFFFFFFFF))


def read_of(formulas: list[z3.BoolRef], variables: dict[str, z3.ExprRef]) -> frozenset[str]:
    """The names of the ``variables`` that ``formulas`` read: those whose
    replacement by a fresh variable changes them (z3 shares equal terms, so a
    formula without the variable comes back as the very same term)."""
    whole = z3.And(*formulas)
    out = set()
    for name, var in variables.items():
        if not z3.substitute(whole, (var, z3.FreshConst(var.sort()))).eq(whole):
            out.add(name)
    return frozenset(out)


def header_encodable(name: str) -> bool:
    """Whether a header with this (lower case) name is a request variable: the
    ones a client sends as they are. Raises ``Unencodable`` for the headers the
    connection manager writes; False for names no client can send (a matcher
    on them sees no header)."""
    if name in (":authority", ":method"):
        return False  # the Host and the method variables
    if name in _NOT_ENCODED or name.startswith(("x-envoy-", ":")):
        raise Unencodable(f"a matcher on the header {name!r}, which the proxy itself writes")
    if name == "host":
        return False  # the codec moves it to :authority
    return bool(name) and all(c in _TCHAR for c in name)


__all__ = [
    "CLAIM_CHAR",
    "CLAIM_NAMED_LIMIT",
    "LIST",
    "METHODS",
    "OTHER",
    "STRING",
    "ClaimVar",
    "HeaderVar",
    "JwtSpace",
    "Space",
    "header_encodable",
    "ip_value",
    "model_ip",
    "read_of",
]
