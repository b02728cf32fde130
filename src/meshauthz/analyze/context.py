"""What every check reads: the loaded mesh, which workloads each policy applies
to (istiod's selection, ``mesh.selection``), and the witness decider."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

from meshauthz.analyze.finding import AnalysisFinding
from meshauthz.analyze.witness import Witnesses
from meshauthz.mesh import (
    MeshSnapshot,
    MeshWorkload,
    PolicyMatcher,
    inbound_ports,
    select_policies,
    should_attach,
)
from meshauthz.mesh.loading import LoadedMesh
from meshauthz.mesh.ports import InboundPort
from meshauthz.mesh.selection import target_refs
from meshauthz.resources.findings import Finding
from meshauthz.resources.objects import (
    AuthorizationPolicy,
    Manifests,
    RequestAuthentication,
)


class Context:
    """``manifests`` is None when only the snapshot is known (a command that
    decides requests): the checks that need the objects as read are skipped.
    ``only``: the AuthorizationPolicies ("namespace/name") to check; None: all.
    ``rules``: the (policy, rule) pairs whose findings are wanted (None: every
    rule's) and ``info``: whether info findings are (a decision's notes show
    neither the other rules' nor remarks): a check may skip a costly witness
    that could only make a finding not wanted.

    A plain class, not a dataclass: a dataclass's methods are compiled when its
    module is imported, and check imports this one (start-up)."""

    def __init__(
        self,
        snapshot: MeshSnapshot,
        manifests: Manifests | None = None,
        warnings: tuple[Finding, ...] = (),
        only: frozenset[str] | None = None,
        rules: frozenset[tuple[str, int]] | None = None,
        info: bool = True,
    ) -> None:
        self.snapshot = snapshot
        self.manifests = manifests
        self.warnings = warnings
        self.only = only
        self.rules = rules
        self.info = info
        self.findings: list[AnalysisFinding] = []
        self._applies: dict[int, list[MeshWorkload]] = {}

    @staticmethod
    def of(loaded: LoadedMesh) -> Context:
        return Context(loaded.snapshot, loaded.manifests, loaded.findings)

    @property
    def authorization_policies(self) -> list[AuthorizationPolicy]:
        """The AuthorizationPolicies to check, in store order."""
        ps = self.snapshot.authorization_policies
        if self.only is None:
            return ps
        return [p for p in ps if p.key in self.only]

    @property
    def request_authentications(self) -> list[RequestAuthentication]:
        return self.snapshot.request_authentications if self.only is None else []

    @cached_property
    def witnesses(self) -> Witnesses:
        return Witnesses(self.snapshot)

    def wants_rule(self, policy: str, rule: int) -> bool:
        return self.rules is None or (policy, rule) in self.rules

    def add(self, finding: AnalysisFinding) -> None:
        self.findings.append(finding)

    @cached_property
    def by_principal(self) -> dict[str, MeshWorkload]:
        """The first workload with each identity."""
        out: dict[str, MeshWorkload] = {}
        for w in self.snapshot.workloads:
            out.setdefault(w.identity.principal, w)
        return out

    @cached_property
    def first_in_namespace(self) -> dict[str, MeshWorkload]:
        out: dict[str, MeshWorkload] = {}
        for w in self.snapshot.workloads:
            out.setdefault(w.namespace, w)
        return out

    @cached_property
    def workloads_by_namespace(self) -> dict[str, list[MeshWorkload]]:
        """The workloads of each namespace, in store order."""
        out: dict[str, list[MeshWorkload]] = {}
        for w in self.snapshot.workloads:
            out.setdefault(w.namespace, []).append(w)
        return out

    @cached_property
    def workloads_by_label(self) -> dict[tuple[str | None, str, str], list[MeshWorkload]]:
        """The workloads with each label, by namespace and in all (None), in store order."""
        out: dict[tuple[str | None, str, str], list[MeshWorkload]] = {}
        for w in self.snapshot.workloads:
            for k, v in w.labels.items():
                out.setdefault((w.namespace, k, v), []).append(w)
                out.setdefault((None, k, v), []).append(w)
        return out

    @cached_property
    def sidecars(self) -> list[MeshWorkload]:
        return [w for w in self.snapshot.workloads if w.proxy == "sidecar"]

    @cached_property
    def service_names(self) -> set[str]:
        """Every name a Service is reached by: name.ns.svc.suffix, name.ns.svc,
        name.ns and, within its namespace, name."""
        out: set[str] = set()
        for s in self.snapshot.services:
            out |= {s.hostname, f"{s.name}.{s.namespace}.svc", f"{s.name}.{s.namespace}", s.name}
        return out

    def workloads_of(
        self, policy: AuthorizationPolicy | RequestAuthentication
    ) -> list[MeshWorkload]:
        """The workloads ``policy`` applies to, as istiod selects them (a policy in
        the root namespace or the workload's own, attached by ``should_attach``)."""
        hit = self._applies.get(id(policy))
        if hit is None:
            root = self.snapshot.root_namespace
            refs = target_refs(policy.spec.target_ref, policy.spec.target_refs)
            sel = policy.spec.selector
            # targetRefs, when given, attach instead of the selector
            labels = sel.match_labels if not refs and sel is not None else {}
            hit = [
                w
                for w in self.candidates(policy.namespace, labels)
                if should_attach(
                    PolicyMatcher.for_workload(w, root_namespace=root),
                    policy.namespace,
                    policy.spec.selector,
                    refs,
                )
                is not None
            ]
            self._applies[id(policy)] = hit
        return hit

    def candidates(self, namespace: str, labels: Mapping[str, str]) -> list[MeshWorkload]:
        """The workloads a selector of ``labels`` in a policy of ``namespace`` can
        select, in store order: a policy outside the root namespace selects only
        in its own, and only a workload with the selector's first label can have
        them all. A superset: the caller still matches each."""
        where = None if namespace == self.snapshot.root_namespace else namespace
        if labels:
            return self.workloads_by_label.get((where, *next(iter(labels.items()))), [])
        if where is None:
            return self.snapshot.workloads
        return self.workloads_by_namespace.get(where, [])

    def policies_of(self, w: MeshWorkload) -> list[AuthorizationPolicy]:
        return [
            s.policy
            for s in select_policies(self.snapshot, w, "AuthorizationPolicy")
            if isinstance(s.policy, AuthorizationPolicy)
        ]

    def ports_of(self, w: MeshWorkload) -> list[InboundPort]:
        return inbound_ports(self.snapshot, w)

    def default_port(self, w: MeshWorkload) -> int | None:
        """A port to send a witness to: the first Service-declared HTTP one, else
        the first Service-declared one, else the first container port."""
        ports = self.ports_of(w)
        http = [p for p in ports if p.listener != "tcp"]
        if http or ports:
            return (http or ports)[0].port
        return w.ports[0].container_port if w.ports else None


__all__ = ["Context"]
