"""Property tests: random documents never make the loader or validator raise
anything but the project's own error type."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshauthz.errors import MeshauthzError
from meshauthz.resources.loader import load_documents
from meshauthz.resources.validation import validate
from meshauthz.resources.yamlload import Document, parse_documents

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(
        ["*", "GET", "/a/*", "10.0.0.0/8", "::1/128", "ns/sa", "", "request.headers[x]"]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=10), inner, max_size=4),
    ),
    max_leaves=20,
)

KINDS = [
    ("security.istio.io/v1", "AuthorizationPolicy"),
    ("security.istio.io/v1beta1", "AuthorizationPolicy"),
    ("security.istio.io/v1", "RequestAuthentication"),
    ("security.istio.io/v1", "PeerAuthentication"),
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("v1", "Pod"),
    ("v1", "List"),
    ("v1", "ConfigMap"),
]

BASE_POLICY: dict[str, Any] = {
    "apiVersion": "security.istio.io/v1",
    "kind": "AuthorizationPolicy",
    "metadata": {"name": "p", "namespace": "foo"},
    "spec": {
        "selector": {"matchLabels": {"app": "a"}},
        "action": "ALLOW",
        "rules": [
            {
                "from": [{"source": {"principals": ["a"], "ipBlocks": ["1.2.3.4"]}}],
                "to": [{"operation": {"methods": ["GET"], "paths": ["/x"], "ports": ["80"]}}],
                "when": [{"key": "request.headers[x]", "values": ["v"]}],
            }
        ],
    },
}


def _check(data: Any) -> None:
    doc = Document("random.yaml", 0, 1, data, {})
    try:
        result = load_documents([doc])
        validate(result.manifests)
    except MeshauthzError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KINDS), values, values)
def test_random_objects(kind: tuple[str, str], spec: Any, meta: Any) -> None:
    api_version, k = kind
    _check(
        {
            "apiVersion": api_version,
            "kind": k,
            "metadata": meta,
            "spec": spec,
            "items": spec,
            "data": {"mesh": spec if isinstance(spec, str) else yaml.safe_dump(spec)},
        }
    )


@st.composite
def mutated_policies(draw: st.DrawFn) -> Any:
    """A valid policy with one subtree replaced by a random value."""
    doc = copy.deepcopy(BASE_POLICY)
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k in list(node):
                paths.append((node, k))
                walk(node[k])
        elif isinstance(node, list):
            for i in range(len(node)):
                paths.append((node, i))
                walk(node[i])

    walk(doc)
    for _ in range(draw(st.integers(1, 3))):
        parent, key = draw(st.sampled_from(paths))
        parent[key] = draw(values)
    return doc


@settings(max_examples=400, deadline=None)
@given(mutated_policies())
def test_mutated_policies(doc: Any) -> None:
    _check(doc)


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("ab: -[]{}&*!|>'\"#\n\t%@`,?0123456789")), max_size=80)
)
def test_random_yaml_text(text: str) -> None:
    try:
        docs = parse_documents(text, "random.yaml")
        result = load_documents(docs)
        validate(result.manifests)
    except MeshauthzError:
        pass
