"""Settles how Envoy 1.40's RBAC header matcher sees repeated headers of one name.

A Lua probe (tests/decide/envoy_probe.py) sees ``headers():get`` join them
with ","; meshauthz's evaluator treats them as separate values, a match on
any one matching. Here the RBAC filter itself is the judge.
"""

from __future__ import annotations

from typing import Any

import pytest

from meshauthz.envoy.rbac.evaluate import RbacInput, evaluate_filter
from meshauthz.envoy.rbac.serialize import parse_filter

from .harness import Probe, Site, running


def _filter(match: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {
                "action": "ALLOW",
                "policies": {
                    "p": {
                        "permissions": [{"header": {"name": "x-user", **match}}],
                        "principals": [{"any": True}],
                    }
                },
            },
        },
    }


MATCHERS = [
    {"string_match": {"exact": "alice"}},
    {"string_match": {"exact": "alice,bob"}},
    {"string_match": {"prefix": "bob"}},
    {"string_match": {"suffix": "bob"}},
    {"string_match": {"contains": "e,b"}},
    {"string_match": {"exact": "alice"}, "invert_match": True},
]
HEADERS = [["alice"], ["alice", "bob"], ["bob", "alice"], ["alice,bob"], ["carol", "bob"]]


def test_repeated_headers_in_rbac_match_like_meshauthz(test_ca: Any) -> None:
    sites = [Site(f"m{i}", "http", [_filter(m)]) for i, m in enumerate(MATCHERS)]
    probes = [
        Probe(s.name, headers=[("x-user", v) for v in values]) for s in sites for values in HEADERS
    ]
    with running(sites, test_ca) as envoy:
        observed = envoy.run(probes)
    got, want = [], []
    for probe, obs in zip(probes, observed, strict=True):
        f = parse_filter(sites[int(probe.site[1:])].filters[0])
        inp = RbacInput(headers=[(":path", "/"), *probe.headers])
        want.append(evaluate_filter(f, inp).allowed)
        got.append(obs.status == 200)
    assert got == want
    # The answer, spelled out: the values stay separate. Exact "alice" matches
    # the lines "alice" and "bob"; exact "alice,bob" does not match them.
    assert got[1] is True
    assert got[len(HEADERS) + 1] is False


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
