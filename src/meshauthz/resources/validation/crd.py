"""The rules Istio's CRDs declare beyond types (crd-all.gen.yaml, security.istio.io).

The API server applies these before Istio's webhook sees an object: item and
length limits, patterns, required fields and the x-kubernetes-validations (CEL)
rules. They are checked on the object as written, because CEL's ``has()`` sees
a field that is present but empty (``targetRefs: []``), which the typed model
cannot tell from an absent one. Kubernetes drops null fields before validating,
so a null counts as absent. Types, enums, unknown fields and required fields are
already enforced by the loader.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from msgspec import Struct, field

from meshauthz.resources.objects import Resource
from meshauthz.resources.validation.gosyntax import cel_url_scheme, parse_duration
from meshauthz.resources.validation.report import FieldPath, Report, field_name

# A CEL rule: (predicate on the value, code, message). The predicate returns False
# when the rule is violated, or None when CEL would fail to evaluate (also a rejection).
CelRule = tuple[Callable[[Any], bool | None], str, str]


class Node(Struct, frozen=True):
    props: dict[str, Node] = field(default_factory=dict)
    items: Node | None = None
    values: Node | None = None  # additionalProperties
    max_items: int | None = None
    max_length: int | None = None
    min_length: int | None = None
    pattern: str | None = None
    max_properties: int | None = None
    min_properties: int | None = None
    cel: tuple[CelRule, ...] = ()
    # CEL rules of the form self.all(key, ...): checked per key, reported at that key.
    key_cel: tuple[CelRule, ...] = ()
    # Code used for a minLength violation when it coincides with an Istio webhook check.
    min_length_code: str = "too-short"


def _present(obj: dict[str, Any], key: str) -> bool:
    return obj.get(key) is not None


def _count_present(obj: dict[str, Any], *keys: str) -> int:
    return sum(1 for k in keys if _present(obj, k))


def _string_list(max_length: int | None = None, min_length: int | None = None, **kw: Any) -> Node:
    return Node(
        items=Node(
            max_length=max_length,
            min_length=min_length,
            min_length_code=kw.pop("min_length_code", "too-short"),
        ),
        **kw,
    )


_LABEL_MAP = Node(
    values=Node(
        max_length=63,
        cel=(
            (
                lambda v: "*" not in v,
                "selector-wildcard",
                "wildcards are not allowed in a label value",
            ),
        ),
    ),
    max_properties=4096,
    key_cel=(
        (lambda k: "*" not in k, "selector-wildcard", "wildcards are not allowed in a label key"),
        (lambda k: k != "", "selector-empty-key", "a label key must not be empty"),
    ),
)
_SELECTOR = Node(props={"matchLabels": _LABEL_MAP})

_GROUP_PATTERN = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_KIND_PATTERN = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"
_TARGET_REF = Node(
    props={
        "group": Node(max_length=253, pattern=_GROUP_PATTERN, min_length_code="target-ref-kind"),
        "kind": Node(
            max_length=63, min_length=1, pattern=_KIND_PATTERN, min_length_code="target-ref-kind"
        ),
        "name": Node(max_length=253, min_length=1, min_length_code="target-ref-name"),
        "namespace": Node(
            cel=(
                (
                    lambda v: len(v) == 0,
                    "target-ref-namespace",
                    "cross-namespace references are not supported; leave namespace empty",
                ),
            )
        ),
    }
)
_ONE_TARGET_KIND: CelRule = (
    lambda s: _count_present(s, "selector", "targetRef", "targetRefs") <= 1,
    "selector-and-target-ref",
    "only one of selector, targetRef or targetRefs may be set",
)


def _no_sa_with_identity(src: dict[str, Any]) -> bool:
    if _present(src, "serviceAccounts") or _present(src, "notServiceAccounts"):
        return not any(
            _present(src, k) for k in ("principals", "notPrincipals", "namespaces", "notNamespaces")
        )
    return True


_SOURCE = Node(
    props={
        "serviceAccounts": _string_list(max_length=320, max_items=16),
        "notServiceAccounts": _string_list(max_length=320, max_items=16),
    },
    cel=(
        (
            _no_sa_with_identity,
            "service-accounts-with-principals-or-namespaces",
            "serviceAccounts cannot be combined with principals or namespaces in the same source",
        ),
    ),
)

AUTHORIZATION_POLICY = Node(
    props={
        "selector": _SELECTOR,
        "targetRef": _TARGET_REF,
        "targetRefs": Node(items=_TARGET_REF, max_items=16),
        "rules": Node(
            max_items=512,
            items=Node(props={"from": Node(max_items=512, items=Node(props={"source": _SOURCE}))}),
        ),
    },
    cel=(_ONE_TARGET_KIND,),
)


def _url_scheme_ok(v: str) -> bool | None:
    scheme = cel_url_scheme(v)
    return None if scheme is None else scheme in ("http", "https")


def _timeout_ok(v: str) -> bool | None:
    nanos = parse_duration(v)
    return None if nanos is None else nanos >= 1_000_000


_JWKS_URI = Node(
    max_length=2048,
    min_length=1,
    min_length_code="invalid-jwks-uri",
    cel=((_url_scheme_ok, "invalid-jwks-uri", "the URL must have scheme http:// or https://"),),
)
_NON_EMPTY_LIST = _string_list(min_length=1, min_length_code="empty-value")

REQUEST_AUTHENTICATION = Node(
    props={
        "selector": _SELECTOR,
        "targetRef": _TARGET_REF,
        "targetRefs": Node(items=_TARGET_REF, max_items=16),
        "jwtRules": Node(
            max_items=4096,
            items=Node(
                props={
                    "issuer": Node(min_length=1, min_length_code="empty-value"),
                    "audiences": _NON_EMPTY_LIST,
                    "fromCookies": _NON_EMPTY_LIST,
                    "fromParams": _NON_EMPTY_LIST,
                    "fromHeaders": Node(
                        items=Node(
                            props={"name": Node(min_length=1, min_length_code="empty-value")}
                        )
                    ),
                    "jwksUri": _JWKS_URI,
                    "jwks_uri": _JWKS_URI,
                    "outputClaimToHeaders": Node(
                        items=Node(
                            props={
                                "claim": Node(
                                    min_length=1, min_length_code="invalid-output-claim-to-header"
                                ),
                                "header": Node(
                                    min_length=1,
                                    pattern=r"^[-_A-Za-z0-9]+$",
                                    min_length_code="invalid-output-claim-to-header",
                                ),
                            }
                        )
                    ),
                    "spaceDelimitedClaims": _string_list(
                        min_length=1, max_items=64, min_length_code="empty-value"
                    ),
                    "timeout": Node(
                        cel=(
                            (
                                _timeout_ok,
                                "invalid-timeout",
                                "the timeout must be a valid duration of at least 1ms",
                            ),
                        )
                    ),
                },
                cel=(
                    (
                        lambda r: _count_present(r, "jwksUri", "jwks_uri", "jwks") <= 1,
                        "multiple-jwks-sources",
                        "only one of jwks, jwksUri (or jwks_uri) may be set",
                    ),
                ),
            ),
        ),
    },
    cel=(_ONE_TARGET_KIND,),
)


def _port_key_ok(m: dict[str, Any]) -> bool | None:
    for key in m:
        if not re.fullmatch(r"[+-]?[0-9]+", key):
            return None  # int() fails in CEL
        if not 0 < int(key) <= 65535:
            return False
    return True


def _port_level_needs_selector(spec: dict[str, Any]) -> bool:
    if not _present(spec, "portLevelMtls"):
        return True
    selector = spec.get("selector")
    labels = selector.get("matchLabels") if isinstance(selector, dict) else None
    return bool(labels)


PEER_AUTHENTICATION = Node(
    props={
        "selector": _SELECTOR,
        "portLevelMtls": Node(
            min_properties=1,
            cel=((_port_key_ok, "invalid-port", "port-level keys must be ports in 1-65535"),),
        ),
    },
    cel=(
        (
            _port_level_needs_selector,
            "port-level-mtls-without-selector",
            "portLevelMtls requires a selector with labels",
        ),
    ),
)

SCHEMAS = {
    "AuthorizationPolicy": AUTHORIZATION_POLICY,
    "RequestAuthentication": REQUEST_AUTHENTICATION,
    "PeerAuthentication": PEER_AUTHENTICATION,
}


def validate_crd(resource: Resource, report: Report, raw: dict[str, Any]) -> None:
    schema = SCHEMAS.get(resource.kind)
    spec = raw.get("spec")
    if schema is None or not isinstance(spec, dict):
        return
    _walk(schema, spec, ("spec",), report)


def _walk(node: Node, value: Any, path: FieldPath, report: Report) -> None:
    where = field_name(path)
    if isinstance(value, str):
        _check_string(node, value, path, report)
    elif isinstance(value, list):
        if node.max_items is not None and len(value) > node.max_items:
            report.error(
                "too-many-items",
                f"{where} has {len(value)} items; at most {node.max_items} are allowed",
                *path,
            )
        if node.items is not None:
            for i, item in enumerate(value):
                _walk(node.items, item, (*path, i), report)
    elif isinstance(value, dict):
        if node.max_properties is not None and len(value) > node.max_properties:
            report.error(
                "too-many-items",
                f"{where} has {len(value)} entries; at most {node.max_properties} are allowed",
                *path,
            )
        if node.min_properties is not None and len(value) < node.min_properties:
            code = "empty-port-level-mtls" if path[-1] == "portLevelMtls" else "too-few-items"
            report.error(
                code,
                f"{where} must have at least {node.min_properties} entry when it is set",
                *path,
            )
        for key in value:
            for rule, code, message in node.key_cel:
                if not rule(key):
                    report.error(code, f"{field_name((*path, key))}: {message}", *path, key)
        for key, sub in value.items():
            child = node.props.get(key, node.values)
            if child is not None and sub is not None:
                _walk(child, sub, (*path, key), report)
    if value is None:
        return
    for rule, code, message in node.cel:
        if not rule(value):
            report.error(code, f"{where}: {message}", *path)


def _check_string(node: Node, value: str, path: FieldPath, report: Report) -> None:
    where = field_name(path)
    if node.max_length is not None and len(value) > node.max_length:
        report.error(
            "too-long",
            f"{where} is {len(value)} characters long; at most {node.max_length} are allowed",
            *path,
        )
    if node.min_length is not None and len(value) < node.min_length:
        report.error(node.min_length_code, f"{where} must not be empty", *path)
    if node.pattern is not None and not re.search(node.pattern.replace("$", r"\Z"), value):
        report.error("pattern-mismatch", f"{where}: {value!r} does not match {node.pattern}", *path)
