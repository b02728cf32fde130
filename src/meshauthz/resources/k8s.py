"""Typed models of the Kubernetes kinds meshauthz reads (the fields it uses).

Only the fields that decide identities, labels, addresses and ports are
modelled; other fields of these kinds are accepted and ignored, since their
full schemas belong to Kubernetes. Values that are read are not coerced.
"""

from __future__ import annotations

import msgspec

from meshauthz.resources.istio import StrMap, camel, no_entries


class K8s(msgspec.Struct, frozen=True, rename=camel, omit_defaults=True, gc=False):
    """Reads the fields it names, strictly typed, and ignores the rest (see
    ``istio.Strict`` for why it is frozen and untracked)."""


class OwnerReference(K8s, frozen=True):
    """``metadata.ownerReferences[]``: the object that made this one (a Pod's
    ReplicaSet, a ReplicaSet's Deployment)."""

    api_version: str = ""
    kind: str = ""
    name: str = ""
    uid: str = ""
    controller: bool = False


class ObjectMeta(K8s, frozen=True):
    name: str = ""
    generate_name: str = ""
    namespace: str = ""
    uid: str = ""
    labels: StrMap = msgspec.field(default_factory=no_entries)
    annotations: StrMap = msgspec.field(default_factory=no_entries)
    owner_references: tuple[OwnerReference, ...] = ()


class ContainerPort(K8s, frozen=True):
    container_port: int
    name: str = ""
    protocol: str = "TCP"


class Container(K8s, frozen=True):
    name: str = ""
    ports: tuple[ContainerPort, ...] = ()


class PodSpec(K8s, frozen=True):
    service_account_name: str = ""
    service_account: str = ""  # deprecated spelling, still honoured by Kubernetes
    containers: tuple[Container, ...] = ()
    host_network: bool = False


class PodTemplate(K8s, frozen=True):
    metadata: ObjectMeta = ObjectMeta()
    spec: PodSpec = PodSpec()


class PodIP(K8s, frozen=True):
    ip: str


class PodStatus(K8s, frozen=True):
    pod_ip: str = msgspec.field(default="", name="podIP")
    pod_ips: tuple[PodIP, ...] = msgspec.field(default=(), name="podIPs")


class ControllerSpec(K8s, frozen=True):
    """Deployment, StatefulSet, DaemonSet, ReplicaSet and Job share this shape."""

    template: PodTemplate = PodTemplate()


class JobTemplate(K8s, frozen=True):
    spec: ControllerSpec = ControllerSpec()


class CronJobSpec(K8s, frozen=True):
    job_template: JobTemplate = JobTemplate()


class ServicePort(K8s, frozen=True):
    port: int
    name: str = ""
    target_port: int | str | None = None
    protocol: str = "TCP"
    app_protocol: str = ""


class ServiceSpec(K8s, frozen=True):
    selector: StrMap = msgspec.field(default_factory=no_entries)
    ports: tuple[ServicePort, ...] = ()
    cluster_ip: str = msgspec.field(default="", name="clusterIP")
    type: str = "ClusterIP"


class IstioGatewaySpec(K8s, frozen=True):
    selector: StrMap = msgspec.field(default_factory=no_entries)


class ServiceEntryPort(K8s, frozen=True):
    number: int
    name: str = ""
    protocol: str = ""
    target_port: int | None = None


class ServiceEntrySelector(K8s, frozen=True):
    labels: StrMap = msgspec.field(default_factory=no_entries)


class ServiceEntrySpec(K8s, frozen=True):
    """networking.istio.io ServiceEntry (v1, v1beta1, v1alpha3): the fields that
    decide which workloads it names and which waypoint its hosts go through."""

    hosts: tuple[str, ...] = ()
    ports: tuple[ServiceEntryPort, ...] = ()
    resolution: str = "NONE"
    workload_selector: ServiceEntrySelector | None = None


class GatewayListener(K8s, frozen=True):
    name: str = ""
    port: int = 0
    protocol: str = ""


class K8sGatewaySpec(K8s, frozen=True):
    gateway_class_name: str = ""
    listeners: tuple[GatewayListener, ...] = ()
