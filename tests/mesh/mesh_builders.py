"""Small builders for mesh tests: manifests written as plain data, loaded by the real loader."""

from __future__ import annotations

from typing import Any

import msgspec.structs

from meshauthz.mesh import MeshSnapshot, build_snapshot
from meshauthz.mesh.loading import LoadedMesh, load_mesh_documents
from meshauthz.resources.loader import load_documents
from meshauthz.resources.meshconfig import MeshConfig
from meshauthz.resources.objects import Manifests
from meshauthz.resources.yamlload import Document

# Istio's test timestamp (pilot/pkg/model/authentication_test.go baseTimestamp).
BASE_TIME = "2020-02-02T02:02:02Z"


def meta(name: str, ns: str | None, labels: dict[str, str] | None = None, **extra: Any) -> dict:
    m: dict[str, Any] = {"name": name}
    if ns is not None:
        m["namespace"] = ns
    if labels:
        m["labels"] = labels
    created = extra.pop("created", None)
    if created:
        m["creationTimestamp"] = created
    m.update(extra)
    return m


def _policy(kind: str, name: str, ns: str, spec: dict, created: str | None) -> dict:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": kind,
        "metadata": meta(name, ns, created=created),
        "spec": spec,
    }


def _targeting(selector: dict | None, target_ref: dict | None, target_refs: list | None) -> dict:
    spec: dict[str, Any] = {}
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    if target_ref is not None:
        spec["targetRef"] = target_ref
    if target_refs is not None:
        spec["targetRefs"] = target_refs
    return spec


def ap(
    name: str,
    ns: str,
    *,
    action: str | None = None,
    selector: dict | None = None,
    target_ref: dict | None = None,
    target_refs: list | None = None,
    created: str | None = None,
) -> dict:
    spec = _targeting(selector, target_ref, target_refs)
    if action:
        spec["action"] = action
    spec["rules"] = [{"from": [{"source": {"principals": ["sleep"]}}]}]
    return _policy("AuthorizationPolicy", name, ns, spec, created)


def ra(
    name: str,
    ns: str,
    *,
    selector: dict | None = None,
    target_ref: dict | None = None,
    created: str | None = None,
) -> dict:
    return _policy(
        "RequestAuthentication", name, ns, _targeting(selector, target_ref, None), created
    )


def pa(
    name: str,
    ns: str,
    *,
    selector: dict | None = None,
    mode: str | None = None,
    ports: dict[int, str | None] | None = None,
    created: str | None = None,
) -> dict:
    spec: dict[str, Any] = {}
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    if mode is not None:
        spec["mtls"] = {"mode": mode}
    if ports is not None:
        spec["portLevelMtls"] = {str(p): ({"mode": m} if m else {}) for p, m in ports.items()}
    return _policy("PeerAuthentication", name, ns, spec, created)


def deployment(
    name: str,
    ns: str,
    labels: dict[str, str],
    *,
    sa: str | None = None,
    ports: list[dict] | None = None,
) -> dict:
    pod_spec: dict[str, Any] = {"containers": [{"name": "app", "ports": ports or []}]}
    if sa:
        pod_spec["serviceAccountName"] = sa
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, ns),
        "spec": {"template": {"metadata": {"labels": labels}, "spec": pod_spec}},
    }


def pod(name: str, ns: str, labels: dict[str, str], *, ip: str | None = None) -> dict:
    d: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(name, ns, labels),
        "spec": {"containers": [{"name": "app"}]},
    }
    if ip:
        d["status"] = {"podIP": ip}
    return d


def service(
    name: str,
    ns: str,
    selector: dict[str, str] | None,
    ports: list[dict],
    *,
    created: str | None = None,
    cluster_ip: str | None = None,
) -> dict:
    spec: dict[str, Any] = {"ports": ports}
    if selector is not None:
        spec["selector"] = selector
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, ns, created=created),
        "spec": spec,
    }


def namespace(name: str, labels: dict[str, str] | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta(name, None, labels)}


def k8s_gateway(name: str, ns: str, cls: str = "istio", **meta_extra: Any) -> dict:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": meta(name, ns, **meta_extra),
        "spec": {
            "gatewayClassName": cls,
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
        },
    }


def istio_gateway(name: str, ns: str, selector: dict[str, str]) -> dict:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": meta(name, ns),
        "spec": {"selector": selector},
    }


def loaded(
    *objs: dict, root: str = "istio-system", trust_domain: str = "cluster.local"
) -> LoadedMesh:
    """The objects through the one loader (objects Istio would reject raise)."""
    docs = [Document("test.yaml", i, 1, o, {}) for i, o in enumerate(objs)]
    config = msgspec.structs.replace(MeshConfig(), root_namespace=root, trust_domain=trust_domain)
    return load_mesh_documents(docs, mesh_config=config)


def manifests(
    *objs: dict, root: str = "istio-system", trust_domain: str = "cluster.local"
) -> Manifests:
    return loaded(*objs, root=root, trust_domain=trust_domain).manifests


def snapshot(
    *objs: dict, root: str = "istio-system", trust_domain: str = "cluster.local"
) -> MeshSnapshot:
    return loaded(*objs, root=root, trust_domain=trust_domain).snapshot


def unvalidated_snapshot(
    *objs: dict, root: str = "istio-system", trust_domain: str = "cluster.local"
) -> MeshSnapshot:
    """The snapshot of objects that skip Istio's validation. Only for Istio's
    model-level tables (policy selection): istiod's tests feed its model objects
    its webhook would reject (a cross-namespace targetRef, a selector beside a
    targetRef, a CUSTOM policy without a provider), and the selection must
    answer for them as istiod's model does."""
    docs = [Document("test.yaml", i, 1, o, {}) for i, o in enumerate(objs)]
    result = load_documents(docs)
    assert not result.errors, [f.to_text() for f in result.errors]
    m = result.manifests
    m.mesh_config = msgspec.structs.replace(
        MeshConfig(), root_namespace=root, trust_domain=trust_domain
    )
    return build_snapshot(m)


GATEWAY_KIND = {"group": "gateway.networking.k8s.io", "kind": "Gateway"}
GATEWAY_CLASS_KIND = {"group": "gateway.networking.k8s.io", "kind": "GatewayClass"}
SERVICE_KIND = {"group": "", "kind": "Service"}
SERVICE_ENTRY_KIND = {"group": "networking.istio.io", "kind": "ServiceEntry"}
