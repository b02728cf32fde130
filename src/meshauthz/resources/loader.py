"""Reading manifests from files, directories and stdin into typed objects.

Files are read the way ``kubectl apply -f`` reads them: multi-document YAML or
JSON, ``kind: List`` wrappers (``kubectl get -o yaml``), and the output of
``helm template`` or ``kustomize build``. A file or YAML problem makes the
input unusable (InputError); a problem inside one object (a wrong type, an
unknown field) is a finding on that object, which is then left out, as an API
server would reject it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from meshauthz.errors import InputError, Location
from meshauthz.resources import objects as o
from meshauthz.resources.findings import Finding, Severity
from meshauthz.resources.istio import (
    AuthorizationPolicySpec,
    PeerAuthenticationSpec,
    RequestAuthenticationSpec,
)
from meshauthz.resources.k8s import (
    ControllerSpec,
    CronJobSpec,
    IstioGatewaySpec,
    K8sGatewaySpec,
    ObjectMeta,
    PodSpec,
    PodStatus,
    ServiceSpec,
)
from meshauthz.resources.meshconfig import MeshConfig, MeshConfigError, mesh_config_from_data
from meshauthz.resources.yamlload import Document, Path, dotted, parse_documents, read_source

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
TEST_SUITE_SUFFIX = ".test.yaml"
MESH_CONFIGMAP = "istio"

_SECURITY_VERSIONS = ("security.istio.io/v1", "security.istio.io/v1beta1")
_CONTROLLERS = {
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("apps", "ReplicaSet"),
    ("batch", "Job"),
    ("extensions", "Deployment"),
}


@dataclass(slots=True)
class LoadResult:
    manifests: o.Manifests
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]


def collect_files(paths: Iterable[str]) -> list[str]:
    """Expand directories (recursively, manifest suffixes only, test suites skipped)."""
    out: list[str] = []
    for p in paths:
        if p == "-":
            out.append(p)
        elif os.path.isdir(p):
            found: list[str] = []
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(
                    os.path.join(root, f)
                    for f in sorted(files)
                    if f.endswith(MANIFEST_SUFFIXES) and not f.endswith(TEST_SUITE_SUFFIX)
                )
            out.extend(found)
        elif os.path.exists(p):
            out.append(p)
        else:
            raise InputError("no such file or directory", location=Location(p))
    return out


def load(
    paths: Iterable[str],
    *,
    default_namespace: str = "default",
    mesh_config_file: str | None = None,
) -> LoadResult:
    """Load every object under ``paths``. Raises InputError for unusable input."""
    paths = list(paths)
    if not paths:
        raise InputError("no input: give at least one file, directory or '-'")
    files: list[str] = []
    for p in paths:
        found = collect_files([p])
        if not found:  # a directory without manifests: empty, or not the one meant
            raise InputError(
                "no manifests found: no .yaml, .yml or .json files (test suites, "
                "*.test.yaml, are not manifests)",
                location=Location(p),
            )
        files.extend(found)
    loader = _Loader(default_namespace)
    for path in files:
        display, text = read_source(path)
        docs = parse_documents(text, display)
        if not docs:
            raise InputError(
                "file is empty: it holds no Kubernetes objects", location=Location(display, 1)
            )
        loader.manifests.files.append(display)
        for doc in docs:
            loader.document(doc)
    if mesh_config_file is not None:
        loader.standalone_mesh_config(mesh_config_file)
    return LoadResult(loader.manifests, loader.findings)


def load_documents(docs: Iterable[Document], *, default_namespace: str = "default") -> LoadResult:
    """Type already-parsed documents (for callers that build documents themselves)."""
    loader = _Loader(default_namespace)
    for doc in docs:
        if doc.file not in loader.manifests.files:
            loader.manifests.files.append(doc.file)
        loader.document(doc)
    return LoadResult(loader.manifests, loader.findings)


def load_mesh_config_file(path: str) -> MeshConfig:
    display, text = read_source(path)
    docs = parse_documents(text, display)
    doc = docs[0] if docs else Document(display, 0, 1, {}, {})
    return _mesh_config_from(doc, ())


def _mesh_config_from(doc: Document, base: Path) -> MeshConfig:
    try:
        return mesh_config_from_data(
            _at(doc.data, base),
            lambda p: doc.location(base + tuple(p)),
        )
    except MeshConfigError as e:
        raise InputError(
            str(e), location=doc.location(base + e.path), field=dotted(e.path) or None
        ) from None


def _at(data: Any, path: Path) -> Any:
    for p in path:
        data = data[p]
    return data


class _Loader:
    def __init__(self, default_namespace: str) -> None:
        self.default_namespace = default_namespace
        self.manifests = o.Manifests()
        self.findings: list[Finding] = []
        self._mesh_config_seen: Location | None = None

    # --- documents and lists ---------------------------------------------

    def document(self, doc: Document) -> None:
        self.object(doc, (), doc.data)

    def object(self, doc: Document, base: Path, data: Any) -> None:
        if not isinstance(data, dict):
            self.finding(
                doc,
                base,
                "not-an-object",
                "not a Kubernetes object: expected a mapping with apiVersion and kind",
            )
            return
        api_version, kind = data.get("apiVersion"), data.get("kind")
        if not isinstance(api_version, str) or not api_version:
            self.finding(
                doc,
                base + ("apiVersion",),
                "not-an-object",
                "apiVersion is required (a string such as security.istio.io/v1)",
                field="apiVersion",
            )
            return
        if not isinstance(kind, str) or not kind:
            self.finding(
                doc,
                base + ("kind",),
                "not-an-object",
                "kind is required (a string such as AuthorizationPolicy)",
                field="kind",
            )
            return
        if kind == "List" or (kind.endswith("List") and "items" in data):
            items = data.get("items")
            if items is None:
                return
            if not isinstance(items, list):
                self.finding(doc, base + ("items",), "schema", "expected a list", field="items")
                return
            for i, item in enumerate(items):
                self.object(doc, (*base, "items", i), item)
            return
        self.typed(doc, base, data, api_version, kind)

    # --- kinds ------------------------------------------------------------

    def typed(
        self, doc: Document, base: Path, data: dict[str, Any], api_version: str, kind: str
    ) -> None:
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
        meta = self.model(
            doc, base, ("metadata",), data.get("metadata") or {}, ObjectMeta, {"kind": kind}
        )
        if meta is None:
            return
        name = meta.name or meta.generate_name
        cluster_scoped = kind == "Namespace" and group == ""
        namespace = "" if cluster_scoped else (meta.namespace or self.default_namespace)
        ident = dict(kind=kind, namespace=namespace, name=name)
        if not name:
            self.finding(
                doc,
                base + ("metadata",),
                "schema",
                "metadata.name is required",
                field="metadata.name",
                **ident,
            )
            return
        common: dict[str, Any] = dict(
            kind=kind,
            api_version=api_version,
            name=name,
            namespace=namespace,
            labels=dict(meta.labels),
            annotations=dict(meta.annotations),
            doc=doc,
            base=base,
        )
        spec = data.get("spec")
        spec = {} if spec is None else spec
        m = self.manifests

        if group == "security.istio.io" and kind in (
            "AuthorizationPolicy",
            "RequestAuthentication",
            "PeerAuthentication",
        ):
            if api_version not in _SECURITY_VERSIONS:
                self.finding(
                    doc,
                    base + ("apiVersion",),
                    "schema",
                    f"unsupported apiVersion {api_version!r} for {kind}; "
                    "use security.istio.io/v1 or v1beta1",
                    field="apiVersion",
                    **ident,
                )
                return
            extra = sorted(set(data) - {"apiVersion", "kind", "metadata", "spec", "status"})
            for key in extra:
                self.finding(
                    doc, base + (key,), "schema", f'unknown field "{key}"', field=key, **ident
                )
            if extra:
                return
            kinds: dict[str, tuple[type[BaseModel], Any, list[Any]]] = {
                "AuthorizationPolicy": (
                    AuthorizationPolicySpec,
                    o.AuthorizationPolicy,
                    m.authorization_policies,
                ),
                "RequestAuthentication": (
                    RequestAuthenticationSpec,
                    o.RequestAuthentication,
                    m.request_authentications,
                ),
                "PeerAuthentication": (
                    PeerAuthenticationSpec,
                    o.PeerAuthentication,
                    m.peer_authentications,
                ),
            }
            model_cls, rec_cls, target = kinds[kind]
            parsed = self.model(doc, base, ("spec",), spec, model_cls, ident)
            if parsed is not None:
                target.append(rec_cls(**common, spec=parsed))
            return

        if group == "" and kind == "Namespace":
            m.namespaces.append(o.Namespace(**common))
        elif group == "" and kind == "ServiceAccount":
            m.service_accounts.append(o.ServiceAccount(**common))
        elif group == "" and kind == "Service":
            svc = self.model(doc, base, ("spec",), spec, ServiceSpec, ident)
            if svc is not None:
                m.services.append(o.Service(**common, spec=svc))
        elif group == "" and kind == "Pod":
            pod = self.model(doc, base, ("spec",), spec, PodSpec, ident)
            status = self.model(doc, base, ("status",), data.get("status") or {}, PodStatus, ident)
            if pod is not None and status is not None:
                ip = status.pod_ip or (status.pod_ips[0].ip if status.pod_ips else None)
                m.workloads.append(self.workload(common, meta, meta, pod, (), ip))
        elif (group, kind) in _CONTROLLERS or (group == "batch" and kind == "CronJob"):
            if kind == "CronJob":
                cj = self.model(doc, base, ("spec",), spec, CronJobSpec, ident)
                if cj is None:
                    return
                tpath: Path = ("spec", "jobTemplate", "spec", "template")
                template = cj.job_template.spec.template
            else:
                ctl = self.model(doc, base, ("spec",), spec, ControllerSpec, ident)
                if ctl is None:
                    return
                template, tpath = ctl.template, ("spec", "template")
            m.workloads.append(
                self.workload(common, meta, template.metadata, template.spec, tpath, None)
            )
        elif group == "" and kind == "ConfigMap" and name == MESH_CONFIGMAP:
            self.mesh_configmap(doc, base, data, ident)
        elif group == "networking.istio.io" and kind == "Gateway":
            gw = self.model(doc, base, ("spec",), spec, IstioGatewaySpec, ident)
            if gw is not None:
                m.gateways.append(o.Gateway(**common, flavor="istio", selector=dict(gw.selector)))
        elif group == "gateway.networking.k8s.io" and kind == "Gateway":
            gw2 = self.model(doc, base, ("spec",), spec, K8sGatewaySpec, ident)
            if gw2 is not None:
                m.gateways.append(
                    o.Gateway(**common, flavor="gateway-api", gateway_class=gw2.gateway_class_name)
                )
        else:
            m.skipped.append(o.Skipped(kind, api_version, name, namespace, doc.location(base)))

    def workload(
        self,
        common: dict[str, Any],
        meta: ObjectMeta,
        pod_meta: ObjectMeta,
        pod: PodSpec,
        tpath: Path,
        ip: str | None,
    ) -> o.Workload:
        """``meta``: the object's metadata; ``pod_meta``: its pods' (the template's)."""
        sa = pod.service_account_name or pod.service_account or "default"
        ports = tuple(p for c in pod.containers for p in c.ports)
        return o.Workload(
            **common,
            pod_labels=dict(pod_meta.labels),
            service_account=sa,
            ports=ports,
            ip=ip or None,
            template_path=tpath,
            pod_annotations=dict(pod_meta.annotations),
            host_network=pod.host_network,
            uid=meta.uid,
            owners=meta.owner_references,
        )

    def mesh_configmap(
        self, doc: Document, base: Path, data: dict[str, Any], ident: dict[str, str]
    ) -> None:
        here = doc.location(base)
        if self._mesh_config_seen is not None:
            raise InputError(
                f"a second mesh config ConfigMap '{MESH_CONFIGMAP}' (the first is at "
                f"{self._mesh_config_seen})",
                location=here,
            )
        self._mesh_config_seen = here
        mesh_text = (
            (data.get("data") or {}).get("mesh") if isinstance(data.get("data"), dict) else None
        )
        if mesh_text is None:
            return
        path = (*base, "data", "mesh")
        if not isinstance(mesh_text, str):
            raise InputError(
                "expected the mesh config as a string",
                location=doc.location(path),
                field="data.mesh",
            )
        value_loc = doc.location(path)
        # The mesh text is a YAML document of its own; its lines start after the key.
        inner = parse_documents(mesh_text, doc.file)
        offset = value_loc.line or 1
        if inner:
            d = inner[0]
            shifted = {p: (ln + offset, col) for p, (ln, col) in d.positions.items()}
            self.manifests.mesh_config = _mesh_config_from(
                Document(doc.file, d.index, d.line + offset, d.data, shifted), ()
            )
        else:
            self.manifests.mesh_config = MeshConfig(location=here)

    def standalone_mesh_config(self, path: str) -> None:
        self.manifests.mesh_config = load_mesh_config_file(path)

    # --- helpers ------------------------------------------------------------

    def model(
        self,
        doc: Document,
        base: Path,
        sub: Path,
        data: Any,
        cls: type[BaseModel],
        ident: dict[str, str],
    ) -> Any:
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            seen: set[str] = set()
            for err in e.errors():
                path, message = _explain(data, sub, err)
                key = f"{path}{message}"
                if key in seen:
                    continue
                seen.add(key)
                self.finding(
                    doc,
                    base + path,
                    "schema",
                    message,
                    field=dotted(path),
                    kind=ident.get("kind", ""),
                    namespace=ident.get("namespace", ""),
                    name=ident.get("name", ""),
                )
            return None

    def finding(
        self,
        doc: Document,
        path: Path,
        code: str,
        message: str,
        *,
        field: str = "",
        kind: str = "",
        namespace: str = "",
        name: str = "",
        severity: Severity = "error",
    ) -> None:
        self.findings.append(
            Finding(
                severity,
                code,
                message,
                doc.location(path),
                kind,
                namespace,
                name,
                field,
            )
        )


_TYPE_WORDS: dict[str, str] = {
    "list_type": "a list",
    "tuple_type": "a list",
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "a boolean",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "float_type": "a number",
}


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f'a string ("{value}")'
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "null"
    return type(value).__name__


def _explain(data: Any, sub: Path, err: Any) -> tuple[Path, str]:
    """A pydantic error as (path in the document, message in Kubernetes' terms)."""
    path: list[str | int] = list(sub)
    cur: Any = data
    for part in err["loc"]:
        if (isinstance(cur, dict) and isinstance(part, str) and part in cur) or (
            isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur)
        ):
            cur = cur[part]  # type: ignore[index]  # mypy loses the pairing of the isinstance tests
            path.append(part)
        elif err["type"] in ("extra_forbidden", "missing") and isinstance(part, str):
            path.append(part)
            break
        # other parts (union member names, validators) are not in the document
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        return tuple(path), f'unknown field "{path[-1]}"'
    if kind == "missing":
        return tuple(path), "required field is missing"
    if kind in _TYPE_WORDS:
        return tuple(path), f"expected {_TYPE_WORDS[kind]}, got {_describe(value)}"
    if kind == "literal_error":
        expected = (
            str(err.get("ctx", {}).get("expected", "")).replace("'", '"').replace(" or ", ", ")
        )
        shown = f'"{value}"' if isinstance(value, str) else _describe(value)
        return tuple(path), f"unsupported value {shown}; supported values: {expected}"
    return tuple(path), str(err.get("msg", "invalid value"))


__all__ = ["LoadResult", "collect_files", "load", "load_documents", "load_mesh_config_file"]
