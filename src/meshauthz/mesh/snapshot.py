"""The mesh as istiod sees it: namespaces, workloads, services, gateways, identities.

A ``MeshSnapshot`` is built once from loaded ``Manifests`` and answers lookups.
Everything in it is derived from the manifests; where a real cluster would add
something the manifests cannot say (a pod IP, the Deployment istiod creates for
a Gateway API Gateway), the snapshot makes a deterministic stand-in and marks
it ``synthetic``.

Synthetic addresses (documented contract):

* A workload without an IP in its manifest (controllers, pods without status)
  gets one from ``SYNTHETIC_POD_CIDR`` (10.244.0.0/16, the conventional pod
  range of kind/flannel clusters). The host part is the SHA-256 of
  ``"<namespace>/<kind>/<name>"`` reduced to 1..65534, so it is stable per
  workload and never the network or broadcast address (and never loopback).
  On a collision (with a given IP or an earlier synthetic one, in sorted key
  order) the next free host is taken.
* A Service without ``spec.clusterIP`` gets one the same way from
  ``SYNTHETIC_SERVICE_CIDR`` (10.96.0.0/16, Kubernetes' default service range);
  headless Services (``clusterIP: None``) get none.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import msgspec.structs
from msgspec import Struct

from meshauthz.digests import sha256
from meshauthz.errors import MeshauthzError
from meshauthz.mesh.injection import (
    Injection,
    Why,
    dataplane_labelled,
    injection,
    opt_in_by_label,
)
from meshauthz.mesh.labels import match, subset_of
from meshauthz.resources.k8s import ContainerPort, ServicePort, ServiceSpec
from meshauthz.resources.meshconfig import MeshConfig
from meshauthz.resources.objects import (
    AuthorizationPolicy,
    Gateway,
    Manifests,
    Namespace,
    PeerAuthentication,
    RequestAuthentication,
    Resource,
    Service,
    ServiceEntry,
    Workload,
)

DEFAULT_DOMAIN_SUFFIX = "cluster.local"
SYNTHETIC_POD_CIDR = ipaddress.IPv4Network("10.244.0.0/16")
SYNTHETIC_SERVICE_CIDR = ipaddress.IPv4Network("10.96.0.0/16")

# Labels and names from Istio's Gateway API deployment templates
# (manifests/charts/istio-control/istio-discovery/files/kube-gateway.yaml and
# waypoint.yaml; label.IoK8sNetworkingGatewayGatewayName in istio/api).
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
GATEWAY_CLASS_LABEL = "gateway.networking.k8s.io/gateway-class-name"
GATEWAY_MANAGED_LABEL = "gateway.istio.io/managed"
# label.SecurityTlsMode: the endpoint metadata a client's auto mTLS selects on
TLS_MODE_LABEL = "security.istio.io/tlsMode"
MANAGED_GATEWAY_CONTROLLER = (
    "istio.io-gateway-controller"  # constants.ManagedGatewayControllerLabel
)
MANAGED_MESH_CONTROLLER = "istio.io-mesh-controller"  # constants.ManagedGatewayMeshControllerLabel
NAME_OVERRIDE_ANNOTATION = "gateway.istio.io/name-override"
SERVICE_ACCOUNT_ANNOTATION = "gateway.istio.io/service-account"
WAYPOINT_GATEWAY_CLASS = "istio-waypoint"  # constants.WaypointGatewayClassName
EAST_WEST_GATEWAY_CLASS = "istio-east-west"  # constants.EastWestGatewayClassName
# Built-in classes whose Deployment istiod creates, and whether the name gets
# the "-<class>" suffix (gatewaycommon.GetDefaultName, ClassInfo.DisableNameSuffix).
_MANAGED_CLASSES = {"istio": True, WAYPOINT_GATEWAY_CLASS: False, EAST_WEST_GATEWAY_CLASS: False}

ProxyType = Literal["sidecar", "gateway", "waypoint"]

_ZERO_TIME = datetime.datetime.min.replace(tzinfo=datetime.UTC)


class LookupFailed(MeshauthzError):
    """A name that does not resolve (code "not-found") or resolves to several ("ambiguous")."""


# --------------------------------------------------------------------------- helpers


def creation_time(obj: Resource) -> datetime.datetime:
    """``metadata.creationTimestamp`` (RFC 3339); unset or unreadable = Go's zero time,
    which sorts before every set time, as in istiod."""
    raw = obj.created
    if not raw:
        return _ZERO_TIME
    try:
        t = datetime.datetime.fromisoformat(raw)
    except ValueError:
        return _ZERO_TIME
    return t if t.tzinfo else t.replace(tzinfo=datetime.UTC)


def config_sort_key(obj: Resource) -> tuple[datetime.datetime, str, str]:
    """istiod's ``configCompareByCreationTime`` (pilot/pkg/model/config.go):
    creation time, then name, then namespace."""
    return (creation_time(obj), obj.name, obj.namespace)


def sanitize_trust_domain(td: str) -> str:
    """pkg/spiffe ``sanitizeTrustDomain``: "@" becomes "."."""
    return td.replace("@", ".")


# --------------------------------------------------------------------------- records


class Identity(Struct, frozen=True):
    """A workload's mTLS identity (pkg/spiffe ``genSpiffeURI``)."""

    trust_domain: str
    namespace: str
    service_account: str

    @property
    def principal(self) -> str:
        """What AuthorizationPolicy ``principals`` match: ``<td>/ns/<ns>/sa/<sa>``."""
        return (
            f"{sanitize_trust_domain(self.trust_domain)}/ns/{self.namespace}"
            f"/sa/{self.service_account}"
        )

    @property
    def spiffe_uri(self) -> str:
        """The URI SAN of the workload certificate: ``spiffe://<principal>``."""
        return f"spiffe://{self.principal}"


class MeshNamespace(Struct, frozen=True):
    name: str
    labels: Mapping[str, str]
    resource: Namespace | None = None  # None: implied by an object in it

    @property
    def declared(self) -> bool:
        return self.resource is not None


class MeshWorkload(Struct, frozen=True, eq=False):
    """A workload (Pod or pod controller), or the stand-in for a gateway's pods."""

    kind: str
    name: str
    namespace: str
    labels: Mapping[str, str]  # the pod labels, which policies select on
    service_account: str
    ports: tuple[ContainerPort, ...]
    address: str
    address_synthetic: bool
    identity: Identity
    proxy: ProxyType = "sidecar"
    gateway: Gateway | None = None  # the Gateway these pods implement, if any
    resource: Workload | None = None  # None for a synthetic gateway deployment
    # Whether the injector gives the pods a sidecar (``proxy == "sidecar"`` only;
    # None for gateways and waypoints, which are their own proxy).
    injection: Injection | None = None
    # The objects that are this workload's pods or make them (ReplicaSets and Pods
    # of a Deployment in ``kubectl get all`` output), by ownerReferences.
    members: tuple[Workload, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def has_proxy(self) -> bool:
        """An Envoy stands in front of the pods: a gateway, a waypoint, or an injected
        sidecar. Without one, the pods send plaintext and nothing checks what they receive."""
        return self.injection is None or self.injection.injected

    @property
    def synthetic(self) -> bool:
        return self.resource is None

    @property
    def is_waypoint(self) -> bool:
        return self.proxy == "waypoint"

    @property
    def auto_mtls(self) -> bool:
        """Whether a client's proxy sends these pods Istio mTLS without a
        DestinationRule saying so. Auto mTLS picks it only for endpoints whose
        security.istio.io/tlsMode label is istio (cluster_tls.go
        ``applyUpstreamTLSSettings``, the endpoint's metadata from
        ``GetTLSModeFromEndpointLabels``), and other endpoints get plaintext.
        Sidecar injection sets the label (injection-template.yaml). The gateway
        template and the gateway Deployments istiod writes do not, so a
        gateway's clients send plaintext unless its pods carry the label."""
        return self.proxy != "gateway" or self.labels.get(TLS_MODE_LABEL) == "istio"

    @property
    def gateway_name(self) -> str | None:
        """The Gateway API Gateway these pods belong to (from the gateway-name label)."""
        return self.labels.get(GATEWAY_NAME_LABEL)

    def __repr__(self) -> str:
        return f"MeshWorkload({self.kind} {self.key}, proxy={self.proxy})"


class MeshService(Struct, frozen=True, eq=False):
    name: str
    namespace: str
    hostname: str
    spec: ServiceSpec
    cluster_ip: str | None
    cluster_ip_synthetic: bool
    resource: Service

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def selector(self) -> Mapping[str, str]:
        return self.spec.selector

    @property
    def ports(self) -> tuple[ServicePort, ...]:
        return self.spec.ports

    def port(self, number: int) -> ServicePort | None:
        for p in self.spec.ports:
            if p.port == number:
                return p
        return None

    def __repr__(self) -> str:
        return f"MeshService({self.key})"


# --------------------------------------------------------------------------- snapshot


class MeshSnapshot:
    """The mesh as istiod sees it, with its lookups. A plain class, not a
    dataclass: a dataclass's methods are compiled when its module is imported,
    and every command imports this one (start-up)."""

    def __init__(
        self,
        mesh_config: MeshConfig,
        namespaces: dict[str, MeshNamespace],
        workloads: list[MeshWorkload],
        services: list[MeshService],
        gateways: list[Gateway],
        authorization_policies: list[AuthorizationPolicy],
        request_authentications: list[RequestAuthentication],
        peer_authentications: list[PeerAuthentication],
        domain_suffix: str = DEFAULT_DOMAIN_SUFFIX,
        service_entries: list[ServiceEntry] | None = None,
    ) -> None:
        self.mesh_config = mesh_config
        self.namespaces = namespaces
        self.workloads = workloads
        self.services = services
        self.gateways = gateways
        # Policies, each list in istiod's store order (creation time, name, namespace).
        self.authorization_policies = authorization_policies
        self.request_authentications = request_authentications
        self.peer_authentications = peer_authentications
        self.domain_suffix = domain_suffix
        self.service_entries = [] if service_entries is None else service_entries
        self._by_key: dict[str, list[MeshWorkload]] = {}
        self._svc_by_key: dict[str, MeshService] = {}
        self._svc_by_host: dict[str, MeshService] = {}
        # By namespace, each in its list's order: selecting for one workload reads its
        # namespaces' entries instead of scanning the mesh (which, for every workload of
        # a large mesh, would be quadratic).
        self._svc_by_ns: dict[str, list[MeshService]] = {}
        self._authz_by_ns: dict[str, list[AuthorizationPolicy]] = {}
        self._reqauthn_by_ns: dict[str, list[RequestAuthentication]] = {}
        for w in self.workloads:
            self._by_key.setdefault(w.key, []).append(w)
        # A member's own name (a Pod's, a ReplicaSet's) names its workload too.
        for w in self.workloads:
            for m in w.members:
                self._by_key.setdefault(f"{m.namespace}/{m.name}", [w])
        for s in self.services:
            self._svc_by_key[s.key] = s
            self._svc_by_host[s.hostname] = s
            self._svc_by_ns.setdefault(s.namespace, []).append(s)
        for ap in self.authorization_policies:
            self._authz_by_ns.setdefault(ap.namespace, []).append(ap)
        for ra in self.request_authentications:
            self._reqauthn_by_ns.setdefault(ra.namespace, []).append(ra)

    # -- mesh settings

    @property
    def root_namespace(self) -> str:
        return self.mesh_config.root_namespace

    @property
    def trust_domain(self) -> str:
        return self.mesh_config.trust_domain

    # -- lookups

    def workload(self, ref: str | MeshWorkload) -> MeshWorkload:
        """The workload ``"ns/name"`` (a Pod or controller name). Raises LookupFailed."""
        if isinstance(ref, MeshWorkload):
            return ref
        ns, name = _split_key(ref)
        found = self._by_key.get(f"{ns}/{name}", [])
        if not found:
            raise LookupFailed(
                f"no workload {ns}/{name}{self.elsewhere(ns, name)}", code="not-found"
            )
        if len(found) > 1:
            kinds = ", ".join(sorted(w.kind for w in found))
            raise LookupFailed(f"workload name {ns}/{name} is ambiguous: {kinds}", code="ambiguous")
        return found[0]

    def elsewhere(self, ns: str, name: str) -> str:
        """For a name not found in ``ns``: where workloads, Services or Gateways of
        that name are (" (there is one in namespace bar: bar/name)"), or ""."""
        pairs = [(w.namespace, w.name) for w in self.workloads]
        pairs += [(x.namespace, x.name) for x in self.services]
        pairs += [(g.namespace, g.name) for g in self.gateways]
        found = sorted({n for n, m in pairs if m == name and n != ns})
        if not found:
            return ""
        where = ", ".join(f"{n}/{name}" for n in found)
        many = "namespaces" if len(found) > 1 else "namespace"
        return f" (there is one in {many} {', '.join(found)}: {where})"

    def find_workload(self, ref: str) -> MeshWorkload | None:
        try:
            return self.workload(ref)
        except LookupFailed:
            return None

    def service(self, ref: str | MeshService) -> MeshService:
        """The Service ``"ns/name"``. Raises LookupFailed."""
        if isinstance(ref, MeshService):
            return ref
        ns, name = _split_key(ref)
        svc = self._svc_by_key.get(f"{ns}/{name}")
        if svc is None:
            raise LookupFailed(f"no service {ns}/{name}", code="not-found")
        return svc

    def find_service_entry(self, key: str) -> ServiceEntry | None:
        """The ServiceEntry ``namespace/name``."""
        return next((se for se in self.service_entries if se.key == key), None)

    def find_service(self, ref: str) -> MeshService | None:
        try:
            return self.service(ref)
        except LookupFailed:
            return None

    def service_by_hostname(self, host: str) -> MeshService | None:
        """The Service whose FQDN is ``<svc>.<ns>.svc.<domain suffix>`` (case and a
        trailing dot do not matter)."""
        return self._svc_by_host.get(host.lower().rstrip("."))

    def service_hostname(self, name: str, namespace: str) -> str:
        """kube ``ServiceHostname``: ``<name>.<namespace>.svc.<domain suffix>``."""
        return f"{name}.{namespace}.svc.{self.domain_suffix}"

    def services_for(self, workload: str | MeshWorkload) -> list[MeshService]:
        """Services selecting the workload's pods: same namespace, non-empty selector
        that is a subset of the pod labels (kube controller ``getPodServices``,
        ``labels.Instance.Match``). In store order (creation time, then hostname),
        which is the order istiod resolves inbound port conflicts in
        (``Proxy.SetServiceTargets``)."""
        w = self.workload(workload)
        found = [s for s in self._svc_by_ns.get(w.namespace, ()) if match(s.selector, w.labels)]
        found.sort(key=lambda s: (creation_time(s.resource), s.hostname))
        return found

    def workloads_for(self, service: str | MeshService) -> list[MeshWorkload]:
        """Workloads whose pods the Service selects."""
        s = self.service(service)
        return [
            w for w in self.workloads if w.namespace == s.namespace and match(s.selector, w.labels)
        ]

    @property
    def authorization_policies_by_namespace(self) -> Mapping[str, Sequence[AuthorizationPolicy]]:
        """The AuthorizationPolicies of each namespace, in store order."""
        return self._authz_by_ns

    @property
    def request_authentications_by_namespace(
        self,
    ) -> Mapping[str, Sequence[RequestAuthentication]]:
        """The RequestAuthentications of each namespace, in store order."""
        return self._reqauthn_by_ns

    def identity(self, workload: str | MeshWorkload) -> Identity:
        return self.workload(workload).identity

    def namespace(self, name: str) -> MeshNamespace | None:
        return self.namespaces.get(name)

    def gateway_workloads(self, gateway: Gateway) -> list[MeshWorkload]:
        """The pods implementing a Gateway (Istio: selected by ``spec.selector``;
        Gateway API: labelled with the gateway-name label in its namespace)."""
        return [w for w in self.workloads if w.gateway is gateway]


def _split_key(ref: str) -> tuple[str, str]:
    if ref.count("/") != 1:
        raise LookupFailed(f"expected namespace/name, got {ref!r}", code="not-found")
    ns, name = ref.split("/")
    if not ns or not name:
        raise LookupFailed(f"expected namespace/name, got {ref!r}", code="not-found")
    return ns, name


# --------------------------------------------------------------------------- building


def build_snapshot(
    manifests: Manifests, *, domain_suffix: str = DEFAULT_DOMAIN_SUFFIX
) -> MeshSnapshot:
    """Build the snapshot from loaded manifests."""
    mc = manifests.mesh_config
    td = mc.trust_domain

    # Namespaces: declared ones, plus any an object lives in.
    namespaces: dict[str, MeshNamespace] = {
        n.name: MeshNamespace(n.name, n.labels, n) for n in manifests.namespaces
    }
    implied: Iterable[str] = (
        r.namespace for r in manifests.all() if r.namespace and r.kind != "Namespace"
    )
    for ns in implied:
        namespaces.setdefault(ns, MeshNamespace(ns, {}))
    by_default = not opt_in_by_label(n.labels for n in namespaces.values())

    # Workloads from the manifests: an object and those it owns are one workload.
    gw_api = [g for g in manifests.gateways if g.flavor == "gateway-api"]
    istio_gws = [g for g in manifests.gateways if g.flavor == "istio"]
    drafts: list[dict[str, Any]] = []
    for w, members in _group_by_owner(manifests.workloads):
        labels = w.pod_labels  # the manifest's: nothing changes it, one copy is enough
        proxy: ProxyType = "sidecar"
        gateway: Gateway | None = None
        gw_name = labels.get(GATEWAY_NAME_LABEL)
        if gw_name is not None:
            gateway = next(
                (g for g in gw_api if g.name == gw_name and g.namespace == w.namespace), None
            )
            waypoint = labels.get(GATEWAY_MANAGED_LABEL) == MANAGED_MESH_CONTROLLER or (
                gateway is not None and gateway.gateway_class == WAYPOINT_GATEWAY_CLASS
            )
            proxy = "waypoint" if waypoint else "gateway"
        else:
            for g in istio_gws:
                # An Istio Gateway selects gateway pods in any namespace (istiod's
                # default, PILOT_SCOPE_GATEWAY_TO_NAMESPACE=false).
                if g.selector and subset_of(g.selector, labels):
                    proxy, gateway = "gateway", g
                    break
        inj = None
        if proxy == "sidecar":
            home = namespaces[w.namespace]
            inj = injection(
                w.namespace,
                home.labels,
                labels,
                w.pod_annotations,
                host_network=w.host_network,
                # a namespace the input does not declare has labels no one can see
                # a namespace the input does not declare has labels no one can see;
                # an explicit dataplane-mode label says how the pod is meshed
                by_default=(by_default or not home.declared)
                and not dataplane_labelled(home.labels, labels),
            )
            if inj.why is Why.ASSUMED and not by_default:
                inj = msgspec.structs.replace(inj, why=Why.UNDECLARED_NAMESPACE)
            elif inj.why is Why.NO_LABEL and by_default and dataplane_labelled(home.labels, labels):
                inj = msgspec.structs.replace(inj, why=Why.DATAPLANE_LABEL)
        # A controller has no address of its own: its first pod's (by name), if given.
        ip = w.ip or next((m.ip for m in sorted(members, key=lambda m: m.name) if m.ip), None)
        drafts.append(
            dict(
                kind=w.kind,
                name=w.name,
                namespace=w.namespace,
                labels=labels,
                service_account=w.service_account,
                ports=w.ports,
                ip=ip,
                proxy=proxy,
                gateway=gateway,
                resource=w,
                injection=inj,
                members=members,
            )
        )

    # Stand-ins for the Deployments istiod creates for managed Gateway API gateways.
    for g in gw_api:
        if g.gateway_class not in _MANAGED_CLASSES:
            continue
        if any(d["gateway"] is g for d in drafts):
            continue
        drafts.append(_gateway_deployment(g))

    # Addresses.
    used: set[ipaddress.IPv4Address] = set()
    for d in drafts:
        if d["ip"]:
            try:
                addr = ipaddress.ip_address(d["ip"])
            except ValueError:
                continue
            if isinstance(addr, ipaddress.IPv4Address):
                used.add(addr)
    workloads: list[MeshWorkload] = []
    order = sorted(range(len(drafts)), key=lambda i: _addr_seed(drafts[i]))
    addresses: dict[int, tuple[str, bool]] = {}
    for i in order:
        d = drafts[i]
        if d["ip"]:
            addresses[i] = (d["ip"], False)
        else:
            addresses[i] = (str(_synthetic_address(SYNTHETIC_POD_CIDR, _addr_seed(d), used)), True)
    for i, d in enumerate(drafts):
        ip, synthetic = addresses[i]
        workloads.append(
            MeshWorkload(
                kind=d["kind"],
                name=d["name"],
                namespace=d["namespace"],
                labels=d["labels"],
                service_account=d["service_account"],
                ports=d["ports"],
                address=ip,
                address_synthetic=synthetic,
                identity=Identity(td, d["namespace"], d["service_account"]),
                proxy=d["proxy"],
                gateway=d["gateway"],
                resource=d["resource"],
                injection=d.get("injection"),
                members=d.get("members", ()),
            )
        )

    # Services.
    svc_used: set[ipaddress.IPv4Address] = set()
    for s in manifests.services:
        try:
            a = ipaddress.ip_address(s.spec.cluster_ip)
        except ValueError:
            continue
        if isinstance(a, ipaddress.IPv4Address):
            svc_used.add(a)
    services: list[MeshService] = []
    for s in sorted(manifests.services, key=lambda s: (s.namespace, s.name)):
        cip: str | None = s.spec.cluster_ip or None
        synthetic = False
        if cip is None:
            cip = str(
                _synthetic_address(
                    SYNTHETIC_SERVICE_CIDR, f"{s.namespace}/Service/{s.name}", svc_used
                )
            )
            synthetic = True
        elif cip == "None":
            cip = None
        services.append(
            MeshService(
                name=s.name,
                namespace=s.namespace,
                hostname=f"{s.name}.{s.namespace}.svc.{domain_suffix}".lower(),
                spec=s.spec,
                cluster_ip=cip,
                cluster_ip_synthetic=synthetic,
                resource=s,
            )
        )

    for mw in workloads:  # a synthetic gateway deployment's
        namespaces.setdefault(mw.namespace, MeshNamespace(mw.namespace, {}))

    return MeshSnapshot(
        mesh_config=mc,
        namespaces=dict(sorted(namespaces.items())),
        workloads=workloads,
        services=services,
        gateways=list(manifests.gateways),
        authorization_policies=sorted(manifests.authorization_policies, key=config_sort_key),
        request_authentications=sorted(manifests.request_authentications, key=config_sort_key),
        peer_authentications=sorted(manifests.peer_authentications, key=config_sort_key),
        domain_suffix=domain_suffix,
        service_entries=list(manifests.service_entries),
    )


# The label the Deployment controller puts on a ReplicaSet and its Pods
# (apps/v1 DefaultDeploymentUniqueLabelKey); their names end in "-<hash>".
POD_TEMPLATE_HASH = "pod-template-hash"


def _group_by_owner(objs: Sequence[Workload]) -> list[tuple[Workload, tuple[Workload, ...]]]:
    """Each workload that no other one in the input owns, with the objects it owns
    (directly or through others): a Deployment with its ReplicaSets and Pods, as
    ``kubectl get all -o yaml`` lists them. An owner is found by the controller
    entry of ``metadata.ownerReferences`` (by uid, else by kind and name, in the same
    namespace); an object without one, but with the ``pod-template-hash`` label and a
    name ending in its value, belongs to the ReplicaSet or Deployment that name
    implies, if the input has it."""
    by_uid = {o.uid: o for o in objs if o.uid}
    by_name = {(o.namespace, o.kind, o.name): o for o in objs}

    def owner(o: Workload) -> Workload | None:
        for ref in o.owners:
            if not ref.controller:
                continue
            found = by_uid.get(ref.uid) if ref.uid else None
            if found is None:
                found = by_name.get((o.namespace, ref.kind, ref.name))
            if found is not None and found.namespace == o.namespace:
                return found
            return None  # its controller is not in the input
        h = o.labels.get(POD_TEMPLATE_HASH)
        if not h or o.owners:
            return None
        if o.kind == "Pod":
            rs, sep, _ = o.name.rpartition("-")
            if sep and rs.endswith(f"-{h}"):
                return by_name.get((o.namespace, "ReplicaSet", rs)) or by_name.get(
                    (o.namespace, "Deployment", rs.removesuffix(f"-{h}"))
                )
        elif o.kind == "ReplicaSet" and o.name.endswith(f"-{h}"):
            return by_name.get((o.namespace, "Deployment", o.name.removesuffix(f"-{h}")))
        return None

    def root(o: Workload) -> Workload:
        seen = {id(o)}
        while (up := owner(o)) is not None and id(up) not in seen:
            seen.add(id(up))
            o = up
        return o

    groups: dict[int, list[Workload]] = {}
    for o in objs:
        groups.setdefault(id(root(o)), []).append(o)
    return [(o, tuple(m for m in groups[id(o)] if m is not o)) for o in objs if id(o) in groups]


def _gateway_deployment(g: Gateway) -> dict[str, Any]:
    """What istiod's deployment controller would create for a managed Gateway:
    name and service account ``<name>-<class>`` (no suffix for waypoint and
    east-west classes) unless overridden by annotation, pod labels from the
    template (defaults, the Gateway's own labels, then the gateway-name, class and
    managed labels), as in pilot/pkg/config/kube/gatewaycommon/testdata/deployment/
    simple.yaml, manual-sa.yaml and waypoint.yaml."""
    suffix = _MANAGED_CLASSES[g.gateway_class]
    default = f"{g.name}-{g.gateway_class}" if suffix else g.name
    name = g.annotations.get(NAME_OVERRIDE_ANNOTATION) or default
    sa = g.annotations.get(SERVICE_ACCOUNT_ANNOTATION) or default
    waypoint = g.gateway_class == WAYPOINT_GATEWAY_CLASS
    labels = {
        "sidecar.istio.io/inject": "false",
        "service.istio.io/canonical-name": name,
        "service.istio.io/canonical-revision": "latest",
        "istio.io/dataplane-mode": "none",
    }
    labels.update(g.labels)
    labels.update(
        {
            GATEWAY_NAME_LABEL: g.name,
            GATEWAY_CLASS_LABEL: g.gateway_class,
            GATEWAY_MANAGED_LABEL: MANAGED_MESH_CONTROLLER
            if waypoint
            else MANAGED_GATEWAY_CONTROLLER,
        }
    )
    return dict(
        kind="Deployment",
        name=name,
        namespace=g.namespace,
        labels=labels,
        service_account=sa,
        ports=(),
        ip=None,
        proxy="waypoint" if waypoint else "gateway",
        gateway=g,
        resource=None,
    )


def _addr_seed(d: Mapping[str, Any]) -> str:
    return f"{d['namespace']}/{d['kind']}/{d['name']}"


def _synthetic_address(
    net: ipaddress.IPv4Network, seed: str, used: set[ipaddress.IPv4Address]
) -> ipaddress.IPv4Address:
    hosts = net.num_addresses - 2  # without the network and broadcast addresses
    h = int.from_bytes(sha256(seed.encode()).digest()[:8], "big") % hosts
    for i in range(hosts):
        addr = net.network_address + 1 + (h + i) % hosts
        if addr not in used:
            used.add(addr)
            return addr
    raise MeshauthzError(f"no free synthetic address left in {net}")


__all__ = [
    "DEFAULT_DOMAIN_SUFFIX",
    "GATEWAY_CLASS_LABEL",
    "GATEWAY_MANAGED_LABEL",
    "GATEWAY_NAME_LABEL",
    "SYNTHETIC_POD_CIDR",
    "SYNTHETIC_SERVICE_CIDR",
    "WAYPOINT_GATEWAY_CLASS",
    "Identity",
    "LookupFailed",
    "MeshNamespace",
    "MeshService",
    "MeshSnapshot",
    "MeshWorkload",
    "ProxyType",
    "build_snapshot",
    "config_sort_key",
    "creation_time",
    "sanitize_trust_domain",
]
