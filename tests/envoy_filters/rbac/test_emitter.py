"""The emitted policy code (``PythonEmitter``) against the compiled closures and
the traced walk, on random RBAC trees: the three forms of a policy agree."""

from __future__ import annotations

import random
import sys

from hypothesis import given
from hypothesis import strategies as st

from meshauthz.envoy.rbac.evaluate import (
    PeerCertificate,
    PythonEmitter,
    RbacInput,
    compile_policy,
    compile_rbac,
    prefix_bounds,
)
from meshauthz.envoy.rbac.model import (
    RBAC,
    Action,
    CidrRange,
    HeaderMatcher,
    IdAnd,
    IdAny,
    IdAuthenticated,
    IdHeader,
    IdNot,
    IdOr,
    IdRemoteIp,
    MetadataMatcher,
    PermAnd,
    PermAny,
    PermDestinationPort,
    PermHeader,
    PermMetadata,
    PermNot,
    PermOr,
    PermUrlPath,
    Policy,
    StringMatcher,
    ValueMatcher,
)


def _sm(rng: random.Random) -> StringMatcher:
    kind = rng.choice(("exact", "exact", "prefix", "suffix", "contains", "safe_regex"))
    value = rng.choice(("a", "ab", "/a", "/a/b", "", "b.*" if kind == "safe_regex" else "B"))
    if kind == "safe_regex" and value == "":
        value = "a.*"
    return StringMatcher(kind, value, ignore_case=rng.random() < 0.15)  # type: ignore[arg-type]


def _header(rng: random.Random) -> HeaderMatcher:
    kind = rng.choice(("string", "string", "exact", "present", "prefix"))
    name = rng.choice(("x-a", "X-A", ":method", "x-b"))
    return HeaderMatcher(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        value=rng.choice(("a", "", "GET")) if kind != "string" else "",
        string=_sm(rng) if kind == "string" else None,
        present=rng.random() < 0.7,
        invert_match=rng.random() < 0.15,
        treat_missing_header_as_empty=rng.random() < 0.15,
    )


def _perm(rng: random.Random, depth: int):
    leaves = [
        lambda: PermAny(),
        lambda: PermHeader(_header(rng)),
        lambda: PermUrlPath(_sm(rng)),
        lambda: PermDestinationPort(rng.choice((80, 90))),
    ]
    if depth <= 0 or rng.random() < 0.4:
        return rng.choice(leaves)()
    kids = tuple(_perm(rng, depth - 1) for _ in range(rng.randrange(0, 4)))
    return rng.choice(
        (lambda: PermAnd(kids), lambda: PermOr(kids), lambda: PermNot(_perm(rng, depth - 1)))
    )()


def _principal(rng: random.Random, depth: int):
    leaves = [
        lambda: IdAny(),
        lambda: IdAuthenticated(_sm(rng) if rng.random() < 0.9 else None),
        lambda: IdHeader(_header(rng)),
        lambda: IdRemoteIp(CidrRange("10.0.0.0", rng.choice((8, 24)))),
    ]
    if depth <= 0 or rng.random() < 0.4:
        return rng.choice(leaves)()
    kids = tuple(_principal(rng, depth - 1) for _ in range(rng.randrange(0, 4)))
    return rng.choice(
        (lambda: IdAnd(kids), lambda: IdOr(kids), lambda: IdNot(_principal(rng, depth - 1)))
    )()


def _input(rng: random.Random) -> RbacInput:
    headers = []
    for _ in range(rng.randrange(0, 4)):
        headers.append((rng.choice(("x-a", "x-b", ":method")), rng.choice(("a", "ab", "GET", ""))))
    if rng.random() < 0.8:
        headers.append((":path", rng.choice(("/a", "/a/b?q", "/ab", "/", "/a#f"))))
    peer = None
    if rng.random() < 0.8:
        sans = tuple(rng.sample(("a", "ab", "/a", "b", "B"), rng.randrange(0, 3)))
        dns = tuple(rng.sample(("a", "x"), rng.randrange(0, 2)))
        peer = PeerCertificate(uri_sans=sans, dns_sans=dns, subject=rng.choice(("", "a", "ab")))
    return RbacInput(
        direct_remote_ip=rng.choice(("10.0.0.1", "11.0.0.1")),
        destination_port=rng.choice((80, 90)),
        peer=peer,
        headers=headers if rng.random() < 0.9 else None,
    )


def _emitted(policy: Policy):
    em = PythonEmitter()
    expr = em.policy(policy)
    src = "\n".join(
        [
            "def make(k):",
            "  def f(inp):",
            *(f"    {line}" for line in em.prologue()),
            f"    return bool({expr})",
            "  return f",
        ]
    )
    ns: dict = {}
    exec(src, ns)
    return ns["make"](em.constants()), src


def test_emitted_policies_match_closures_and_trace():
    rng = random.Random(7)
    inputs = [_input(rng) for _ in range(40)]
    for _ in range(600):
        policy = Policy(
            permissions=tuple(_perm(rng, 3) for _ in range(rng.randrange(0, 3))),
            principals=tuple(_principal(rng, 3) for _ in range(rng.randrange(0, 3))),
        )
        emitted, src = _emitted(policy)
        closure = compile_policy(policy)
        traced = compile_rbac(RBAC(Action.ALLOW, (("p", policy),)))
        for inp in inputs:
            want = traced.evaluate(inp, trace=True).allowed
            assert bool(closure(inp)) == want, (policy, inp)
            assert emitted(inp) == want, (policy, inp, src)


def test_fusion_keys_see_every_fusable_node():
    """The fusion key dispatches on a node's exact class (it runs for every node of
    every chain a mesh builds): exact only while the model's classes have no
    subclasses; and each fusable kind has its key."""
    from meshauthz.envoy.rbac import evaluate, model

    nodes = [
        c
        for c in vars(model).values()
        if isinstance(c, type) and c.__name__.startswith(("Perm", "Id"))
    ]
    assert len(nodes) >= 20
    assert [c.__name__ for c in nodes if c.__subclasses__()] == []
    path = model.StringMatcher("prefix", "/a")
    assert evaluate._fusion_key(model.PermUrlPath(path)) == ("url_path",)
    assert evaluate._fusion_key(model.IdUrlPath(path)) == ("url_path",)
    assert evaluate._fusion_key(model.IdAuthenticated(path)) == ("authenticated",)
    assert evaluate._fusion_key(model.IdAuthenticated(None)) is None
    assert evaluate._fusion_key(model.IdFilterState("k", path)) == ("filter_state", "k")
    assert evaluate._fusion_key(model.PermAny()) is None


# characters around the edges of code point order, and a few ordinary ones
_EDGE = st.sampled_from(["", "a", "b", "/", "\x00", "\x7f", "\x80", "\uffff", "\U00010000"])
_CHARS = st.one_of(
    _EDGE.filter(bool), st.just(chr(sys.maxunicode)), st.characters(), st.sampled_from("ab/")
)
_STRS = st.lists(_CHARS, max_size=5).map("".join)


@given(prefix=_STRS, rest=_STRS, other=_STRS)
def test_prefix_bounds_are_startswith(prefix: str, rest: str, other: str) -> None:
    """The emitted prefix test (two comparisons) is str.startswith, for strings
    that start with the prefix and strings that do not, at the edges of code
    point order (the last character incremented, the last code point)."""
    bounds = prefix_bounds(prefix)
    if bounds is None:
        assert prefix == "" or prefix[-1] == chr(sys.maxunicode)
        return
    lo, hi = bounds
    near = [prefix + rest, other, prefix[:-1], hi, hi + rest, prefix[:-1] + other, other + prefix]
    for s in near:
        assert (lo <= s < hi) == s.startswith(prefix), (prefix, s)


def test_the_emitter_names_the_headers_and_metadata_its_code_reads():
    # what decides whether a chain's code may take a lean request view, and
    # whether it reads what an earlier RBAC filter wrote (then only the walk runs it)
    rbac_written = MetadataMatcher(
        "envoy.filters.http.rbac",
        ("shadow_effective_policy_id",),
        ValueMatcher("string", string=StringMatcher("exact", "p")),
    )
    em = PythonEmitter()
    em.policy(
        Policy(
            permissions=(
                PermAnd(
                    (
                        PermHeader(
                            HeaderMatcher(":method", "string", string=StringMatcher("exact", "GET"))
                        ),
                        PermNot(PermMetadata(rbac_written)),
                    )
                ),
            ),
            principals=(
                IdHeader(HeaderMatcher("X-User", "string", string=StringMatcher("exact", "a"))),
            ),
        )
    )
    assert em.header_names() == {":method", "x-user"}
    assert em.metadata_filters() == {"envoy.filters.http.rbac"}
    plain = PythonEmitter()
    plain.policy(Policy(permissions=(PermAny(),), principals=(IdAny(),)))
    assert plain.header_names() == set() and plain.metadata_filters() == set()
