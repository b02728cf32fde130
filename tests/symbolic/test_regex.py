"""RE2 patterns in the solver mean what RE2 (google-re2, the evaluator's
engine) fully matches; what is not encoded is refused, never approximated."""

from __future__ import annotations

import pytest
import re2
import z3
from hypothesis import given, settings
from hypothesis import strategies as st

from meshauthz.symbolic.regex import Unencodable, re2_to_z3

ENCODED = [
    "a.c",
    "[a-c]+x?",
    "(foo|bar)\\d{2,3}",
    "[^/]*",
    ".*/ns/default/.*",
    "\\w+\\s\\S",
    "a{0}b",
    "x*?y",
    "^abc$",
    "(?:ab)+|c",
    "[\\d-]+",
    "\\.\\*",
    # istiod's patterns: namespaces, principals with a leading *
    "spiffe://.*/ns/foo/.*",
    "spiffe://.*\\.example",
]
ALPHABET = "abcxy/fo1029 \t\n.*-:\\ns_dltpeim"


def member(pattern: str, s: str) -> bool:
    return bool(z3.is_true(z3.simplify(z3.InRe(z3.StringVal(s), re2_to_z3(pattern)))))


@pytest.mark.parametrize("pattern", ENCODED)
@settings(max_examples=150, deadline=None)
@given(s=st.text(alphabet=ALPHABET, max_size=12))
def test_encoded_patterns_match_what_re2_matches(pattern: str, s: str) -> None:
    assert member(pattern, s) == (re2.fullmatch(pattern, s) is not None)


@pytest.mark.parametrize(
    ("pattern", "s"),
    [
        ("a.c", "abc"),
        ("(foo|bar)\\d{2,3}", "bar123"),
        (".*/ns/default/.*", "spiffe://td/ns/default/sa/x"),
        ("\\d", "٣"),  # RE2's \d is ASCII only; Python's would match this digit
    ],
)
def test_examples_agree_with_re2(pattern: str, s: str) -> None:
    assert member(pattern, s) == (re2.fullmatch(pattern, s) is not None)


@pytest.mark.parametrize(
    "pattern",
    ["[[:alpha:]]+", "(?i)abc", "a\\bb", "\\pL", "a^b", "(a)\\1", "\\Qa.b\\E"],
)
def test_what_is_not_encoded_is_refused(pattern: str) -> None:
    with pytest.raises(Unencodable):
        re2_to_z3(pattern)
