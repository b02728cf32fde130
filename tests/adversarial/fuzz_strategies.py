"""Hypothesis strategies for the command fuzzing harness: mutations of real
inputs (manifests, request files, suites, mesh configs, config dumps) and
hostile flag values.

Mutations start from files the project already decides correctly, so most
examples stay close enough to valid input to reach the deciding code rather
than stopping at the first parse error.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]

# The soak: MESHAUTHZ_LONG=1 multiplies every example count (as tests/envoy's long mode).
LONG_FACTOR = 50


def long_mode() -> bool:
    return os.environ.get("MESHAUTHZ_LONG", "") not in ("", "0")


def examples(n: int) -> int:
    return n * LONG_FACTOR if long_mode() else n


Path_ = tuple[str | int, ...]

# Scalars that have broken parsers before: huge and special numbers, every kind
# of whitespace and control character, non-ASCII text, lone surrogates cannot be
# written as UTF-8 so they stay out.
ODD_TEXT = st.text(
    alphabet=st.characters(codec="utf-8"),
    max_size=24,
)
SPECIAL_STRINGS = [
    "",
    " ",
    "*",
    "/",
    "//",
    "/a/../b",
    "%2F",
    "%00",
    "\x00",
    "\r\n",
    "\t",
    "ns/",
    "/name",
    "a/b/c",
    "cluster.local/ns/a/sa/b",
    "10.0.0.1/33",
    "::1",
    "1.2.3.4",
    "300.1.1.1",
    "GET",
    "ALLOW",
    "DENY",
    "AUDIT",
    "CUSTOM",
    "request.auth.claims[groups]",
    "request.headers[]",
    "é",
    "\u202e",
    "{{x}}",
    "/{*}/{**}",
    "/{**}/x",
]
ODD_SCALARS: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 65535, 65536, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    ODD_TEXT,
    st.sampled_from(SPECIAL_STRINGS),
)


def _deep(depth: int) -> Any:
    v: Any = "x"
    for i in range(depth):
        v = [v] if i % 2 else {"k": v}
    return v


VALUES: st.SearchStrategy[Any] = st.one_of(
    ODD_SCALARS,
    st.lists(ODD_SCALARS, max_size=3),
    st.dictionaries(ODD_TEXT, ODD_SCALARS, max_size=3),
    st.integers(min_value=20, max_value=200).map(_deep),
)


def same_type(value: Any) -> st.SearchStrategy[Any]:
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.one_of(st.integers(-1, 70000), st.sampled_from([0, 2**31, 2**64]))
    if isinstance(value, str):
        return st.one_of(
            ODD_TEXT,
            st.sampled_from(SPECIAL_STRINGS),
            st.just(value + "*"),
            st.just("*" + value),
            st.just(value.upper()),
            st.just(" " + value),
        )
    if isinstance(value, list):
        return st.just([*value, *value[:1]]) | st.just([])
    return st.just({})


def paths(tree: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    yield prefix
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from paths(v, (*prefix, i))


def _parent(tree: Any, path: Path_) -> Any:
    for p in path[:-1]:
        tree = tree[p]
    return tree


@st.composite
def mutated_tree(draw: st.DrawFn, base: Any, max_mutations: int = 3) -> Any:
    """``base`` with one to ``max_mutations`` structural edits: a value replaced
    (half the time by one of the same type, so that many mutants stay valid and
    reach the deciding code), a key dropped, a key renamed, a list item
    duplicated, a node wrapped in a list."""
    tree = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_mutations))):
        candidates = [p for p in paths(tree) if p]
        if not candidates:
            return draw(VALUES)
        # half the edits go to a manifest's spec, where the policy semantics are
        in_spec = [p for p in candidates if p[0] == "spec" and len(p) > 1]
        use_spec = draw(st.booleans())
        if in_spec and use_spec:
            candidates = in_spec
        path = draw(st.sampled_from(candidates))
        parent, key = _parent(tree, path), path[-1]
        op = draw(
            st.sampled_from(["same", "same", "same", "replace", "drop", "rename", "dup", "wrap"])
        )
        if op == "same":
            parent[key] = draw(same_type(parent[key]))
        elif op == "replace":
            parent[key] = draw(VALUES)
        elif op == "drop":
            del parent[key]
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(ODD_TEXT)] = parent.pop(key)
        elif op == "dup" and isinstance(parent, list):
            i = int(key)
            parent.insert(i, copy.deepcopy(parent[i]))
        else:
            parent[key] = [parent[key]]
    return tree


def dump_yaml(docs: list[Any]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True, width=1000)


# Text edits no structural mutation produces: tags (one a Python object tag a
# safe loader must refuse), anchors and aliases, a duplicated key, a YAML
# directive, a tab indentation, a BOM, a NUL byte, a merge key.
TEXT_EDITS = [
    lambda t: "%YAML 1.1\n---\n" + t,
    lambda t: "\ufeff" + t,
    lambda t: t.replace("spec:", "spec: !!python/object:os.system", 1),
    lambda t: t.replace("spec:", "spec: !custom", 1),
    lambda t: t.replace("metadata:", "metadata: &m", 1) + "\n---\nx: *m\n",
    lambda t: t.replace("name:", "name: &n", 1).replace("namespace:", "namespace: *n #", 1),
    lambda t: t.replace("kind:", "kind: X\nkind:", 1),
    lambda t: t.replace("  ", "\t", 1),
    lambda t: t.replace("\n", "\n\x00", 1),
    lambda t: t.replace("spec:", "spec:\n  <<: {action: DENY}", 1),
    lambda t: t + "\n---\n" + "[" * 200 + "]" * 200 + "\n",
    lambda t: t + "\n---\na: &a [x, x]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\n",
    lambda t: t.replace("name:", "name: 1e400 #", 1),
    lambda t: t.replace("name:", "name: 0x1F #", 1),
    lambda t: t.replace("name:", "name: 2001-01-01 #", 1),
    lambda t: t.replace("name:", "name: !!binary aGVsbG8= #", 1),
    lambda t: t[: len(t) // 2],
    lambda t: t.replace("\n", "\r\n"),
]


@st.composite
def mutated_yaml(draw: st.DrawFn, docs: list[Any]) -> str:
    """YAML text of ``docs`` after structural mutations of one document and,
    sometimes, a text edit."""
    docs = list(docs)
    i = draw(st.integers(0, len(docs) - 1))
    docs[i] = draw(mutated_tree(docs[i]))
    text = dump_yaml(docs)
    if draw(st.booleans()):
        text = draw(st.sampled_from(TEXT_EDITS))(text)
    return text


def load_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


# Request-level values: every byte in paths, whitespace and control characters
# in headers, odd methods, hosts, ports and addresses.
PATH_VALUES = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=0x7F), max_size=12).map(
        lambda s: "/" + s
    ),
    st.binary(max_size=8).map(lambda b: "/" + b.decode("latin-1")),
    st.sampled_from(
        ["", "*", "/..", "/%2e%2e/x", "/a%2Fb", "/a?b#c", "/#frag", "//x", "/\\x", "/%", "/%zz"]
    ),
)
HEADER_TEXT = st.text(
    alphabet=st.sampled_from(list("aZ-_:; ,\t\r\n\x00\x7f\x0bé/") + ["\u2028"]), max_size=12
)
HEADER_NAMES = st.sampled_from(
    ["x-a", "X-Forwarded-For", "host", ":authority", ":path", "te", "authorization", "cookie"]
)
METHODS = st.one_of(
    st.sampled_from(["GET", "get", "POST", "CONNECT", "", " GET", "G ET", "GET\n", "é"]),
    ODD_TEXT,
)
HOSTS = st.one_of(
    st.sampled_from(
        ["", "b", "b:80", "b:", "B.ECHO1", "*.x", "[::1]:80", "x:99999", "a b", "a\r\nb"]
    ),
    ODD_TEXT,
)
PORTS = st.one_of(
    st.sampled_from([80, 8080, 9080]),
    st.integers(min_value=-5, max_value=70000),
    st.sampled_from([0, 65535, 65536, 2**40]),
)
IPS = st.one_of(
    st.sampled_from(["10.0.0.1", "192.0.2.10", "2001:db8::1"]),
    st.sampled_from(
        ["1.2.3.4", "::1", "300.0.0.1", "1.2.3.4/24", "fe80::1%eth0", "", "x", "01.2.3.4"]
    ),
    ODD_TEXT,
)
# The seed mesh's workloads half the time, so that most requests get decided.
GOOD_TARGETS = st.sampled_from(["default/backend", "default/frontend"])
TARGETS = GOOD_TARGETS | st.sampled_from(
    [
        "default/backend",
        "default/frontend",
        "default/backend:80",
        "default/backend:0",
        "default/backend:x",
        "default/",
        "/backend",
        "backend",
        "backend.default.svc.cluster.local",
        "nope/nope",
        "",
        ":",
        "a/b/c",
    ]
)
JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False),
        ODD_TEXT,
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ODD_TEXT, inner, max_size=3),
    max_leaves=8,
)
CLAIMS = st.one_of(
    st.dictionaries(
        st.one_of(st.sampled_from(["iss", "sub", "aud", "groups", "scope", "a.b"]), ODD_TEXT),
        JSON_VALUES,
        max_size=4,
    ).map(json.dumps),
    JSON_VALUES.map(json.dumps),
    st.sampled_from(["", "{", "{}", "[]", "null", '{"a": NaN}', "[" * 5000, '{"iss": "\\ud800"}']),
)


@st.composite
def request_docs(draw: st.DrawFn) -> Any:
    """A request file's content: a valid-looking request with hostile values,
    sometimes structurally mutated, sometimes a list of them."""
    if draw(st.integers(0, 2)):
        # two in three: a request the seed mesh resolves, hostile only in the
        # values carried to the filters as they are (path, method, headers, ...)
        doc: dict[str, Any] = {"from": draw(GOOD_TARGETS), "to": draw(GOOD_TARGETS)}
        carried = {
            "method": METHODS,
            "path": PATH_VALUES,
            "host": HOSTS,
            "headers": st.dictionaries(HEADER_TEXT, HEADER_TEXT, max_size=3),
            "jwt": st.dictionaries(ODD_TEXT, JSON_VALUES, max_size=3),
            "sni": HOSTS,
        }
        for key, strat in carried.items():
            if draw(st.booleans()):
                doc[key] = draw(strat)
        return doc
    doc = {
        "from": draw(
            st.one_of(
                TARGETS,
                st.fixed_dictionaries(
                    {},
                    optional={
                        "workload": TARGETS,
                        "principal": ODD_TEXT,
                        "plaintext": st.booleans(),
                        "ip": IPS,
                        "namespace": ODD_TEXT,
                    },
                ),
            )
        ),
        "to": draw(TARGETS),
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "port": PORTS,
        "protocol": st.sampled_from(["http", "tcp", "grpc", ""]),
        "method": METHODS,
        "path": PATH_VALUES,
        "host": HOSTS,
        "headers": st.dictionaries(HEADER_TEXT, st.one_of(HEADER_TEXT, st.lists(HEADER_TEXT))),
        "jwt": st.dictionaries(ODD_TEXT, JSON_VALUES, max_size=3),
        "remoteIP": IPS,
        "sni": HOSTS,
        "token": ODD_TEXT,
        "name": ODD_TEXT,
    }
    for key, strat in optional.items():
        if draw(st.integers(0, 2)) == 0:
            doc[key] = draw(strat)
    if draw(st.integers(0, 3)) == 0:
        doc = draw(mutated_tree(doc, max_mutations=2))
    if draw(st.integers(0, 4)) == 0:
        return [doc, copy.deepcopy(doc)]
    return doc
