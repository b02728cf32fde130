"""Typed models of the Kubernetes kinds meshauthz reads (the fields it uses).

Only the fields that decide identities, labels, addresses and ports are
modelled; other fields of these kinds are accepted and ignored, since their
full schemas belong to Kubernetes. Values that are read are not coerced.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from meshauthz.resources.istio import StrMap


def _none_is_empty(value: Any) -> Any:
    if value is None:
        return ()
    # Strict mode takes a tuple only from a tuple; a YAML list is the same thing.
    return tuple(value) if isinstance(value, list) else value


class Loose(BaseModel):
    """Reads the fields it names, strictly typed, and ignores the rest."""

    model_config = ConfigDict(
        extra="ignore", strict=True, frozen=True, populate_by_name=False, defer_build=True
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


class K8s(Loose):
    # pydantic merges this into Loose's config: only the aliases differ
    model_config = ConfigDict(alias_generator=_camel)


class OwnerReference(K8s):
    """``metadata.ownerReferences[]``: the object that made this one (a Pod's
    ReplicaSet, a ReplicaSet's Deployment)."""

    api_version: str = ""
    kind: str = ""
    name: str = ""
    uid: str = ""
    controller: bool = False


class ObjectMeta(K8s):
    name: str = ""
    generate_name: str = ""
    namespace: str = ""
    uid: str = ""
    labels: StrMap = {}
    annotations: StrMap = {}
    owner_references: Annotated[tuple[OwnerReference, ...], BeforeValidator(_none_is_empty)] = ()


class ContainerPort(K8s):
    container_port: int
    name: str = ""
    protocol: str = "TCP"


class Container(K8s):
    name: str = ""
    ports: Annotated[tuple[ContainerPort, ...], BeforeValidator(_none_is_empty)] = ()


class PodSpec(K8s):
    service_account_name: str = ""
    service_account: str = ""  # deprecated spelling, still honoured by Kubernetes
    containers: Annotated[tuple[Container, ...], BeforeValidator(_none_is_empty)] = ()
    host_network: bool = False


class PodTemplate(K8s):
    metadata: ObjectMeta = ObjectMeta()
    spec: PodSpec = PodSpec()


class PodIP(K8s):
    ip: str


class PodStatus(K8s):
    pod_ip: str = Field(default="", alias="podIP")
    pod_ips: Annotated[tuple[PodIP, ...], BeforeValidator(_none_is_empty)] = Field(
        default=(), alias="podIPs"
    )


class ControllerSpec(K8s):
    """Deployment, StatefulSet, DaemonSet, ReplicaSet and Job share this shape."""

    template: PodTemplate = PodTemplate()


class JobTemplate(K8s):
    spec: ControllerSpec = ControllerSpec()


class CronJobSpec(K8s):
    job_template: JobTemplate = JobTemplate()


class ServicePort(K8s):
    port: int
    name: str = ""
    target_port: int | str | None = None
    protocol: str = "TCP"
    app_protocol: str = ""


class ServiceSpec(K8s):
    selector: StrMap = {}
    ports: Annotated[tuple[ServicePort, ...], BeforeValidator(_none_is_empty)] = ()
    cluster_ip: str = Field(default="", alias="clusterIP")
    type: str = "ClusterIP"


class IstioGatewaySpec(K8s):
    selector: StrMap = {}


class ServiceEntryPort(K8s):
    number: int
    name: str = ""
    protocol: str = ""
    target_port: int | None = None


class ServiceEntrySelector(K8s):
    labels: StrMap = {}


class ServiceEntrySpec(K8s):
    """networking.istio.io ServiceEntry (v1, v1beta1, v1alpha3): the fields that
    decide which workloads it names and which waypoint its hosts go through."""

    hosts: Annotated[tuple[str, ...], BeforeValidator(_none_is_empty)] = ()
    ports: Annotated[tuple[ServiceEntryPort, ...], BeforeValidator(_none_is_empty)] = ()
    resolution: str = "NONE"
    workload_selector: ServiceEntrySelector | None = None


class GatewayListener(K8s):
    name: str = ""
    port: int = 0
    protocol: str = ""


class K8sGatewaySpec(K8s):
    gateway_class_name: str = ""
    listeners: Annotated[tuple[GatewayListener, ...], BeforeValidator(_none_is_empty)] = ()
