"""Reading manifests from files, directories and stdin into typed objects.

Files are read the way ``kubectl apply -f`` reads them: multi-document YAML or
JSON, ``kind: List`` wrappers (``kubectl get -o yaml``), and the output of
``helm template`` or ``kustomize build``. A file or YAML problem makes the
input unusable (InputError); a problem inside one object (a wrong type, an
unknown field) is a finding on that object, which is then left out, as an API
server would reject it.

A repository holds more than manifests. A document that is not a Kubernetes
object (no ``apiVersion`` and ``kind``: ``values.yaml``, a JWKS, a mesh config
file), and an object of a kind meshauthz does not read (``Kustomization``,
``IstioOperator``), is skipped without being validated; an unrendered Helm
template is skipped with a note; a file that cannot be parsed is reported and
the other files are still read (``LoadResult.unreadable``).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
from msgspec import Struct, field

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
    ServiceEntrySpec,
    ServiceSpec,
)
from meshauthz.resources.meshconfig import MeshConfig, MeshConfigError, mesh_config_from_data
from meshauthz.resources.reuse import LoadRecord
from meshauthz.resources.structs import convert
from meshauthz.resources.validation import validate_resource
from meshauthz.resources.validation.objectmeta import (
    metadata_problems,
    template_metadata_problems,
)
from meshauthz.resources.yamlload import (
    Document,
    NotInChunks,
    Path,
    Positions,
    dotted,
    iter_chunked,
    parse_documents,
    read_source,
)

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
TEST_SUITE_SUFFIX = ".test.yaml"
MESH_CONFIGMAP = "istio"
# Why a document was skipped (``Skipped.reason``), for ``validate -v``.
NOT_AN_OBJECT = "not a Kubernetes object (no apiVersion and kind)"
NOT_READ = "a kind meshauthz does not read"
EMPTY_FILE = "an empty file"
HELM_TEMPLATE = "an unrendered Helm template"
# A Helm template action: ``{{`` then a value (``.x``, ``$x``), a trim marker, a
# comment or a word (``include``, ``if``, ``end``, ...).
_HELM_ACTION = re.compile(r"\{\{-?\s*(?:[.$]|/\*|[A-Za-z_])")
# The kinds meshauthz reads (group, kind); every other kind is skipped unread.
_READ_KINDS = frozenset(
    {
        ("security.istio.io", "AuthorizationPolicy"),
        ("security.istio.io", "RequestAuthentication"),
        ("security.istio.io", "PeerAuthentication"),
        ("", "Namespace"),
        ("", "ServiceAccount"),
        ("", "Service"),
        ("", "Pod"),
        ("batch", "CronJob"),
        ("networking.istio.io", "Gateway"),
        ("gateway.networking.k8s.io", "Gateway"),
        ("networking.istio.io", "ServiceEntry"),
    }
)

_SECURITY_VERSIONS = ("security.istio.io/v1", "security.istio.io/v1beta1")
_CONTROLLERS = {
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("apps", "ReplicaSet"),
    ("batch", "Job"),
    ("extensions", "Deployment"),
}


# The objects validated as their documents are read (``_Loader.released``).
_VALIDATED = (o.PeerAuthentication, o.RequestAuthentication, o.AuthorizationPolicy)


class LoadResult(Struct):
    manifests: o.Manifests
    findings: list[Finding] = field(default_factory=list)
    # Files that could not be read or parsed: the others were read all the same.
    unreadable: list[InputError] = field(default_factory=list)
    # validate_resource of the objects whose documents were released
    validated: dict[o.Resource, Sequence[Finding]] = field(default_factory=dict)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]


def collect_files(paths: Iterable[str], exclude: Sequence[str] = ()) -> list[str]:
    """Expand directories (recursively, manifest suffixes only, test suites and
    hidden directories skipped, files and directories matching ``exclude``
    left out: see ``excluded``)."""
    out: list[str] = []
    for p in paths:
        if p == "-":
            out.append(p)
        elif os.path.isdir(p):
            found: list[str] = []
            for root, dirs, files in os.walk(p):
                rel_root = os.path.relpath(root, p)
                dirs[:] = sorted(
                    d
                    for d in dirs
                    if not d.startswith(".")
                    and not excluded(p, os.path.normpath(os.path.join(rel_root, d)), exclude)
                )
                found.extend(
                    os.path.join(root, f)
                    for f in sorted(files)
                    if f.endswith(MANIFEST_SUFFIXES)
                    and not f.endswith(TEST_SUITE_SUFFIX)
                    and not excluded(p, os.path.normpath(os.path.join(rel_root, f)), exclude)
                )
            out.extend(found)
        elif os.path.exists(p):
            out.append(p)
        else:
            raise InputError("no such file or directory", location=Location(p))
    return out


def _file_identity(path: str) -> object:
    """What tells files apart however they are named (links, ``..``, a
    directory and a file in it): the device and inode, else the resolved path."""
    if path == "-":
        return path
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # read_source says what is wrong with it
        return os.path.realpath(path)
    return (st.st_dev, st.st_ino)


def excluded(directory: str, relative: str, patterns: Sequence[str]) -> bool:
    """Whether ``--exclude`` leaves out a file or directory found under
    ``directory`` (``relative``: its path below it). As conftest's ``--ignore``
    does, a pattern applies only to what is found by walking a directory (a
    file named on the command line is always read) and is matched against the
    path as walked (``directory/relative``). Patterns are shell globs
    (``fnmatch``: ``*`` also matches ``/``) rather than conftest's one regular
    expression: a pattern matches the path as walked, the path below the
    directory, or (a pattern without ``/``) any one name along it, so
    ``charts`` leaves out every directory named charts and ``*.json`` every
    JSON file."""
    if not patterns:
        return False
    rel = relative.replace(os.sep, "/")
    walked = os.path.join(directory, relative).replace(os.sep, "/")
    names = rel.split("/")
    for pat in patterns:
        pat = pat.rstrip("/")
        if fnmatch.fnmatchcase(walked, pat) or fnmatch.fnmatchcase(rel, pat):
            return True
        if "/" not in pat and any(fnmatch.fnmatchcase(n, pat) for n in names):
            return True
    return False


def _in_helm_chart(path: str) -> bool:
    """A file under a chart's ``templates/`` directory (a ``Chart.yaml`` beside it)."""
    parts = os.path.normpath(os.path.abspath(path)).split(os.sep)
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] == "templates":
            chart = os.sep.join(parts[:i]) or os.sep
            if os.path.isfile(os.path.join(chart, "Chart.yaml")):
                return True
    return False


def _helm_action_line(text: str) -> int | None:
    m = _HELM_ACTION.search(text)
    return None if m is None else text.count("\n", 0, m.start()) + 1


def _templated(docs: list[Document]) -> bool:
    """A document whose identity (apiVersion, kind, metadata) holds a template action."""
    for d in docs:
        data = d.data
        if not isinstance(data, dict):
            continue
        meta = data.get("metadata")
        head = [data.get("apiVersion"), data.get("kind")]
        if isinstance(meta, dict):
            head += [meta.get("name"), meta.get("namespace")]
        if any(isinstance(v, str) and "{{" in v for v in head):
            return True
    return False


def load(
    paths: Iterable[str],
    *,
    default_namespace: str = "default",
    namespace: str | None = None,
    mesh_config_file: str | None = None,
    exclude: Sequence[str] = (),
    record: LoadRecord | None = None,
) -> LoadResult:
    """Load every object under ``paths``. Raises InputError for unusable input:
    no paths, a path that does not exist, or nothing found.

    ``namespace`` is ``kubectl apply -n``: the namespace of objects that name
    none, and an object naming another one is an error (finding
    ``namespace-mismatch``). Without it, objects without a namespace are in
    ``default_namespace``. ``exclude``: globs, see ``excluded``. ``record``:
    what earlier loads made of the same documents, reused (``reuse``)."""
    paths = list(paths)
    if not paths:
        raise InputError("no input: give at least one file, directory or '-'")
    if paths.count("-") + (mesh_config_file == "-") > 1:
        raise InputError(
            "'-' (standard input) is given more than once: standard input can be read only once"
        )
    files: list[str] = []
    seen: set[object] = set()
    for p in paths:
        found = collect_files([p], exclude)
        if not found:  # a directory without manifests: empty, or not the one meant
            raise InputError(
                "no manifests found: no .yaml, .yml or .json files (test suites, "
                "*.test.yaml, are not manifests"
                + (", and --exclude leaves out what matches it)" if exclude else ")"),
                location=Location(p),
            )
        # a file reached again (-f DIR -f DIR/file.yaml) is read once, as applying
        # it again changes nothing; two files defining one object still clash
        for f in found:
            key = _file_identity(f)
            if key not in seen:
                seen.add(key)
                files.append(f)
    loader = _Loader(namespace or default_namespace, enforce_namespace=namespace is not None)
    unreadable: list[InputError] = []
    for path in files:
        try:
            display, text = read_source(path)
        except InputError as e:
            unreadable.append(e)
            continue
        loader.manifests.files.append(display)
        action = _helm_action_line(text)
        if record is None and action is None and loader.released(text, display):
            continue
        try:
            read = (
                [(d, None) for d in parse_documents(text, display)]
                if record is None
                else record.parse(text, display)
            )
        except InputError as e:
            if action is None:
                unreadable.append(e)
                continue
            read = []
        docs = [d for d, _ in read]
        if action is not None and (not docs or _in_helm_chart(path) or _templated(docs)):
            loader.helm_template(display, action)
            continue
        if not docs:
            loader.skip(Location(display, 1), EMPTY_FILE)
            continue
        for doc, chunk in read:
            if record is None:
                loader.document(doc)
            else:
                record.document(loader, doc, chunk)
    if not loader.objects and not unreadable:
        skipped = loader.manifests.skipped
        if len(skipped) == 1 and skipped[0].reason == EMPTY_FILE:
            raise InputError(
                "file is empty: it holds no Kubernetes objects", location=skipped[0].location
            )
        why = "; ".join(sorted({s.reason for s in skipped}))
        raise InputError(
            "no Kubernetes objects found"
            + (f": {len(skipped)} document(s) skipped ({why})" if skipped else ""),
            location=Location(paths[0]) if len(paths) == 1 else None,
        )
    if mesh_config_file is not None:
        loader.standalone_mesh_config(mesh_config_file)
    return LoadResult(loader.manifests, loader.findings, unreadable, loader.validated)


def load_documents(docs: Iterable[Document], *, default_namespace: str = "default") -> LoadResult:
    """Type already-parsed documents (for callers that build documents themselves)."""
    loader = _Loader(default_namespace)
    for doc in docs:
        if doc.file not in loader.manifests.files:
            loader.manifests.files.append(doc.file)
        loader.document(doc)
    return LoadResult(loader.manifests, loader.findings)


def load_mesh_config_file(path: str) -> MeshConfig:
    """A MeshConfig YAML file, or the ``istio`` ConfigMap that holds one under
    ``data.mesh`` (as ``kubectl get cm istio -o yaml`` prints it, alone or in a
    List)."""
    display, text = read_source(path, "a mesh config")
    docs = parse_documents(text, display)
    doc = docs[0] if docs else Document(display, 0, 1, {}, {})
    found = _configmap_in(doc.data, ())
    if found is not None:
        data, base = found
        return _configmap_mesh_config(doc, base, data) or MeshConfig(location=doc.location(base))
    return _mesh_config_from(doc, ())


def _configmap_in(data: Any, base: Path) -> tuple[dict[str, Any], Path] | None:
    """The ConfigMap in a document (itself, or the first in a List's items)."""
    if not isinstance(data, dict) or not isinstance(data.get("apiVersion"), str):
        return None
    if data.get("kind") == "ConfigMap":
        return data, base
    items = data.get("items")
    if isinstance(items, list):
        for i, item in enumerate(items):
            if found := _configmap_in(item, (*base, "items", i)):
                return found
    return None


def _configmap_mesh_config(doc: Document, base: Path, data: dict[str, Any]) -> MeshConfig | None:
    """The mesh config under a ConfigMap's ``data.mesh`` (None without one)."""
    mesh_text = (data.get("data") or {}).get("mesh") if isinstance(data.get("data"), dict) else None
    if mesh_text is None:
        return None
    path = (*base, "data", "mesh")
    if not isinstance(mesh_text, str):
        raise InputError(
            "expected the mesh config as a string",
            location=doc.location(path),
            field="data.mesh",
        )
    # The mesh text is a YAML document of its own; its lines start after the key.
    inner = parse_documents(mesh_text, doc.file)
    offset = doc.location(path).line or 1
    if not inner:
        return MeshConfig(location=doc.location(base))
    d = inner[0]
    shifted: Mapping[Path, tuple[int, int]] = (
        d.positions.shifted(offset)
        if isinstance(d.positions, Positions)
        else {p: (ln + offset, col) for p, (ln, col) in d.positions.items()}
    )
    return _mesh_config_from(Document(doc.file, d.index, d.line + offset, d.data, shifted), ())


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


def _proxy_container(data: Any, template: Path) -> bool:
    """Whether the pod (template) at ``template`` in ``data``, as written, has a
    container or init container named istio-proxy (istioctl's ``PodInMesh``)."""
    for part in (*template, "spec"):
        if not isinstance(data, dict):
            return False
        data = data.get(part)
    if not isinstance(data, dict):
        return False
    containers = [*(data.get("containers") or []), *(data.get("initContainers") or [])]
    return any(isinstance(c, dict) and c.get("name") == o.PROXY_CONTAINER for c in containers)


class _Mark(Struct, frozen=True):
    """What a loader holds at one point (``_Loader.mark``)."""

    sizes: list[int]  # of each list of ``OBJECT_LISTS``
    skipped: int
    findings: int
    objects: int
    mesh_config_seen: Location | None
    mesh_config: MeshConfig


class _Loader:
    def __init__(self, default_namespace: str, *, enforce_namespace: bool = False) -> None:
        self.default_namespace = default_namespace
        self.enforce_namespace = enforce_namespace
        self.manifests = o.Manifests()
        self.findings: list[Finding] = []
        self.objects = 0  # Kubernetes objects seen, read or not
        self._mesh_config_seen: Location | None = None
        self.validated: dict[o.Resource, Sequence[Finding]] = {}

    def released(self, text: str, file: str) -> bool:
        """Read a file's documents one at a time (``iter_chunked``), each typed,
        its objects validated (``validate_resource``: what reads the object as
        written), then released (``Document.release``): a large mesh's parsed
        data is then never held all at once. False, with nothing of the file
        kept, when it cannot be read so: it is then read whole."""
        docs = iter_chunked(text, file)
        if docs is None:
            return False
        start = self.mark()
        validated: dict[o.Resource, Sequence[Finding]] = {}
        kept: list[Document] = []  # the documents objects were made of
        read = 0
        try:
            for doc in docs:
                read += 1
                before = self.mark()
                self.document(doc)
                made = [r for added in self.added(before) for r in added]
                if made:
                    kept.append(doc)
                for r in made:
                    if isinstance(r, _VALIDATED):
                        validated[r] = validate_resource(r) or ()
                doc.release()
        except NotInChunks:  # nothing of the file is kept: it is read whole
            self.undo(start)
            return False
        self.validated.update(validated)
        if not read:
            self.skip(Location(file, 1), EMPTY_FILE)
        if 2 * sum(d.text_size() for d in kept) < len(text):
            for d in kept:  # not the whole text for a few of its documents
                d.own_text()
        return True

    def mark(self) -> _Mark:
        """What the loader holds so far: to tell what it adds after (``added``),
        or to take that back (``undo``)."""
        m = self.manifests
        return _Mark(
            [len(getattr(m, kind)) for kind in o.OBJECT_LISTS],
            len(m.skipped),
            len(self.findings),
            self.objects,
            self._mesh_config_seen,
            m.mesh_config,
        )

    def added(self, mark: _Mark) -> list[list[o.Resource]]:
        """The objects added since ``mark``, per list of ``OBJECT_LISTS``."""
        m = self.manifests
        return [getattr(m, kind)[n:] for kind, n in zip(o.OBJECT_LISTS, mark.sizes, strict=True)]

    def undo(self, mark: _Mark) -> None:
        """Take back everything added since ``mark``."""
        m = self.manifests
        for kind, n in zip(o.OBJECT_LISTS, mark.sizes, strict=True):
            del getattr(m, kind)[n:]
        del m.skipped[mark.skipped :]
        del self.findings[mark.findings :]
        self.objects = mark.objects
        self._mesh_config_seen, m.mesh_config = mark.mesh_config_seen, mark.mesh_config

    def skip(self, location: Location, reason: str, kind: str = "", api_version: str = "") -> None:
        self.manifests.skipped.append(o.Skipped(kind, api_version, "", "", location, reason=reason))

    def helm_template(self, file: str, line: int) -> None:
        """A file with Helm's template actions: not YAML a cluster could take."""
        self.skip(Location(file, line), HELM_TEMPLATE)
        self.findings.append(
            Finding(
                "info",
                "helm-template",
                "skipped: an unrendered Helm template ({{ ... }} here); give meshauthz "
                "what `helm template` renders",
                Location(file, line),
            )
        )

    # --- documents and lists ---------------------------------------------

    def document(self, doc: Document) -> None:
        self.object(doc, (), doc.data)

    def object(self, doc: Document, base: Path, data: Any) -> None:
        api_version = data.get("apiVersion") if isinstance(data, dict) else None
        kind = data.get("kind") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not (
            isinstance(kind, str) and kind and isinstance(api_version, str) and api_version
        ):
            if isinstance(kind, str) and any(k == kind for _, k in _READ_KINDS):
                # a kind meshauthz reads, written without its apiVersion: a mistake
                self.objects += 1
                self.finding(
                    doc,
                    base + ("apiVersion",),
                    "not-an-object",
                    "apiVersion is required (a string such as security.istio.io/v1)",
                    field="apiVersion",
                )
            elif not (isinstance(data, dict) and not data):  # an empty mapping is nothing
                self.skip(doc.location(base), NOT_AN_OBJECT)
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
        self.objects += 1
        self.typed(doc, base, data, api_version, kind)

    # --- kinds ------------------------------------------------------------

    def typed(
        self, doc: Document, base: Path, data: dict[str, Any], api_version: str, kind: str
    ) -> None:
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
        raw_meta = data.get("metadata")
        mesh_configmap = (
            group == ""
            and kind == "ConfigMap"
            and isinstance(raw_meta, dict)
            and raw_meta.get("name") == MESH_CONFIGMAP
        )
        # the one ConfigMap read is the mesh config
        known = (group, kind) in _READ_KINDS or (group, kind) in _CONTROLLERS or mesh_configmap
        if not known:
            self.skip_unread(doc, base, data, api_version, kind)
            return
        meta = self.model(doc, base, data, "metadata", ObjectMeta, {"kind": kind})
        if meta is None:
            return
        name = meta.name or meta.generate_name
        cluster_scoped = kind == "Namespace" and group == ""
        namespace = "" if cluster_scoped else (meta.namespace or self.default_namespace)
        ident = dict(kind=kind, namespace=namespace, name=name)
        if isinstance(raw_meta, dict) and self.refused_metadata(
            doc, base, group, kind, raw_meta, ident
        ):
            return
        if self.enforce_namespace and not cluster_scoped and namespace != self.default_namespace:
            # kubectl apply -n: "the namespace from the provided object does not match"
            self.finding(
                doc,
                base + ("metadata", "namespace"),
                "namespace-mismatch",
                f'the object\'s namespace "{namespace}" does not match -n/--namespace '
                f'"{self.default_namespace}" (kubectl apply -n refuses it too): drop -n, '
                "or give the objects of each namespace separately",
                field="metadata.namespace",
                **ident,
            )
            return
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
        created = raw_meta.get("creationTimestamp") if isinstance(raw_meta, dict) else None
        common: dict[str, Any] = dict(
            kind=kind,
            api_version=api_version,
            name=name,
            namespace=namespace,
            # the model's own maps: frozen models that nothing changes, held once
            labels=meta.labels,
            annotations=meta.annotations,
            doc=doc,
            base=base,
            created=created if isinstance(created, str) else "",
        )
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
            kinds: dict[str, tuple[type[msgspec.Struct], Any, list[Any]]] = {
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
            parsed = self.model(doc, base, data, "spec", model_cls, ident)
            if parsed is not None:
                target.append(rec_cls(**common, spec=parsed))
            return

        if group == "" and kind == "Namespace":
            m.namespaces.append(o.Namespace(**common))
        elif group == "" and kind == "ServiceAccount":
            m.service_accounts.append(o.ServiceAccount(**common))
        elif group == "" and kind == "Service":
            svc = self.model(doc, base, data, "spec", ServiceSpec, ident)
            if svc is not None:
                m.services.append(o.Service(**common, spec=svc))
        elif group == "" and kind == "Pod":
            pod = self.model(doc, base, data, "spec", PodSpec, ident)
            status = self.model(doc, base, data, "status", PodStatus, ident)
            if pod is not None and status is not None:
                ip = status.pod_ip or (status.pod_ips[0].ip if status.pod_ips else None)
                m.workloads.append(self.workload(common, meta, meta, pod, (), ip, data))
        elif (group, kind) in _CONTROLLERS or (group == "batch" and kind == "CronJob"):
            if kind == "CronJob":
                cj = self.model(doc, base, data, "spec", CronJobSpec, ident)
                if cj is None:
                    return
                tpath: Path = ("spec", "jobTemplate", "spec", "template")
                template = cj.job_template.spec.template
            else:
                ctl = self.model(doc, base, data, "spec", ControllerSpec, ident)
                if ctl is None:
                    return
                template, tpath = ctl.template, ("spec", "template")
            if self.refused_template_metadata(doc, base, data, tpath, ident):
                return
            m.workloads.append(
                self.workload(common, meta, template.metadata, template.spec, tpath, None, data)
            )
        elif group == "" and kind == "ConfigMap":
            self.mesh_configmap(doc, base, data, ident)
        elif group == "networking.istio.io" and kind == "Gateway":
            gw = self.model(doc, base, data, "spec", IstioGatewaySpec, ident)
            if gw is not None:
                m.gateways.append(o.Gateway(**common, flavor="istio", selector=dict(gw.selector)))
        elif group == "gateway.networking.k8s.io" and kind == "Gateway":
            gw2 = self.model(doc, base, data, "spec", K8sGatewaySpec, ident)
            if gw2 is not None:
                m.gateways.append(
                    o.Gateway(**common, flavor="gateway-api", gateway_class=gw2.gateway_class_name)
                )
        elif group == "networking.istio.io" and kind == "ServiceEntry":
            se = self.model(doc, base, data, "spec", ServiceEntrySpec, ident)
            if se is not None:
                m.service_entries.append(o.ServiceEntry(**common, spec=se))
        else:  # pragma: no cover - every kind not read was skipped before
            raise AssertionError((group, kind))

    def skip_unread(
        self, doc: Document, base: Path, data: dict[str, Any], api_version: str, kind: str
    ) -> None:
        """An object of a kind meshauthz does not read: listed, never validated."""
        meta = data.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        name = meta.get("name") or meta.get("generateName") or ""
        ns = meta.get("namespace") or self.default_namespace
        self.manifests.skipped.append(
            o.Skipped(
                kind,
                api_version,
                name if isinstance(name, str) else "",
                ns if isinstance(ns, str) else "",
                doc.location(base),
                reason=NOT_READ,
            )
        )

    def workload(
        self,
        common: dict[str, Any],
        meta: ObjectMeta,
        pod_meta: ObjectMeta,
        pod: PodSpec,
        tpath: Path,
        ip: str | None,
        data: dict[str, Any],
    ) -> o.Workload:
        """``meta``: the object's metadata; ``pod_meta``: its pods' (the template's);
        ``data``: the object as written."""
        sa = pod.service_account_name or pod.service_account or "default"
        ports = tuple(p for c in pod.containers for p in c.ports)
        return o.Workload(
            **common,
            pod_labels=pod_meta.labels,
            service_account=sa,
            ports=ports,
            ip=ip or None,
            template_path=tpath,
            pod_annotations=pod_meta.annotations,
            host_network=pod.host_network,
            uid=meta.uid,
            owners=meta.owner_references,
            proxy_container=_proxy_container(data, tpath),
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
        mesh_config = _configmap_mesh_config(doc, base, data)
        if mesh_config is not None:
            self.manifests.mesh_config = mesh_config

    def standalone_mesh_config(self, path: str) -> None:
        self.manifests.mesh_config = load_mesh_config_file(path)

    # --- helpers ------------------------------------------------------------

    def refused_metadata(
        self,
        doc: Document,
        base: Path,
        group: str,
        kind: str,
        meta: dict[str, Any],
        ident: dict[str, str],
    ) -> bool:
        """Report what the API server refuses in the object's metadata; True when
        it refuses something (the object is then left out)."""
        problems = metadata_problems(group, kind, meta, namespaced=ident["namespace"] != "")
        return self.report_problems(doc, base, problems, ident)

    def refused_template_metadata(
        self, doc: Document, base: Path, data: dict[str, Any], at: Path, ident: dict[str, str]
    ) -> bool:
        """``refused_metadata`` for the pod template at ``at`` (its model already read)."""
        meta: Any = data
        for key in (*at, "metadata"):
            meta = meta.get(key) if isinstance(meta, dict) else None
        if not isinstance(meta, dict):
            return False
        return self.report_problems(doc, base, template_metadata_problems(meta, at), ident)

    def report_problems(
        self,
        doc: Document,
        base: Path,
        problems: list[tuple[Path, str, str]],
        ident: dict[str, str],
    ) -> bool:
        for path, code, message in problems:
            self.finding(
                doc,
                base + path,
                code,
                message,
                field=dotted(path),
                kind=ident["kind"],
                namespace=ident["namespace"],
                name=ident["name"],
            )
        return bool(problems)

    def model(
        self,
        doc: Document,
        base: Path,
        data: dict[Any, Any],
        key: str,
        cls: type[msgspec.Struct],
        ident: dict[str, str],
    ) -> Any:
        """The object's ``key`` (``spec``, ``metadata``, ``status``) as a ``cls``,
        or None with its problems reported. Written as null, it is one not
        written (as a list or map within it is, ``resources.structs``)."""
        part = data.get(key)
        sub = (key,)
        value, problems = convert({} if part is None else part, cls)
        for path, message in problems:
            self.finding(
                doc,
                base + sub + path,
                "schema",
                message,
                field=dotted(sub + path),
                kind=ident.get("kind", ""),
                namespace=ident.get("namespace", ""),
                name=ident.get("name", ""),
            )
        return value

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


__all__ = ["LoadResult", "collect_files", "load", "load_documents", "load_mesh_config_file"]
