"""The symbolic engine behind a RequestAuthentication: request principals,
audiences, presenter and claims (nested, list-valued) are encoded as the
concrete path decides them, witnesses present the token as ``jwt`` claims that
``check`` decides as claimed, and what is not encoded is unknown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshauthz.mesh.loading import load_mesh
from meshauthz.symbolic import Comparison, compare_meshes
from meshauthz.symbolic.witness import Confirmer
from tests.symbolic.test_compare import mesh_dir, policy

ISSUER = "https://issuer.example"


def request_authn(*rules: str) -> str:
    body = ", ".join(rules) or f'{{issuer: "{ISSUER}", jwksUri: "{ISSUER}/jwks"}}'
    return f"""apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{app: backend}}}}
  jwtRules: [{body}]
---
"""


def when(key: str, values: str, field: str = "values") -> str:
    return f'  - when: [{{key: "{key}", {field}: {values}}}]'


def compare(tmp_path: Path, old: str, new: str) -> tuple[Comparison, Confirmer, Confirmer]:
    snaps = []
    tmp_path.mkdir(parents=True, exist_ok=True)  # callers pass a subfolder per case
    for name, text in (("old", old), ("new", new)):
        snaps.append(load_mesh((str(mesh_dir(tmp_path, name, text)),)).snapshot)
    result = compare_meshes(snaps[0], snaps[1])
    return result, Confirmer(snaps[0]), Confirmer(snaps[1])


def confirmed(result: Comparison, a: Confirmer, b: Confirmer) -> list[dict[str, Any]]:
    """The witnesses, each decided by check's path as the change says."""
    out = []
    for c in [*result.opened, *result.closed]:
        da, db = a.decide(c.witness), b.decide(c.witness)
        assert (da.verdict, da.policy, da.rule) == (c.old.verdict, c.old.policy, c.old.rule)
        assert (db.verdict, db.policy, db.rule) == (c.new.verdict, c.new.policy, c.new.rule)
        out.append(c.witness)
    return out


def test_claim_values_written_differently_are_equivalent(tmp_path: Path) -> None:
    one = policy("p", "ALLOW", when("request.auth.claims[groups]", '["admin", "dev"]'))
    split = policy(
        "p",
        "ALLOW",
        when("request.auth.claims[groups]", '["dev"]')
        + "\n"
        + when("request.auth.claims[groups]", '["admin"]'),
    )
    result, _, _ = compare(tmp_path, request_authn() + one, request_authn() + split)
    assert result.equivalent, result.to_json()


def test_a_claim_value_added_opens_tokens_carrying_it(tmp_path: Path) -> None:
    old = request_authn() + policy("p", "ALLOW", when("request.auth.claims[groups]", '["admin"]'))
    new = old.replace('["admin"]', '["admin", "dev"]')
    result, a, b = compare(tmp_path, old, new)
    assert not result.closed and not result.unknown
    (w,) = confirmed(result, a, b)
    # a string or a list holding "dev", and the issuer the provider accepts
    groups = w["jwt"]["groups"]
    assert groups == "dev" or "dev" in groups
    assert w["jwt"]["iss"] == ISSUER


def test_list_valued_claims_match_by_any_element(tmp_path: Path) -> None:
    """A DENY on one group closes lists holding it among others: the witness is
    a list when the question needs one."""
    allow = policy("allow", "ALLOW", when("request.auth.claims[groups]", '["dev"]'))
    deny = policy("deny", "DENY", when("request.auth.claims[groups]", '["intern"]'))
    result, a, b = compare(tmp_path, request_authn() + allow, request_authn() + allow + deny)
    assert not result.opened and not result.unknown
    (w,) = confirmed(result, a, b)
    assert sorted(w["jwt"]["groups"]) == ["dev", "intern"]


def test_nested_claims_and_the_presenter(tmp_path: Path) -> None:
    old = request_authn() + policy("p", "ALLOW", when("request.auth.claims[org][team]", '["core"]'))
    new = request_authn() + policy(
        "p",
        "ALLOW",
        '  - when: [{key: "request.auth.claims[org][team]", values: ["core"]},'
        ' {key: "request.auth.presenter", values: ["web-*"]}]',
    )
    result, a, b = compare(tmp_path, old, new)
    assert not result.opened and not result.unknown
    (w,) = confirmed(result, a, b)
    # the nested claim holds "core" (a string, or a list holding it: both match)
    team = w["jwt"]["org"]["team"]
    assert team == "core" or team == ["core"], w
    assert not str(w["jwt"].get("azp", "")).startswith("web-")


def test_request_principals_and_audiences(tmp_path: Path) -> None:
    authn = request_authn(
        f'{{issuer: "{ISSUER}", audiences: [api], jwksUri: "{ISSUER}/jwks"}}',
        '{issuer: "https://other.example", jwksUri: "https://other.example/jwks"}',
    )
    old = authn + policy(
        "p", "ALLOW", f'  - from: [{{source: {{requestPrincipals: ["{ISSUER}/alice"]}}}}]'
    )
    new = old.replace(f'"{ISSUER}/alice"', '"*/alice"')
    result, a, b = compare(tmp_path, old, new)
    assert not result.closed and not result.unknown
    (w,) = confirmed(result, a, b)
    # only the other issuer's alice is new
    assert (w["jwt"]["iss"], w["jwt"]["sub"]) == ("https://other.example", "alice")
    # the audience the first provider requires
    aud = authn + policy("p", "ALLOW", when("request.auth.audiences", '["web"]'))
    result, a, b = compare(tmp_path / "aud", aud, aud.replace('["web"]', '["web", "api"]'))
    assert not result.closed and not result.unknown
    (w,) = confirmed(result, a, b)
    assert "api" in str(w["jwt"]["aud"])


def test_a_request_authentication_added_closes_rejected_tokens(tmp_path: Path) -> None:
    result, a, b = compare(tmp_path, "", request_authn())
    assert not result.opened and not result.unknown
    (change,) = result.closed
    confirmed(result, a, b)
    assert (change.new.verdict, str(change.new.stage)) == ("DENY", "JWT")
    assert "a JWT the filter rejects" in change.description
    assert b.decide(change.witness).status == 401


def test_diff_text_says_the_jwt_filter_rejects(tmp_path: Path, capsys: Any) -> None:
    import pytest

    from meshauthz.cli.main import main

    for name, text in (("old", ""), ("new", request_authn())):
        mesh_dir(tmp_path, name, text)
    with pytest.raises(SystemExit) as exc:
        main(["diff", str(tmp_path / "old"), str(tmp_path / "new")])
    lines = capsys.readouterr().out.splitlines()
    assert exc.value.code == 1
    assert "    new: DENY: the JWT filter rejects the token (JWT)" in lines
    assert any(line.startswith("    witness: ") and '"exp": 1' in line for line in lines)


def test_keys_envoy_refuses_deny_every_request(tmp_path: Path) -> None:
    broken = request_authn(f'{{issuer: "{ISSUER}", jwks: \'{{"keys": []}}\'}}')
    result, a, b = compare(tmp_path, "", broken)
    assert not result.unknown and result.closed
    for w in confirmed(result, a, b):
        assert b.decide(w).verdict == "DENY"
    assert {str(c.new.stage) for c in result.closed} == {"JWT"}


def test_a_token_in_a_query_parameter_or_another_header(tmp_path: Path) -> None:
    for i, where in enumerate(
        ['fromParams: ["tok"]', 'fromHeaders: [{name: x-jwt, prefix: "Tok "}]']
    ):
        authn = request_authn(f'{{issuer: "{ISSUER}", {where}, jwksUri: "{ISSUER}/jwks"}}')
        old = authn + policy("p", "ALLOW", when("request.auth.claims[role]", '["a"]'))
        result, a, b = compare(tmp_path / str(i), old, old.replace('["a"]', '["a", "b"]'))
        (w,) = confirmed(result, a, b)
        assert w["jwtLocation"] == (
            {"param": "tok"} if i == 0 else {"header": "x-jwt", "prefix": "Tok "}
        )


def test_a_cors_preflight_is_not_verified(tmp_path: Path) -> None:
    """istiod's filter lets a CORS preflight through unverified: with a policy
    reading the Origin header, an OPTIONS with a bad token is not a 401."""
    authn = request_authn()
    deny = policy(
        "deny",
        "DENY",
        '  - to: [{operation: {methods: ["OPTIONS"]}}]\n'
        '    when: [{key: "request.headers[origin]", values: ["https://evil.example"]}]',
    )
    result, a, b = compare(tmp_path, authn, authn + deny)
    assert not result.opened and not result.unknown
    ws = confirmed(result, a, b)
    assert ws and all(w["method"] == "OPTIONS" for w in ws)


def test_what_is_not_encoded_is_unknown(tmp_path: Path) -> None:
    # two different JWT filters: a request can carry a token for each
    other = request_authn(f'{{issuer: "{ISSUER}", audiences: [x], jwksUri: "{ISSUER}/jwks"}}')
    reading = policy("p", "ALLOW", when("request.auth.claims[groups]", '["a"]'))
    result, _, _ = compare(tmp_path / "a", request_authn() + reading, other + reading)
    assert not result.equivalent
    assert [u.destination.workload for u in result.unknown] == ["default/backend"]
    assert "JWT filters differ" in result.unknown[0].reason
    # a claim providers split differently
    split = request_authn(
        f'{{issuer: "{ISSUER}", spaceDelimitedClaims: [groups], jwksUri: "{ISSUER}/jwks"}}',
        '{issuer: "https://other.example", jwksUri: "https://other.example/jwks"}',
    )
    result, _, _ = compare(tmp_path / "b", split, split + reading)
    assert "split" in result.unknown[0].reason


def test_redundant_claim_rules(tmp_path: Path) -> None:
    from meshauthz.symbolic.redundant import always, redundant

    text = request_authn() + policy(
        "p",
        "ALLOW",
        when("request.auth.claims[groups]", '["admin"]')
        + "\n"
        + when("request.auth.claims[groups]", '["admin", "dev"]'),
    )
    snap = load_mesh((str(mesh_dir(tmp_path, "m", text)),)).snapshot
    report = redundant(snap)
    assert not report.unknown
    assert [(f.policy, f.rule, f.reason) for f in report.findings] == [
        ("default/p", 0, "covered by other rules")
    ]
    # some tokens are allowed, others are not: neither always-denies nor always-allows
    assert not [a for a in always(snap) if a.destination.workload == "default/backend"]
