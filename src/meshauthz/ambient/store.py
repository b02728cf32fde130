"""ztunnel's policy store (src/state/policy.rs ``PolicyStore``) and which of
its policies apply to a destination workload (state.rs ``assert_rbac``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from msgspec import Struct, field

from meshauthz.ambient.authorization import Authorization

GLOBAL = ""  # the namespace key of GLOBAL-scoped policies


class PolicyStore(Struct):
    by_key: dict[str, Authorization] = field(default_factory=dict)
    by_namespace: dict[str, dict[str, None]] = field(default_factory=dict)

    def insert(self, policy: Authorization, key: str | None = None) -> None:
        """``insert``: indexed by namespace when NAMESPACE-scoped, under "" when
        GLOBAL, not at all when WORKLOAD_SELECTOR (a workload names it)."""
        k = key if key is not None else policy.key
        self.remove(k)
        if policy.scope == "GLOBAL":
            self.by_namespace.setdefault(GLOBAL, {})[k] = None
        elif policy.scope == "NAMESPACE":
            self.by_namespace.setdefault(policy.namespace, {})[k] = None
        self.by_key[k] = policy

    def remove(self, key: str) -> None:
        old = self.by_key.pop(key, None)
        if old is None:
            return
        ns = {"GLOBAL": GLOBAL, "NAMESPACE": old.namespace}.get(old.scope)
        if ns is not None and ns in self.by_namespace:
            self.by_namespace[ns].pop(key, None)
            if not self.by_namespace[ns]:
                del self.by_namespace[ns]

    def get_by_namespace(self, namespace: str) -> list[str]:
        return list(self.by_namespace.get(namespace, {}))

    def for_workload(self, namespace: str, workload_policies: Sequence[str]) -> list[Authorization]:
        """The destination's policies: its namespace's, the global ones, then
        those the workload lists; a listed key ztunnel does not hold is skipped
        ("skipping unknown policy")."""
        keys: Iterable[str] = [
            *self.get_by_namespace(namespace),
            *self.get_by_namespace(GLOBAL),
            *workload_policies,
        ]
        return [self.by_key[k] for k in keys if k in self.by_key]


__all__ = ["GLOBAL", "PolicyStore"]
