"""Errors of the rbac layer."""

from __future__ import annotations

from meshauthz.errors import InputError


class RbacConfigError(InputError, ValueError):
    """An RBAC configuration that Envoy would reject or that we do not support.

    ``path`` is the JSON path of the offending node, e.g.
    ``rules.policies["p"].permissions[0].andRules.rules[2]``.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message, field=path or "<root>", code="rbac-config")
        self.path = path
