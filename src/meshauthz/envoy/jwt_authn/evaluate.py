"""What Envoy's jwt_authn filter does with a request, for a ``JwtAuthentication``.

The evaluation follows Envoy's filter (``jwt_authn/filter.cc``,
``verifier.cc``, ``authenticator.cc``, ``extractor.cc`` and
``source/common/jwt``), including its less obvious parts, each checked against
a real Envoy 1.40 run (see ``tests/envoy_filters/test_jwt_authn.py``):

* the first rule whose path prefix matches picks the requirement; no rule,
  or a rule without one, lets the request through unverified;
* a provider checks every token found in its own locations, last found
  first; the first failure fails the provider; no location configured means
  Envoy's defaults (``Authorization: Bearer <token>``, then ``access_token``);
* a verified token is removed from the request unless ``forward`` is set
  (a header is removed with all its lines, a query parameter with all its
  occurrences), so later providers no longer see it;
* a group ``requires_any`` that fails reports the last real error of its
  children, else "issuer not configured", else "missing", which an
  ``allow_missing`` member turns into success; ``requires_all`` fails with its
  first failing child;
* a rejected audience is a 403, every other failure a 401, each with Envoy's
  status text as the body;
* the payload lands in dynamic metadata ``envoy.filters.http.jwt_authn`` under
  the provider's ``payload_in_metadata`` key (space-delimited claims split
  into lists); a later verified token overwrites an earlier one;
* with ``bypass_cors_preflight`` a CORS preflight is not verified;
* a token's header and payload, and an inline JWKS, are read with the JSON
  rules of Envoy's parser (``token_json``), not Python's: a duplicate key or
  101 levels of nesting is "an invalid JSON", a trailing comma is not.

What cannot be decided offline is said so, never assumed: a raw token whose
provider has its keys elsewhere (``remote_jwks`` or a JWKS file) is evaluated
both ways; when the answer depends on the signature the outcome is
``undecided`` (reason ``unverifiable``) and carries both alternatives. An
inline JWKS that Envoy would refuse makes the whole filter config rejected
(reason ``invalid_jwks``), which a live proxy answers by keeping its previous
config. Claims given as ``claims`` are taken as validly signed and go through
every other check.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import time
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from msgspec import Struct, field
from msgspec.structs import replace

from meshauthz.records import Record

# This module is itself imported on first use (the package's __getattr__), so what
# every evaluation needs is imported here: urllib.parse (a function-level import
# costs 1.5 us a request, 5% of an evaluation without a token). cryptography and
# PyJWT are imported where keys are read and signatures checked: most commands
# never do, and importing them costs more than starting Python.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives import hashes

from .model import (
    JWT_FILTER,
    AllowMissing,
    AllowMissingOrFailed,
    JwtAuthentication,
    JwtProvider,
    ProviderName,
    Requirement,
    RequiresAll,
    RequiresAny,
)
from .token_json import TokenJsonError, parse_struct

CLOCK_SKEW_SECONDS = 60  # jwt_verify kClockSkewInSecond (clock_skew_seconds is not modelled)
DEFAULT_HEADER = ("authorization", "Bearer ")  # extractor.cc default location
DEFAULT_PARAM = "access_token"  # extractor.cc default location
# Request headers Envoy keeps as one inline entry, joining repeated lines with
# ","; any other header keeps one entry per line (observed with Envoy 1.40).
JOINED_HEADERS = frozenset({"authorization", "user-agent"})
# The largest number of unverifiable signatures whose combinations we try.
_MAX_UNKNOWN = 8


class Status(Enum):
    """The jwt_verify statuses the filter can end with, valued by Envoy's text."""

    OK = "OK"
    MISSED = "Jwt is missing"
    NOT_YET_VALID = "Jwt not yet valid"
    EXPIRED = "Jwt is expired"
    BAD_FORMAT = "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
    HEADER_BAD_BASE64 = "Jwt header is an invalid Base64url encoded"
    HEADER_BAD_JSON = "Jwt header is an invalid JSON"
    HEADER_BAD_ALG = "Jwt header [alg] field is required and must be a string"
    HEADER_NOT_IMPLEMENTED_ALG = "Jwt header [alg] is not supported"
    HEADER_BAD_KID = "Jwt header [kid] field is not a string"
    PAYLOAD_BAD_BASE64 = "Jwt payload is an invalid Base64url encoded"
    PAYLOAD_BAD_JSON = "Jwt payload is an invalid JSON"
    ISS_NOT_STRING = "Jwt payload [iss] field is not a string"
    SUB_NOT_STRING = "Jwt payload [sub] field is not a string"
    IAT_NOT_INTEGER = "Jwt payload [iat] field is not an integer"
    IAT_OUT_OF_RANGE = "Jwt payload [iat] field is not a positive 64 bit integer"
    NBF_NOT_INTEGER = "Jwt payload [nbf] field is not an integer"
    NBF_OUT_OF_RANGE = "Jwt payload [nbf] field is not a positive 64 bit integer"
    EXP_NOT_INTEGER = "Jwt payload [exp] field is not an integer"
    EXP_OUT_OF_RANGE = "Jwt payload [exp] field is not a positive 64 bit integer"
    JTI_NOT_STRING = "Jwt payload [jti] field is not a string"
    AUD_NOT_STRING = "Jwt payload [aud] field is not a string or string list"
    SIGNATURE_BAD_BASE64 = "Jwt signature is an invalid Base64url encoded"
    ED25519_SIGNATURE_WRONG_LENGTH = "Jwt ED25519 signature is wrong length"
    UNKNOWN_ISSUER = "Jwt issuer is not configured"
    AUDIENCE_NOT_ALLOWED = "Audiences in Jwt are not allowed"
    VERIFICATION_FAIL = "Jwt verification fails"
    JWKS_PARSE_ERROR = "Jwks is an invalid JSON"
    JWKS_NO_KEYS = "Jwks does not have [keys] field"
    JWKS_BAD_KEYS = "[keys] in Jwks is not an array"
    JWKS_NO_VALID_KEYS = "Jwks doesn't have any valid public key"
    JWKS_KID_ALG_MISMATCH = "Jwks doesn't have key to match kid or alg from Jwt"

    @property
    def http_status(self) -> int:
        # filter.cc onComplete: a rejected audience is Forbidden, the rest Unauthorized.
        return 403 if self is Status.AUDIENCE_NOT_ALLOWED else 401


# --------------------------------------------------------------------------- input


class JwtPresented(Struct, frozen=True):
    """A JWT a client sends: its claims (taken as validly signed) or a raw token.

    It travels in ``Authorization: Bearer <t>`` unless ``header`` (with an
    optional ``prefix`` written before the token) or ``param`` (a query
    parameter) says otherwise.
    """

    claims: Mapping[str, Any] | None = None
    token: str | None = None
    header: str | None = None
    prefix: str = ""
    param: str | None = None

    def __post_init__(self) -> None:
        if (self.claims is None) == (self.token is None):
            raise ValueError("a presented JWT has either claims or a raw token")
        if self.header is not None and self.param is not None:
            raise ValueError("a JWT travels in a header or a query parameter, not both")
        if self.param is not None and self.prefix:
            raise ValueError("a prefix applies to a header, not a query parameter")

    @classmethod
    def from_request(
        cls, jwt: Mapping[str, Any] | None, location: Any | None, token: str | None
    ) -> JwtPresented | None:
        """From the request format's ``jwt`` / ``jwtLocation`` / ``token`` fields.

        ``location`` is anything with ``header``, ``prefix`` and ``param``
        attributes (``request_spec.JwtLocation``).
        """
        if jwt is None and token is None:
            return None
        header = getattr(location, "header", None) if location is not None else None
        prefix = getattr(location, "prefix", "") if location is not None else ""
        param = getattr(location, "param", None) if location is not None else None
        return cls(claims=jwt, token=token, header=header, prefix=prefix or "", param=param)

    def text(self) -> str:
        """The token text on the wire (claims are wrapped in a stand-in token)."""
        if self.token is not None:
            return self.token
        return _claims_token(self.claims or {})


_CLAIMS_SIGNATURE = "bWVzaGF1dGh6LWNsYWltcw"  # base64url("meshauthz-claims")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _claims_token(claims: Mapping[str, Any]) -> str:
    import json  # here, not at the top: start-up of commands that send no claims

    try:
        body = json.dumps(dict(claims), separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"JWT claims must be plain JSON values: {e}") from e
    header = _b64url(b'{"alg":"RS256","typ":"JWT"}')
    return f"{header}.{_b64url(body.encode())}.{_CLAIMS_SIGNATURE}"


# --------------------------------------------------------------------------- providers


class _Key(Struct, frozen=True):
    kty: str
    kid: str
    alg: str
    key: Any  # a cryptography public key, or bytes for "oct"


@lru_cache(maxsize=256)
def jwks_problem(text: str) -> str | None:
    """Why Envoy would refuse ``text`` as a JWKS (None: it has a usable key)."""
    error = parse_jwks(text)[1]
    return None if error is None else f"not a JWKS Envoy accepts: {error.value}"


def parse_jwks(text: str) -> tuple[tuple[_Key, ...], Status | None]:
    """The usable keys of a JWKS, as Envoy's ``Jwks::createFrom(JWKS)`` reads it.

    Keys that do not parse are skipped; no usable key at all is an error.
    """
    doc = _json_object(text.encode("utf-8", "surrogatepass"))
    if doc is None:
        return (), Status.JWKS_PARSE_ERROR
    if "keys" not in doc:
        return (), Status.JWKS_NO_KEYS
    if not isinstance(doc["keys"], list):
        return (), Status.JWKS_BAD_KEYS
    keys = [k for k in (_jwk(v) for v in doc["keys"] if isinstance(v, dict)) if k is not None]
    return tuple(keys), (None if keys else Status.JWKS_NO_VALID_KEYS)


def _jwk(d: dict[str, Any]) -> _Key | None:
    kty = d.get("kty")
    if not isinstance(kty, str):
        return None
    kid = d.get("kid") if isinstance(d.get("kid"), str) else ""
    alg = d.get("alg") if isinstance(d.get("alg"), str) else ""
    # jwks.cc: a key's alg, when given, must suit its type.
    wanted = {"RSA": ("RS", "PS"), "EC": ("ES",), "oct": ("HS",), "OKP": ("EdDSA",)}
    if kty not in wanted or (alg and not alg.startswith(wanted[kty])):
        return None
    if kty == "OKP" and d.get("crv") != "Ed25519":
        return None
    import json  # start-up, as above

    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm

    loader: Any = {
        "RSA": RSAAlgorithm,
        "EC": ECAlgorithm,
        "oct": HMACAlgorithm,
        "OKP": OKPAlgorithm,
    }
    try:
        key = loader[kty].from_jwk(json.dumps(d))
    except Exception:
        return None
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        key = key.public_key()
    return _Key(kty=kty, kid=str(kid), alg=str(alg), key=key)


# --------------------------------------------------------------------------- outcome


class JwtOutcome(Record, frozen=True):
    """What the jwt_authn filter does with a request.

    ``status`` None: the request goes on to the next filter (RBAC) with
    ``metadata`` as the filter's dynamic metadata (``{"payload": claims}``, or
    None when no token was verified). 401/403: Envoy answers with ``body``.
    ``reason`` is one of: ``no_filter`` (there is no jwt_authn filter),
    ``no_requirement`` (no rule with a requirement matches the path),
    ``cors_preflight``, ``no_token``, ``verified``, ``rejected``, and, with
    ``decided`` False, ``unverifiable`` (the answer hangs on a signature only
    keys kept elsewhere can check; ``alternatives`` holds the outcome if it
    is valid, then if not) or ``invalid_jwks`` (Envoy refuses the config).
    ``payload`` is the last verified token's payload (space-delimited claims
    split). ``removed_headers``/``removed_params`` are the token locations the
    filter strips before the request goes on.
    """

    status: int | None
    reason: str
    body: str = ""
    metadata: dict[str, Any] | None = None
    decided: bool = True
    alternatives: tuple[JwtOutcome, ...] = ()
    removed_headers: tuple[str, ...] = ()
    removed_params: tuple[str, ...] = ()
    trace: tuple[str, ...] = ()
    payload: dict[str, Any] | None = None
    error: Status | None = None

    provenance = ("error",)

    @property
    def allowed(self) -> bool:
        return self.decided and self.status is None

    @property
    def principal(self) -> str | None:
        """``iss/sub`` of the verified payload."""
        p = self.payload
        if p is None:
            return None
        iss, sub = p.get("iss"), p.get("sub")
        return f"{iss if isinstance(iss, str) else ''}/{sub if isinstance(sub, str) else ''}"

    @property
    def audiences(self) -> tuple[str, ...]:
        return _str_list(None if self.payload is None else self.payload.get("aud"))

    @property
    def presenter(self) -> str | None:
        azp = None if self.payload is None else self.payload.get("azp")
        return azp if isinstance(azp, str) else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "reason": self.reason,
            "decided": self.decided,
        }
        if self.body:
            out["body"] = self.body
        if self.metadata is not None:
            out["metadata"] = {JWT_FILTER: self.metadata}
            out["principal"] = self.principal
        if self.alternatives:
            out["alternatives"] = [a.to_json() for a in self.alternatives]
        if self.removed_headers:
            out["removedHeaders"] = list(self.removed_headers)
        if self.removed_params:
            out["removedParams"] = list(self.removed_params)
        out["trace"] = list(self.trace)
        return out


def _str_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        return (v,)
    if isinstance(v, list):
        return tuple(x for x in v if isinstance(x, str))
    return ()


# --------------------------------------------------------------------------- the filter


Headers = Sequence[tuple[str, str]]
Query = str | Sequence[tuple[str, str]]


def apply_jwt_authn(
    config: JwtAuthentication | None,
    presented: JwtPresented | None,
    headers: Headers = (),
    query: Query = "",
    *,
    method: str = "GET",
    now: int | None = None,
) -> JwtOutcome:
    """Run the request through the jwt_authn filter ``config`` (None: no filter).

    ``presented``: the client's JWT, added at its location to ``headers``
    (name/value pairs, repeats allowed) and ``query`` (a raw query string, a
    path with one, or decoded name/value pairs). ``now``: unix seconds
    (default: the clock).
    """
    if config is None:
        return JwtOutcome(status=None, reason="no_filter", trace=("no jwt_authn filter",))
    problem = unsupported(config)
    if problem is not None:
        raise ValueError(f"jwt_authn config not evaluated: {problem}")
    providers = config.providers
    for p in providers:
        error = None if p.local_jwks is None else parse_jwks(p.local_jwks)[1]
        if error is not None:
            msg = f"Provider '{p.name}' in jwt_authn config has invalid local jwks: {error.value}"
            return JwtOutcome(
                status=None, reason="invalid_jwks", decided=False, body=msg, trace=(msg,)
            )

    hdrs = _request_headers(headers)
    params = _query_params(query)
    trusted: set[str] = set()
    if presented is not None:
        text = presented.text()
        if presented.claims is not None:
            trusted.add(text)
        if presented.param is not None:
            params.append((presented.param, text))
        else:
            name, prefix = (
                (presented.header.lower(), presented.prefix)
                if presented.header is not None
                else DEFAULT_HEADER
            )
            hdrs = _request_headers([*hdrs, (name, prefix + text)])

    effective_method = next((v for k, v in hdrs if k == ":method"), method)
    if config.bypass_cors_preflight and _is_cors_preflight(effective_method, hdrs):
        # filter.cc decodeHeaders
        return JwtOutcome(
            status=None,
            reason="cors_preflight",
            trace=("CORS preflight: bypassed regardless of JWT requirements",),
        )
    path = query if isinstance(query, str) and query.startswith("/") else "/"
    tree = requirement_for(config, path)
    if tree is None:
        return JwtOutcome(
            status=None,
            reason="no_requirement",
            trace=(f"no jwt_authn rule with a requirement matches {path!r}",),
        )

    clock = int(time.time()) if now is None else now

    # Signatures that only a jwksUri's keys could check: try every verdict.
    unknown = _unverifiable(config, hdrs, params, trusted)
    if len(unknown) > _MAX_UNKNOWN:
        msg = f"{len(unknown)} token signatures cannot be checked offline (jwksUri only)"
        return JwtOutcome(status=None, reason="unverifiable", decided=False, body=msg, trace=(msg,))
    results: list[JwtOutcome] = []
    for verdicts in itertools.product((True, False), repeat=len(unknown)):
        oracle = dict(zip(unknown, verdicts, strict=True))
        ctx = _Context(config, list(hdrs), list(params), trusted, oracle, clock)
        status = _evaluate(tree, ctx)
        results.append(ctx.outcome(status))
    first = results[0]
    if all(_same(first, r) for r in results[1:]):
        if unknown:
            note = "signature not checked offline (jwksUri only); the outcome does not depend on it"
            return replace(first, trace=(*first.trace, note))
        return first
    valid, invalid = results[0], results[-1]
    return JwtOutcome(
        status=None,
        reason="unverifiable",
        decided=False,
        body="the outcome depends on a JWT signature that only the jwksUri keys can check",
        alternatives=(valid, invalid),
        trace=(
            "a raw token's signature cannot be checked offline: its provider has jwksUri "
            "and no inline jwks; give the claims (jwt:) or the keys (jwks:) to decide",
        ),
    )


def _same(a: JwtOutcome, b: JwtOutcome) -> bool:
    return (a.status, a.body, a.metadata, a.removed_headers, a.removed_params) == (
        b.status,
        b.body,
        b.metadata,
        b.removed_headers,
        b.removed_params,
    )


def _is_cors_preflight(method: str, headers: Headers) -> bool:
    def has(name: str) -> bool:
        return any(k == name and v for k, v in headers)

    return method == "OPTIONS" and has("origin") and has("access-control-request-method")


def _request_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Header lines as Envoy holds them: lower-cased names, trimmed values,
    inline headers joined."""
    out: list[tuple[str, str]] = []
    for name, value in headers:
        n, v = name.lower(), value.strip(" \t")
        if n in JOINED_HEADERS:
            i = next((i for i, (k, _) in enumerate(out) if k == n), None)
            if i is not None:
                out[i] = (n, f"{out[i][1]},{v}")
                continue
        out.append((n, v))
    return out


def _query_params(query: Query) -> list[tuple[str, str]]:
    """Decoded query parameters (percent-decoding only; ``+`` stays ``+``)."""
    if not isinstance(query, str):
        return [(str(k), str(v)) for k, v in query]
    q = query
    if q.startswith("/"):
        q = q.partition("?")[2] if "?" in q else ""
    elif q.startswith("?"):
        q = q[1:]
    q = q.partition("#")[0]
    out: list[tuple[str, str]] = []
    for part in q.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        out.append((unquote(k), unquote(v)))
    return out


# ------------------------------------------------------------------ requirement tree


def unsupported(config: JwtAuthentication) -> str | None:
    """Why ``config`` is not evaluated here (None: it is).

    Only the requirement forms checked against a real Envoy are evaluated:
    ``provider_name``, ``requires_any`` (with ``allow_missing`` among its
    members) and ``requires_all``; a requirement naming a provider that does
    not exist is a config Envoy refuses."""

    def check(r: Requirement, in_any: bool) -> str | None:
        if isinstance(r, ProviderName):
            if config.provider(r.name) is None:
                return f"the requirement names provider {r.name!r}, which is not configured"
            return None
        if isinstance(r, AllowMissing):
            return None if in_any else "allow_missing outside requires_any is not supported"
        if isinstance(r, AllowMissingOrFailed):
            return "allow_missing_or_failed is not supported"
        for c in r.requirements:
            if (why := check(c, isinstance(r, RequiresAny))) is not None:
                return why
        return None

    for rule in config.rules:
        if rule.requires is not None and (why := check(rule.requires, False)) is not None:
            return why
    return None


def requirement_for(config: JwtAuthentication, path: str) -> Requirement | None:
    """The requirement of the first rule whose prefix matches ``path`` (its
    query left out, as Envoy's path matcher does)."""
    bare = path.partition("?")[0]
    for rule in config.rules:
        if bare.startswith(rule.prefix):
            return rule.requires
    return None


class _Token(Struct):
    text: str
    kind: str  # "header" | "param" | "cookie"
    name: str


class _Context(Struct):
    config: JwtAuthentication
    headers: list[tuple[str, str]]
    params: list[tuple[str, str]]
    trusted: set[str]
    oracle: dict[tuple[str, str], bool]
    now: int
    metadata: dict[str, Any] | None = None
    payload: dict[str, Any] | None = None
    verified: bool = False
    removed_headers: list[str] = field(default_factory=list)
    removed_params: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)

    def outcome(self, status: Status) -> JwtOutcome:
        ok = status is Status.OK
        return JwtOutcome(
            status=None if ok else status.http_status,
            reason=("verified" if self.verified else "no_token") if ok else "rejected",
            body="" if ok else status.value,
            metadata=self.metadata if ok else None,
            removed_headers=tuple(self.removed_headers),
            removed_params=tuple(self.removed_params),
            trace=tuple(self.trace),
            error=None if ok else status,
            payload=self.payload if ok else None,
        )


def _evaluate(req: Requirement, ctx: _Context) -> Status:
    if isinstance(req, ProviderName):
        provider = ctx.config.provider(req.name)
        assert provider is not None  # unsupported() refused the config otherwise
        return _authenticate(provider, ctx)
    if isinstance(req, RequiresAll):
        # AllVerifierImpl: the first failure ends the group.
        for child in req.requirements:
            s = _evaluate(child, ctx)
            if s is not Status.OK:
                return s
        return Status.OK
    if isinstance(req, AllowMissing | AllowMissingOrFailed):
        return Status.OK  # only reached as a member of requires_any, handled there
    # AnyVerifierImpl: the first success ends the group; otherwise the last
    # error that is neither "missing" nor "unknown issuer", else "unknown
    # issuer", else "missing" (which allow_missing turns into success).
    final = Status.MISSED
    allow_missing = False
    for child in req.requirements:
        if isinstance(child, AllowMissing):
            allow_missing = True
            continue
        s = _evaluate(child, ctx)
        if s is Status.OK:
            return s
        if s not in (Status.MISSED, Status.UNKNOWN_ISSUER) or final is Status.MISSED:
            final = s
    if allow_missing and final is Status.MISSED:
        return Status.OK
    return final


def _locations(
    p: JwtProvider,
) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...], tuple[str, ...]]:
    """(header name, prefix) pairs, params, cookies; Envoy's defaults when none."""
    if not p.from_headers and not p.from_params and not p.from_cookies:
        return (DEFAULT_HEADER,), (DEFAULT_PARAM,), ()
    headers = tuple((h.name.lower(), h.value_prefix) for h in p.from_headers)
    return headers, p.from_params, p.from_cookies


def _extract(p: JwtProvider, ctx: _Context) -> list[_Token]:
    """extractor.cc: headers (sorted by name+prefix), then params, then cookies."""
    headers, params, cookies = _locations(p)
    tokens: list[_Token] = []
    for name, prefix in sorted(set(headers), key=lambda h: h[0] + h[1]):
        for k, value in ctx.headers:
            if k != name:
                continue
            if prefix:
                pos = value.find(prefix)
                if pos < 0:
                    continue
                value = _after_prefix(value, pos + len(prefix))
            tokens.append(_Token(value, "header", name))
    for param in sorted(set(params)):
        first = next((v for k, v in ctx.params if k == param), None)
        if first is not None:
            tokens.append(_Token(first, "param", param))
    if cookies:
        sent = _cookies(ctx.headers)
        for c in sorted(set(cookies)):
            if c in sent:
                tokens.append(_Token(sent[c], "cookie", c))
    return tokens


_B64URL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")
_B64URL_OR_DOT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def _after_prefix(value: str, start: int) -> str:
    # extractJWT: skip to the first base64url-or-dot character and keep the
    # rest of the value; none at all gives back the whole value.
    for i in range(start, len(value)):
        if value[i] in _B64URL_OR_DOT:
            return value[i:]
    return value


def _cookies(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in headers:
        if k != "cookie":
            continue
        for part in v.split(";"):
            name, eq, val = part.strip().partition("=")
            if not eq or name in out:
                continue
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = val[1:-1]
            out[name] = val
    return out


def _authenticate(p: JwtProvider, ctx: _Context) -> Status:
    """AuthenticatorImpl for one provider: every token must verify."""
    tokens = _extract(p, ctx)
    if not tokens:
        ctx.trace.append(f"{p.name} ({p.issuer}): no token in its locations")
        return Status.MISSED
    while tokens:
        tok = tokens.pop()
        s = _verify(p, tok, ctx)
        where = f"{tok.kind} {tok.name}"
        ctx.trace.append(f"{p.name} ({p.issuer}): token from {where}: {s.value}")
        if s is not Status.OK:
            return s
    return Status.OK


def _verify(p: JwtProvider, tok: _Token, ctx: _Context) -> Status:
    status, jwt = parse_jwt(tok.text)
    if jwt is None:
        return status
    # The location's issuer check: a provider without issuer takes any.
    if p.issuer and jwt.iss != p.issuer:
        return Status.UNKNOWN_ISSUER
    if ctx.now + CLOCK_SKEW_SECONDS < jwt.nbf:
        return Status.NOT_YET_VALID
    if jwt.exp and ctx.now > jwt.exp + CLOCK_SKEW_SECONDS:
        return Status.EXPIRED
    if not audiences_allowed(p.audiences, jwt.audiences):
        return Status.AUDIENCE_NOT_ALLOWED
    if tok.text not in ctx.trusted:
        if p.local_jwks is None:
            if not ctx.oracle.get((p.jwks_location, tok.text), False):
                return Status.VERIFICATION_FAIL
        else:
            s = verify_signature(jwt, parse_jwks(p.local_jwks)[0])
            if s is not Status.OK:
                return s
    # handleGoodJwt
    if not p.forward:
        _remove(tok, ctx)
    payload = normalize_payload(jwt.payload, p.space_delimited_claims)
    ctx.verified = True
    ctx.payload = payload
    if p.payload_in_metadata:
        ctx.metadata = {**(ctx.metadata or {}), p.payload_in_metadata: payload}
    return Status.OK


def _remove(tok: _Token, ctx: _Context) -> None:
    if tok.kind == "header":
        if any(k == tok.name for k, _ in ctx.headers):
            ctx.headers = [(k, v) for k, v in ctx.headers if k != tok.name]
            ctx.removed_headers.append(tok.name)
    elif tok.kind == "param" and any(k == tok.name for k, _ in ctx.params):
        ctx.params = [(k, v) for k, v in ctx.params if k != tok.name]
        ctx.removed_params.append(tok.name)
    # Cookies stay (JwtCookieLocation::removeJwt does nothing).


def _unverifiable(
    config: JwtAuthentication,
    headers: Sequence[tuple[str, str]],
    params: Sequence[tuple[str, str]],
    trusted: set[str],
) -> list[tuple[str, str]]:
    """(keys location, token) pairs whose signature nobody here can check."""
    elsewhere = [p for p in config.providers if p.local_jwks is None]
    if not elsewhere:
        return []
    probe = _Context(config, list(headers), list(params), trusted, {}, 0)
    texts: list[str] = []
    for p in config.providers:
        for t in _extract(p, probe):
            if t.text not in trusted and t.text not in texts:
                texts.append(t.text)
    out: list[tuple[str, str]] = []
    for p in elsewhere:
        for text in texts:
            _, jwt = parse_jwt(text)
            if jwt is not None and (not p.issuer or jwt.iss == p.issuer):
                key = (p.jwks_location, text)
                if key not in out:
                    out.append(key)
    return out


# --------------------------------------------------------------------------- the JWT


class ParsedJwt(Struct, frozen=True):
    header: dict[str, Any]
    payload: dict[str, Any]
    alg: str
    kid: str
    iss: str
    sub: str
    nbf: int
    exp: int
    audiences: tuple[str, ...]
    signed: bytes  # header.payload as sent
    signature: bytes


def _b64url_decode(s: str) -> bytes | None:
    # absl::WebSafeBase64Unescape: ASCII whitespace is skipped, padding optional
    # (Envoy 1.40: "Bearer <token> extra" reaches the signature check).
    s = "".join(s.split())
    if len(s.rstrip("=")) % 4 == 1 or not set(s) <= _B64URL_CHARS:
        return None
    try:
        return base64.b64decode(
            s.rstrip("=").translate(str.maketrans("-_", "+/")) + "=" * (-len(s.rstrip("=")) % 4),
            validate=True,
        )
    except (binascii.Error, ValueError):
        return None


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        return parse_struct(data)
    except TokenJsonError:
        return None


_ALGS = frozenset(
    {"ES256", "ES384", "ES512", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512"}
    | {"PS256", "PS384", "PS512", "EdDSA"}
)


def parse_jwt(text: str) -> tuple[Status, ParsedJwt | None]:
    """jwt.cc ``Jwt::parseFromString``: the checks and their order."""
    parts = [s for s in text.split(".") if s]
    if len(parts) != 3:
        return Status.BAD_FORMAT, None
    raw = _b64url_decode(parts[0])
    if raw is None:
        return Status.HEADER_BAD_BASE64, None
    header = _json_object(raw)
    if header is None:
        return Status.HEADER_BAD_JSON, None
    alg = header.get("alg")
    if not isinstance(alg, str):
        return Status.HEADER_BAD_ALG, None
    if alg not in _ALGS:
        return Status.HEADER_NOT_IMPLEMENTED_ALG, None
    kid = header.get("kid", "")
    if not isinstance(kid, str):
        return Status.HEADER_BAD_KID, None
    raw = _b64url_decode(parts[1])
    if raw is None:
        return Status.PAYLOAD_BAD_BASE64, None
    payload = _json_object(raw)
    if payload is None:
        return Status.PAYLOAD_BAD_JSON, None
    strings = {}
    for name, bad in (("iss", Status.ISS_NOT_STRING), ("sub", Status.SUB_NOT_STRING)):
        v = payload.get(name, "")
        if not isinstance(v, str):
            return bad, None
        strings[name] = v
    times = {}
    for name, not_int, out_of_range in (
        ("iat", Status.IAT_NOT_INTEGER, Status.IAT_OUT_OF_RANGE),
        ("nbf", Status.NBF_NOT_INTEGER, Status.NBF_OUT_OF_RANGE),
        ("exp", Status.EXP_NOT_INTEGER, Status.EXP_OUT_OF_RANGE),
    ):
        v = payload.get(name, 0)
        if isinstance(v, bool) or not isinstance(v, int | float):
            return not_int, None
        if v < 0 or v >= 2.0**64:
            return out_of_range, None
        times[name] = int(v)
    if not isinstance(payload.get("jti", ""), str):
        return Status.JTI_NOT_STRING, None
    aud = payload.get("aud", [])
    if isinstance(aud, str):
        audiences: tuple[str, ...] = (aud,)
    elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        audiences = tuple(aud)
    else:
        return Status.AUD_NOT_STRING, None
    signature = _b64url_decode(parts[2])
    if signature is None:
        return Status.SIGNATURE_BAD_BASE64, None
    return Status.OK, ParsedJwt(
        header=header,
        payload=payload,
        alg=alg,
        kid=kid,
        iss=strings["iss"],
        sub=strings["sub"],
        nbf=times["nbf"],
        exp=times["exp"],
        audiences=audiences,
        signed=f"{parts[0]}.{parts[1]}".encode("ascii", "replace"),
        signature=signature,
    )


def _sanitize_audience(aud: str) -> str:
    # check_audience.cc: drop an http:// or https:// scheme and one trailing slash.
    for scheme in ("http://", "https://"):
        if aud.startswith(scheme):
            aud = aud[len(scheme) :]
            break
    return aud[:-1] if aud.endswith("/") else aud


def audiences_allowed(configured: Sequence[str], presented: Sequence[str]) -> bool:
    """CheckAudience: no configured audience allows all; else any one in common."""
    if not configured:
        return True
    allowed = {_sanitize_audience(a) for a in configured}
    return any(_sanitize_audience(a) in allowed for a in presented)


def normalize_payload(payload: Mapping[str, Any], space_delimited: Iterable[str]) -> dict[str, Any]:
    """setPayloadMetadata: split the space-delimited string claims into lists."""
    out = dict(payload)
    for claim in space_delimited:
        v = payload.get(claim)
        if isinstance(v, str):
            parts = [s for s in v.split(" ") if s]
            if parts:
                out[claim] = parts
    return out


def _digest(alg: str) -> hashes.HashAlgorithm:
    from cryptography.hazmat.primitives import hashes

    if alg.endswith("384"):
        return hashes.SHA384()
    if alg.endswith("512"):
        return hashes.SHA512()
    return hashes.SHA256()


def verify_signature(jwt: ParsedJwt, keys: Sequence[_Key]) -> Status:
    """verify.cc ``verifyJwtWithoutTimeChecking``: try each key that fits kid and alg."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hmac
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    matched = False
    for k in keys:
        if jwt.kid and k.kid and k.kid != jwt.kid:
            continue
        if k.alg and k.alg != jwt.alg:
            continue
        matched = True
        try:
            if k.kty == "EC" and isinstance(k.key, ec.EllipticCurvePublicKey):
                half = len(jwt.signature) // 2
                r = int.from_bytes(jwt.signature[:half], "big")
                s = int.from_bytes(jwt.signature[half : 2 * half], "big")
                k.key.verify(encode_dss_signature(r, s), jwt.signed, ec.ECDSA(_digest(jwt.alg)))
                return Status.OK
            if k.kty == "RSA" and isinstance(k.key, rsa.RSAPublicKey):
                md = _digest(jwt.alg)
                if jwt.alg.startswith("RS"):
                    k.key.verify(jwt.signature, jwt.signed, padding.PKCS1v15(), md)
                    return Status.OK
                if jwt.alg.startswith("PS"):
                    pss = padding.PSS(mgf=padding.MGF1(md), salt_length=padding.PSS.AUTO)
                    k.key.verify(jwt.signature, jwt.signed, pss, md)
                    return Status.OK
            elif k.kty == "oct" and isinstance(k.key, bytes):
                h = hmac.HMAC(k.key, _digest(jwt.alg))
                h.update(jwt.signed)
                h.verify(jwt.signature)
                return Status.OK
            elif k.kty == "OKP" and isinstance(k.key, ed25519.Ed25519PublicKey):
                if len(jwt.signature) != 64:
                    return Status.ED25519_SIGNATURE_WRONG_LENGTH
                k.key.verify(jwt.signature, jwt.signed)
                return Status.OK
        except (InvalidSignature, ValueError):
            continue
    return Status.VERIFICATION_FAIL if matched else Status.JWKS_KID_ALG_MISMATCH


# ---------------------------------------------------------------- request format


JWT_REQUEST_SCHEMA: dict[str, Any] = {
    "jwt": {
        "description": (
            "The claims of a JWT the client presents, taken as validly signed "
            "(iss, sub, aud as a string or list, azp, and any others, nested "
            "maps and lists included). Give either jwt or token."
        ),
        "type": "object",
        "additionalProperties": True,
    },
    "token": {
        "description": (
            "A raw JWT (header.payload.signature). Its signature is checked "
            "against the RequestAuthentication's inline jwks; with only jwksUri "
            "it cannot be checked offline. Give either jwt or token."
        ),
        "type": "string",
        "minLength": 1,
    },
    "jwtLocation": {
        "description": (
            'Where the JWT travels; default: the Authorization header after "Bearer ".'
        ),
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "header": {"type": "string", "minLength": 1},
                    "prefix": {"type": "string"},
                },
                "required": ["header"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"param": {"type": "string", "minLength": 1}},
                "required": ["param"],
                "additionalProperties": False,
            },
        ],
    },
}
