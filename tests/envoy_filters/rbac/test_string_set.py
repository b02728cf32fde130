"""The compiled lookups for an Or of string matchers (``string_set``) and of path
templates (``template_set``) against the per-value matchers they replace, on
random values: the set matches exactly when one of its matchers does."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from meshauthz.envoy.rbac.evaluate import PeerCertificate, RbacInput, compile_node
from meshauthz.envoy.rbac.matchers import compile_string, string_set
from meshauthz.envoy.rbac.model import IdAuthenticated, IdOr, PermOr, PermUriTemplate, PermUrlPath
from meshauthz.envoy.rbac.model import StringMatcher as SM
from meshauthz.envoy.rbac.uri_template import compile_uri_template, template_set
from meshauthz.translate.matchers import SPIFFE_PREFIX, string_matcher

# few letters, so that values often share prefixes and suffixes; "\n" because
# RE2's "." does not match it; "A" and "a" for ignore_case
_CHARS = "abA/.*\n-"
_text = st.text(alphabet=_CHARS, max_size=6)


@st.composite
def _matcher(draw: st.DrawFn) -> SM:
    kind = draw(st.sampled_from(("exact", "prefix", "suffix", "contains", "safe_regex", "istio")))
    value = draw(_text)
    if kind == "istio":  # what istiod writes for a principal "*value" or "value*"
        return string_matcher(draw(st.sampled_from(("*", ""))) + value, SPIFFE_PREFIX)
    if kind == "safe_regex":
        value = draw(st.sampled_from(("a.*", ".*b", "a.*b", ".+", r"a\..*", r"a\\.*b", "(a|b)*")))
    return SM(kind, value, ignore_case=draw(st.booleans()))


@settings(max_examples=400, deadline=None)
@given(st.lists(_matcher(), min_size=1, max_size=30), st.lists(_text, min_size=1, max_size=20))
def test_string_set_is_the_or_of_its_matchers(matchers: list[SM], values: list[str]) -> None:
    one = string_set(matchers)
    each = [compile_string(m) for m in matchers]
    for v in [*values, *(SPIFFE_PREFIX + v for v in values)]:
        assert one(v) == any(f(v) for f in each), (matchers, v)


def test_many_prefixes_and_suffixes_agree_with_each_value() -> None:
    rng = random.Random(3)
    matchers = [
        string_matcher(rng.choice(("*", "")) + f"ns{rng.randrange(50)}-{i}" + rng.choice(("*", "")))
        for i in range(2000)
    ]
    one = string_set(matchers)
    each = [compile_string(m) for m in matchers]
    for _ in range(2000):
        v = f"ns{rng.randrange(60)}-{rng.randrange(2100)}{rng.choice(('', 'x', '-1'))}"
        for s in (v, "x" + v, SPIFFE_PREFIX + v):
            assert one(s) == any(f(s) for f in each), s


_TEMPLATES = ["/a/*", "/a/**", "/*/b", "/b/{x}/c", "/b/**.m3u8", "/", "/a", "/c/*/d/**", "/**"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(_TEMPLATES), min_size=1, max_size=6),
    st.lists(st.text(alphabet="abcd/.m3u8=*", max_size=10), min_size=1, max_size=10),
)
def test_template_set_is_the_or_of_its_templates(templates: list[str], paths: list[str]) -> None:
    one = template_set(templates)
    for p in ["/" + p for p in paths] + paths:
        want = any(compile_uri_template(t).fullmatch(p) is not None for t in templates)
        assert one(p) == want, (templates, p)


def test_fused_alternatives_match_as_each_alternative() -> None:
    """An Or node compiled as one lookup gives what its alternatives give one by one."""
    rng = random.Random(5)
    principals = IdOr(
        tuple(
            IdAuthenticated(string_matcher(f"cluster.local/ns/n{i}/sa/s{i}*", SPIFFE_PREFIX))
            if i % 2
            else IdAuthenticated(string_matcher(f"*/sa/s{i}", SPIFFE_PREFIX))
            for i in range(500)
        )
    )
    paths = PermOr(
        tuple(
            PermUrlPath(SM("suffix", f".ext{i}")) if i % 2 else PermUriTemplate(f"/p{i}/*/items")
            for i in range(500)
        )
    )
    fused_ids, fused_paths = compile_node(principals), compile_node(paths)
    each_id = [compile_node(n) for n in principals.ids]
    each_path = [compile_node(n) for n in paths.rules]
    for _ in range(1000):
        i = rng.randrange(520)
        san = rng.choice(
            (
                f"spiffe://cluster.local/ns/n{i}/sa/s{i}",
                f"spiffe://cluster.local/ns/n{i}/sa/s{i}x",
                f"spiffe://td/ns/x/sa/s{i}",
                f"spiffe://td/ns/x\n/sa/s{i}",
            )
        )
        path = rng.choice((f"/p{i}/x/items", f"/f.ext{i}", f"/p{i}/x/y/items", f"/q{i}/x/items"))
        inp = RbacInput(headers=[(":path", path)], peer=PeerCertificate(uri_sans=(san,)))
        assert fused_ids(inp) == any(f(inp) for f in each_id), san
        assert fused_paths(inp) == any(f(inp) for f in each_path), path
