"""Every JSON output's text is what ``json.dumps(value, indent=2)`` writes
(``cli.output.indented_json``, which writes it faster)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshauthz.cli.output import indented_json

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and the infinities too: json writes them, and so must we
    | st.text()  # any code point: escaped as json escapes it
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(), inner, max_size=5)
    ),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_indented_json_is_json_dumps_with_an_indent(value: Any) -> None:
    assert indented_json(value) == json.dumps(value, indent=2)


def test_indented_json_on_a_decision_document() -> None:
    doc = {
        "verdict": "DENY",
        "status": 403,
        "request": {"path": "/caf\u00e9?q=\u2028", "headers": [["x-a", '\x00\x1f"']]},
        "trace": [],
        "hops": [{}],
        "ratio": 1e-07,
    }
    text = indented_json(doc)
    assert text == json.dumps(doc, indent=2)
    assert json.loads(text) == doc
