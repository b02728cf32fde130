"""Soundness with JWTs: random RequestAuthentications and policies reading the
token (request principals, audiences, presenter, claims, nested and
list-valued), and random edits. When the engine says "equivalent", thousands
of random requests carrying random tokens (claims drawn from the policies'
values and others, strings, lists, numbers, objects; in each place a provider
reads, expired, from other issuers) are decided alike on both sides by the
concrete decision path; when it says "differs", each witness is decided
differently by that path."""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import EXAMPLES
from tests.symbolic.test_soundness import assert_no_gap, assert_sound, edit

SEED = EXAMPLES / "seed"
ISSUERS = ["https://a.example", "https://b.example"]
AUDIENCES = ["api", "https://web/", "ops"]
SUBJECTS = ["alice", "bob"]
REQUEST_PRINCIPALS = ["https://a.example/alice", "https://a.example/*", "*", "*/bob"]
GROUPS = ["admin", "dev*", "*", "ops"]
TEAMS = ["x", "y*"]
PRESENTERS = ["web-app", "cli*"]
SCOPES = ["read", "write"]
CLAIM_KEYS = [
    ("request.auth.claims[groups]", GROUPS),
    ("request.auth.claims[org][team]", TEAMS),
    ("request.auth.claims[scope]", SCOPES),
    ("request.auth.audiences", AUDIENCES),
    ("request.auth.presenter", PRESENTERS),
    ("request.auth.principal", REQUEST_PRINCIPALS[:2]),
    ("request.headers[origin]", ["*"]),
]
LOCATIONS: list[dict[str, Any]] = [
    {},
    {"fromHeaders": [{"name": "x-jwt", "prefix": "Tok "}]},
    {"fromParams": ["tok"]},
]

values = st.lists
jwt_rule = st.fixed_dictionaries(
    {"issuer": st.sampled_from(ISSUERS)},
    optional={
        "audiences": values(st.sampled_from(AUDIENCES), min_size=1, max_size=2),
        "where": st.sampled_from(LOCATIONS),
        "forwardOriginalToken": st.booleans(),
    },
)
request_authn = st.one_of(
    st.none(),
    values(jwt_rule, min_size=1, max_size=2, unique_by=lambda r: r["issuer"]),
)
condition = st.sampled_from(CLAIM_KEYS).flatmap(
    lambda kv: st.builds(
        lambda vs, negated: {"key": kv[0], ("notValues" if negated else "values"): vs},
        values(st.sampled_from(kv[1]), min_size=1, max_size=2),
        st.booleans(),
    )
)
source = st.one_of(
    st.fixed_dictionaries(
        {"requestPrincipals": values(st.sampled_from(REQUEST_PRINCIPALS), min_size=1, max_size=2)}
    ),
    st.fixed_dictionaries(
        {
            "notRequestPrincipals": values(
                st.sampled_from(REQUEST_PRINCIPALS), min_size=1, max_size=1
            )
        }
    ),
)
rule = st.fixed_dictionaries(
    {},
    optional={
        "from": st.lists(st.builds(lambda s: {"source": s}, source), min_size=1, max_size=1),
        "to": st.just([{"operation": {"methods": ["GET", "OPTIONS"]}}]),
        "when": st.lists(condition, min_size=1, max_size=2),
    },
)
policy = st.fixed_dictionaries(
    {"action": st.sampled_from(["ALLOW", "DENY"]), "rules": st.lists(rule, min_size=0, max_size=2)}
)
policies = st.lists(policy, min_size=1, max_size=3)


def _new_condition(draw: Any, r: dict[str, Any]) -> None:
    r["when"] = [draw(condition)]


def write_mesh(
    root: Path, name: str, ps: list[dict[str, Any]], jwt_rules: list[dict[str, Any]] | None
) -> Path:
    d = root / name
    d.mkdir()
    for f in ("backend.yaml", "frontend.yaml", "namespace.yaml"):
        shutil.copy(SEED / f, d / f)
    ps = [{**p, "rules": p["rules"] or [{}]} if p["action"] == "DENY" else p for p in ps]
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": f"p{i}", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "backend"}}, **p},
        }
        for i, p in enumerate(ps)
    ]
    if jwt_rules is not None:
        rules = []
        for r in jwt_rules:
            r = {k: v for k, v in r.items() if k != "where"} | r.get("where", {})
            rules.append({**r, "jwksUri": r["issuer"] + "/jwks"})
        docs.append(
            {
                "apiVersion": "security.istio.io/v1",
                "kind": "RequestAuthentication",
                "metadata": {"name": "jwt", "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"app": "backend"}}, "jwtRules": rules},
            }
        )
    if docs:
        (d / "policies.yaml").write_text(yaml.safe_dump_all(docs))
    return d


def _claim_value(rng: random.Random, pool: list[str]) -> Any:
    """A claim's value: a string (one of the policies' values written out, or
    another), a list of them, a number, or an object."""
    words = [v.replace("*", rng.choice(["", "x", "1"])) for v in pool] + ["zzz", ""]
    return rng.choice(
        [
            rng.choice(words),
            rng.sample(words, rng.randint(0, 3)),
            7,
            {"k": rng.choice(words)},
            [rng.choice(words), 3],
        ]
    )


def random_token(rng: random.Random) -> dict[str, Any]:
    """The request format's JWT fields for a random token (or none)."""
    if rng.random() < 0.15:
        return {}
    if rng.random() < 0.05:
        return {"token": "abc.def.ghi"}
    claims: dict[str, Any] = {"iss": rng.choice([*ISSUERS, "https://c.example"])}
    if rng.random() < 0.8:
        claims["sub"] = rng.choice(SUBJECTS)
    aud = rng.choice([None, "api", "http://api", "https://web", "web/", ["x", "ops"], []])
    if aud is not None:
        claims["aud"] = aud
    for key, pool in (("groups", GROUPS), ("azp", PRESENTERS), ("scope", SCOPES)):
        if rng.random() < 0.6:
            claims[key] = _claim_value(rng, pool)
    if rng.random() < 0.3:
        claims["scope"] = " ".join(rng.sample(SCOPES + ["other"], 2))
    if rng.random() < 0.5:
        claims["org"] = rng.choice([{"team": _claim_value(rng, TEAMS)}, "x", {"other": "x"}, ["x"]])
    if rng.random() < 0.05:
        claims["exp"] = 1  # long expired
    out: dict[str, Any] = {"jwt": claims}
    where = rng.choice(
        [None, None, {"header": "x-jwt", "prefix": "Tok "}, {"param": "tok"}, {"header": "x-other"}]
    )
    if where is not None:
        out["jwtLocation"] = where
    return out


def random_requests(rng: random.Random, n: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        req: dict[str, Any] = {
            "from": rng.choice(["default/frontend", {"plaintext": True, "ip": "192.0.2.7"}]),
            "to": "default/backend",
            "method": rng.choice(["GET", "POST", "OPTIONS"]),
            "path": rng.choice(["/", "/api"]),
            **random_token(rng),
        }
        if rng.random() < 0.3:
            req["headers"] = {"origin": "https://web", "access-control-request-method": "GET"}
        out.append(req)
    return out


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), ps=policies, authn=request_authn)
def test_random_jwt_policies_and_edits(
    data: st.DataObject, ps: list[dict[str, Any]], authn: list[dict[str, Any]] | None
) -> None:
    edited = edit(data.draw, ps, rule, _new_condition)
    # the same RequestAuthentication on both sides, or one side without it
    authn_new = authn if data.draw(st.integers(0, 4)) else None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        result = assert_sound(
            write_mesh(root, "a", ps, authn),
            write_mesh(root, "b", edited, authn_new),
            len(ps),
            1500,
            random_requests,
        )
        assert_no_gap(result)
        event("equivalent" if result.equivalent else "differs")
        if any("jwt" in c.witness for c in [*result.opened, *result.closed]):
            event("a witness carries a JWT")
