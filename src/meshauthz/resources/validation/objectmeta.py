"""What the Kubernetes API server refuses in an object's metadata when it is created.

An object the API server refuses does not exist in a cluster, so no answer may
use it: these are errors, and the loader leaves the object out. The rules are
Kubernetes' (k8s.io/apimachinery ``pkg/api/validation`` ValidateObjectMetaAccessor
with the name rule each kind's registry passes it, ``pkg/util/validation``):

* ``metadata.name``: a DNS-1123 subdomain for custom resources (every Istio and
  Gateway API kind) and most built-in kinds; a DNS-1123 label for a Namespace; a
  DNS-1035 label for a Service;
* ``metadata.generateName``: the same rule for a prefix (a trailing '-' allowed);
  ``kubectl apply`` refuses an object with a generateName and no name;
* ``metadata.namespace``: a DNS-1123 label;
* labels: qualified-name keys and label values; annotations: qualified-name keys
  (any case) and at most 256 KiB in all;
* unknown fields of metadata, as strict field validation reports them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from meshauthz.resources.yamlload import Path

# (path in the object, code, message)
Problem = tuple[Path, str, str]

# ObjectMeta's fields (k8s.io/apimachinery pkg/apis/meta/v1/types.go, by JSON name)
OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)

SUBDOMAIN_MAX = 253
LABEL_MAX = 63  # a DNS label, a label value and a qualified name's name part
ANNOTATIONS_MAX_BYTES = 256 * 1024

_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1035 = "[a-z]([-a-z0-9]*[a-z0-9])?"
_NAME_PART = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"

SUBDOMAIN_RULE = (
    "a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', starting and "
    f"ending with a letter or digit, at most {SUBDOMAIN_MAX} characters"
)
LABEL_RULE = (
    "a DNS-1123 label: lowercase letters, digits and '-', starting and ending with "
    f"a letter or digit, at most {LABEL_MAX} characters"
)
DNS1035_RULE = (
    "a DNS-1035 label: lowercase letters, digits and '-', starting with a letter and "
    f"ending with a letter or digit, at most {LABEL_MAX} characters"
)
_NAME_PART_RULE = (
    "letters, digits, '-', '_' and '.', starting and ending with a letter or digit, "
    f"at most {LABEL_MAX} characters"
)


@functools.cache  # compiled on first use, not at import (start-up)
def _patterns() -> dict[str, re.Pattern[str]]:
    return {
        "label": re.compile(_LABEL),
        "subdomain": re.compile(f"{_LABEL}(\\.{_LABEL})*"),
        "dns1035": re.compile(_DNS1035),
        "name_part": re.compile(_NAME_PART),
    }


def is_dns1123_label(value: str) -> bool:
    return len(value) <= LABEL_MAX and _patterns()["label"].fullmatch(value) is not None


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= SUBDOMAIN_MAX and _patterns()["subdomain"].fullmatch(value) is not None


def is_dns1035_label(value: str) -> bool:
    return len(value) <= LABEL_MAX and _patterns()["dns1035"].fullmatch(value) is not None


@functools.lru_cache(maxsize=4096)  # a mesh repeats its few label and annotation keys
def qualified_name_problem(key: str) -> str | None:
    """Why ``key`` is not a qualified name (a label or annotation key), or None."""
    parts = key.split("/")
    if len(parts) > 2:
        return "at most one '/' may separate a DNS-1123 subdomain prefix from the name"
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            return "the prefix before '/' is empty"
        if not is_dns1123_subdomain(prefix):
            return f"the prefix {prefix!r} is not {SUBDOMAIN_RULE}"
    name = parts[-1]
    if not name:
        return "the name part is empty"
    if len(name) > LABEL_MAX or _patterns()["name_part"].fullmatch(name) is None:
        return f"the name part {name!r} must be {_NAME_PART_RULE}"
    return None


@functools.lru_cache(maxsize=4096)
def is_label_value(value: str) -> bool:
    return value == "" or (
        len(value) <= LABEL_MAX and _patterns()["name_part"].fullmatch(value) is not None
    )


# The name rule of each kind meshauthz reads, by (group, kind); the others (custom
# resources, Pod, ServiceAccount, the controllers) use a DNS-1123 subdomain.
_NAME_RULES = {
    ("", "Namespace"): (is_dns1123_label, LABEL_RULE),
    ("", "Service"): (is_dns1035_label, DNS1035_RULE),
}
_DEFAULT_NAME_RULE = (is_dns1123_subdomain, SUBDOMAIN_RULE)


def _suggestion(value: str, valid: Any) -> str:
    """A valid spelling close to ``value`` (lower case, '_' as '-'), if there is one."""
    guess = value.lower().replace("_", "-")
    return f' (e.g. "{guess}")' if guess != value and valid(guess) else ""


def metadata_problems(
    group: str, kind: str, meta: Mapping[str, Any], *, namespaced: bool
) -> list[Problem]:
    """What the API server refuses in ``meta`` (the object's metadata as written,
    its modelled fields already of the right types) for an object of ``kind``."""
    out: list[Problem] = []
    valid, rule = _NAME_RULES.get((group, kind), _DEFAULT_NAME_RULE)
    name = meta.get("name") or ""
    generate_name = meta.get("generateName") or ""
    if name and not valid(name):
        out.append(
            (
                ("metadata", "name"),
                "invalid-name",
                f'"{name}" is not a valid {kind} name: the API server requires '
                f"{rule}{_suggestion(name, valid)}",
            )
        )
    if generate_name:
        # a prefix: the API server appends characters, so a final '-' is allowed
        masked = (
            generate_name[:-2] + "a"
            if len(generate_name) > 1 and generate_name[-1] == "-"
            else generate_name
        )
        if not valid(masked):
            out.append(
                (
                    ("metadata", "generateName"),
                    "invalid-name",
                    f'"{generate_name}" is not a valid prefix of a {kind} '
                    f"name: the API server requires {rule}, with a final '-' allowed",
                )
            )
        elif not name:
            out.append(
                (
                    ("metadata", "name"),
                    "invalid-name",
                    "metadata.name is required: kubectl apply refuses an object with only a "
                    "generateName (the API server would pick its name); give it a name",
                )
            )
    namespace = meta.get("namespace") or ""
    if namespaced and namespace and not is_dns1123_label(namespace):
        out.append(
            (
                ("metadata", "namespace"),
                "invalid-namespace",
                f'"{namespace}" is not a valid namespace name: the API '
                f"server requires {LABEL_RULE}{_suggestion(namespace, is_dns1123_label)}",
            )
        )
    return out + _fields_labels_annotations(meta, ())


def template_metadata_problems(meta: Mapping[str, Any], at: Path) -> list[Problem]:
    """What the API server refuses in a pod template's metadata (at ``at``, e.g.
    ("spec", "template")): its labels, annotations and unknown fields; a
    template's name and namespace are not checked (ValidatePodTemplateSpec)."""
    return _fields_labels_annotations(meta, at)


def _fields_labels_annotations(meta: Mapping[str, Any], at: Path) -> list[Problem]:
    out: list[Problem] = [
        ((*at, "metadata", key), "schema", f'unknown field "{key}"')
        for key in meta
        if key not in OBJECT_META_FIELDS
    ]
    labels = meta.get("labels") or {}
    for key, value in labels.items():
        why = qualified_name_problem(key)
        if why is not None:
            out.append(
                (
                    (*at, "metadata", "labels", key),
                    "invalid-label",
                    f'label key "{key}" is not valid: {why}',
                )
            )
        if not is_label_value(value):
            out.append(
                (
                    (*at, "metadata", "labels", key),
                    "invalid-label",
                    f'label value "{value}" is not valid: a label value must be empty or '
                    f"{_NAME_PART_RULE}",
                )
            )
    annotations = meta.get("annotations") or {}
    size = 0
    for key, value in annotations.items():
        size += len(key.encode()) + len(value.encode())
        why = qualified_name_problem(key.lower())  # case does not matter in annotation keys
        if why is not None:
            out.append(
                (
                    (*at, "metadata", "annotations", key),
                    "invalid-annotation",
                    f'annotation key "{key}" is not valid: {why}',
                )
            )
    if size > ANNOTATIONS_MAX_BYTES:
        out.append(
            (
                (*at, "metadata", "annotations"),
                "invalid-annotation",
                f"the annotations hold {size} bytes (keys and values): the API server allows "
                f"at most {ANNOTATIONS_MAX_BYTES}",
            )
        )
    return out


__all__ = [
    "OBJECT_META_FIELDS",
    "is_dns1035_label",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_label_value",
    "metadata_problems",
    "qualified_name_problem",
    "template_metadata_problems",
]
