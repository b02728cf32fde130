"""meshauthz's path handling and uri_template matcher against a real Envoy's,
byte by byte (the corpus is recorded by uri_template_probe.py).

Each row is a raw path, a normalization mode and an Envoy template under a
DENY policy; Envoy answered 403 (the template matched), 200 (it did not) or
400 (the codec refused the request). meshauthz must answer the same.
"""

from __future__ import annotations

from typing import Any

import pytest

from meshauthz.envoy.hcm import check_method, normalize_path
from meshauthz.envoy.rbac.uri_template import strip_query_and_fragment, uri_template_matches
from meshauthz.translate.bootstrap import ISTIO_RUNTIME
from meshauthz.translate.hcm import path_options
from tests.adversarial.uri_template_probe import load_corpus

ROWS = load_corpus()


def meshauthz_status(row: dict[str, Any]) -> int:
    refused = check_method("GET")
    if refused is not None:
        return refused.rejected_status or 400
    norm = normalize_path(row["path"], path_options(row["mode"]), ISTIO_RUNTIME)
    if norm.path is None:
        return norm.rejected_status or 400
    return (
        403 if uri_template_matches(row["template"], strip_query_and_fragment(norm.path)) else 200
    )


def test_corpus_covers_every_byte_in_every_mode() -> None:
    assert len(ROWS) == 4 * 6 * (254 + 256 + 2)
    assert {r["status"] for r in ROWS} == {200, 400, 403}


@pytest.mark.parametrize("mode", ["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"])
def test_every_byte_in_a_template_segment_as_envoy(mode: str) -> None:
    wrong = [
        (r["template"], r["path"], r["status"], got)
        for r in ROWS
        if r["mode"] == mode and (got := meshauthz_status(r)) != r["status"]
    ]
    assert not wrong, f"{len(wrong)} rows differ from Envoy, e.g. {wrong[:10]}"


def test_equals_and_star_are_segment_characters() -> None:
    # the review's wrong ALLOWs: a DENY on /admin/{*} let /admin/x=y and /admin/x*y through
    for path in ("/admin/x=y", "/admin/x*y"):
        assert uri_template_matches("/admin/*", path)
        assert uri_template_matches("/admin/{x=**}", path)
