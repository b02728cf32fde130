"""Loaded objects: each keeps its typed content and where it was written."""

from __future__ import annotations

from typing import Any, Literal

from msgspec import Struct, field

from meshauthz.errors import Location
from meshauthz.records import repr_of
from meshauthz.resources.istio import (
    AuthorizationPolicySpec,
    PeerAuthenticationSpec,
    RequestAuthenticationSpec,
)
from meshauthz.resources.k8s import ContainerPort, OwnerReference, ServiceEntrySpec, ServiceSpec
from meshauthz.resources.meshconfig import MeshConfig
from meshauthz.resources.yamlload import Document, Path

DRY_RUN_ANNOTATION = "istio.io/dry-run"


class Resource(Struct, eq=False):
    kind: str
    api_version: str
    name: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]
    doc: Document
    base: Path  # this object's path inside its document
    # metadata.creationTimestamp as written ("" if not a string): read after the
    # document's data is released (istiod orders policies by it)
    created: str = ""

    @property
    def file(self) -> str:
        return self.doc.file

    @property
    def line(self) -> int:
        return self.location().line or self.doc.line

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def location(self, *path: str | int) -> Location:
        """Where ``path`` (relative to the object, e.g. "spec", "rules", 0) is written."""
        return self.doc.location(self.base + tuple(path))

    def written(self) -> dict[str, Any]:
        """The object as written (plain data), for what its model does not hold:
        its document is read again when released (``Document.release``), so
        this is for a reader once per object, not per request."""
        data: Any = self.doc.data
        for part in self.base:
            data = data[part]
        return data if isinstance(data, dict) else {}

    def __repr__(self) -> str:
        # without the document it was read from (its whole text and positions)
        return repr_of(
            self, (n for n in self.__struct_fields__ if n not in ("doc", "base", "created"))
        )


class AuthorizationPolicy(Resource, eq=False):
    spec: AuthorizationPolicySpec = field(default_factory=AuthorizationPolicySpec)

    @property
    def dry_run(self) -> bool:
        # Istio parses the annotation as a Go boolean (strconv.ParseBool).
        return self.annotations.get(DRY_RUN_ANNOTATION, "") in (
            "1",
            "t",
            "T",
            "TRUE",
            "true",
            "True",
        )


class RequestAuthentication(Resource, eq=False):
    spec: RequestAuthenticationSpec = field(default_factory=RequestAuthenticationSpec)


class PeerAuthentication(Resource, eq=False):
    spec: PeerAuthenticationSpec = field(default_factory=PeerAuthenticationSpec)


class Namespace(Resource, eq=False):
    pass


class ServiceAccount(Resource, eq=False):
    pass


# The sidecar's container name in an injected pod.
PROXY_CONTAINER = "istio-proxy"


class Workload(Resource, eq=False):
    """A Pod, or a controller that makes pods (their template is what counts)."""

    pod_labels: dict[str, str] = field(default_factory=dict)
    service_account: str = "default"
    ports: tuple[ContainerPort, ...] = ()
    ip: str | None = None
    template_path: Path = ()  # the pod template's path relative to the object
    pod_annotations: dict[str, str] = field(default_factory=dict)  # the pod's (template's)
    host_network: bool = False
    uid: str = ""
    owners: tuple[OwnerReference, ...] = ()  # metadata.ownerReferences
    # a container or init container of its pods is named istio-proxy (read
    # when loaded: the document's data is not kept)
    proxy_container: bool = False


class Service(Resource, eq=False):
    spec: ServiceSpec = field(default_factory=ServiceSpec)


class ServiceEntry(Resource, eq=False):
    spec: ServiceEntrySpec = field(default_factory=ServiceEntrySpec)


class Gateway(Resource, eq=False):
    flavor: Literal["istio", "gateway-api"] = "istio"
    selector: dict[str, str] = field(default_factory=dict)  # Istio Gateway only
    gateway_class: str = ""  # Gateway API only


class Skipped(Struct, eq=False):
    kind: str
    api_version: str
    name: str
    namespace: str
    location: Location
    reason: str = ""  # why: not an object, a kind not read, a Helm template, ...

    def describe(self) -> str:
        if not self.kind:
            return f"skipped {self.reason}"
        who = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"skipped {self.kind} {who} ({self.api_version}): {self.reason}"


class Manifests(Struct):
    """Everything loaded from a set of paths."""

    authorization_policies: list[AuthorizationPolicy] = field(default_factory=list)
    request_authentications: list[RequestAuthentication] = field(default_factory=list)
    peer_authentications: list[PeerAuthentication] = field(default_factory=list)
    namespaces: list[Namespace] = field(default_factory=list)
    service_accounts: list[ServiceAccount] = field(default_factory=list)
    workloads: list[Workload] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    gateways: list[Gateway] = field(default_factory=list)
    service_entries: list[ServiceEntry] = field(default_factory=list)
    mesh_config: MeshConfig = field(default_factory=MeshConfig)
    skipped: list[Skipped] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def all(self) -> list[Resource]:
        return [
            *self.namespaces,
            *self.service_accounts,
            *self.workloads,
            *self.services,
            *self.gateways,
            *self.service_entries,
            *self.peer_authentications,
            *self.request_authentications,
            *self.authorization_policies,
        ]


# The lists of ``Manifests`` that documents add objects to: every field but the
# mesh config, the skipped and the files, so that a kind added to ``Manifests``
# is counted wherever what a document added is (the loader, ``resources.reuse``).
OBJECT_LISTS = tuple(
    n for n in Manifests.__struct_fields__ if n not in ("mesh_config", "skipped", "files")
)
