"""Label-set matching, as ``pkg/config/labels/instance.go`` does it."""

from __future__ import annotations

from collections.abc import Mapping


def subset_of(selector: Mapping[str, str] | None, labels: Mapping[str, str] | None) -> bool:
    """``Instance.SubsetOf``: an empty selector is a subset of anything; otherwise
    every key must be present with the identical value. Used for policy selectors."""
    if not selector:
        return True
    if not labels or len(labels) < len(selector):
        return False
    return all(k in labels and labels[k] == v for k, v in selector.items())


def match(selector: Mapping[str, str] | None, labels: Mapping[str, str] | None) -> bool:
    """``Instance.Match``: like ``subset_of`` but an empty selector selects nothing.
    Used for Service selectors (a Service without a selector has no pods)."""
    if not selector:
        return False
    return subset_of(selector, labels)


__all__ = ["match", "subset_of"]
