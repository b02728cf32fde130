"""The Python API behind ``import meshauthz``: the commands' pipeline as objects.

``load`` is the one loader (read, validate as Istio does, snapshot);
``Mesh.check`` decides requests written in the request format, as ``meshauthz
check`` does; ``Outcome.explain`` is ``meshauthz explain``'s text;
``Mesh.filters`` is what ``meshauthz build`` prints; ``load_config_dump`` gives
the same checks against a live proxy's Envoy config dump.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypeAlias, overload

from meshauthz.analyze.decision_notes import DecisionNotes
from meshauthz.decide import config_dump as _dump
from meshauthz.decide import render
from meshauthz.decide.applicable import applicable_policies
from meshauthz.decide.cause import Stage
from meshauthz.decide.decision import Decision, Hop, Verdict
from meshauthz.decide.engine import Decider
from meshauthz.decide.request import Request, resolve
from meshauthz.decide.request_spec import RequestSpec, request_from_data
from meshauthz.decide.runner import ExtAuthzAssumption
from meshauthz.mesh import MeshSnapshot, inbound_port
from meshauthz.mesh.loading import LoadedMesh, MeshConfigArg, PathArg, load_mesh
from meshauthz.resources.findings import Finding
from meshauthz.resources.objects import Manifests, Skipped
from meshauthz.translate import BuiltFilter, Chain
from meshauthz.translate.workload import build_for_workload

RequestData: TypeAlias = Mapping[str, Any]
"""One request in the request format (``src/meshauthz/schemas/request.schema.json``)."""


def _explain_text(snapshot: MeshSnapshot, request: Request, decision: Decision) -> str:
    """``meshauthz explain``'s text for one decision (decided with ``explain=True``),
    with the analyzer's findings on the deciding rule, as the command prints them."""
    return "\n".join(
        [
            *render.explain_lines(request, decision, applicable_policies(snapshot, request)),
            *DecisionNotes(snapshot, [decision]).lines(decision),
        ]
    )


def _specs(requests: RequestData | Sequence[RequestData]) -> tuple[list[RequestSpec], bool]:
    """Parsed as request files are, so the errors are the same; (specs, one request given)."""
    if isinstance(requests, Mapping) or not isinstance(requests, list | tuple):
        return [request_from_data(requests)], True
    return [request_from_data(r, f"<request {i}>") for i, r in enumerate(requests)], False


class _Checked:
    """One request's decision and the request as the destination's Envoy saw it."""

    __slots__ = ("decision", "request")

    def __init__(self, decision: Decision, request: Request) -> None:
        self.decision = decision
        self.request = request

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    @property
    def verdict(self) -> Verdict:
        return self.decision.verdict

    @property
    def status(self) -> int | str:
        """200, 401, 403, 400, or "connection reset" for TCP."""
        return self.decision.status

    @property
    def stage(self) -> Stage:
        return Stage(self.decision.stage)

    @property
    def policy(self) -> str | None:
        """The deciding AuthorizationPolicy, "namespace/name"."""
        return self.decision.policy

    @property
    def rule(self) -> int | None:
        return self.decision.rule

    @property
    def reason(self) -> str:
        return self.decision.reason

    @property
    def hops(self) -> tuple[Hop, ...]:
        """The enforcement points the request passes, in order (check -o json's
        "hops"; empty for a config dump's proxy)."""
        return self.decision.hops

    @property
    def enforced_by(self) -> str:
        """ "sidecar", "waypoint" or "ztunnel": where the decision was made ("none":
        nothing enforces)."""
        return self.decision.enforced_by

    @property
    def conditional_on(self) -> tuple[str, ...]:
        """Filters not evaluated that run before the decision (a config dump's Lua,
        Wasm, ...): the answer holds only if they let the request through."""
        c = self.decision.condition
        return c.filters if c is not None else ()

    def to_json(self) -> dict[str, Any]:
        """The document ``meshauthz check -o json`` prints (its trace only when
        checked with ``trace=True``)."""
        return render.named_json(self.request, self.decision.to_json())

    def __repr__(self) -> str:
        at = f" by {self.policy} rule {self.rule}" if self.policy else ""
        return f"<{type(self).__name__} {self.verdict} ({self.status}) stage {self.stage}{at}>"


class Outcome(_Checked):
    """A request checked against a mesh loaded from manifests."""

    __slots__ = ("_explained", "_ext_authz", "_mesh")

    def __init__(
        self, decision: Decision, request: Request, mesh: Mesh, ext_authz: ExtAuthzAssumption
    ) -> None:
        super().__init__(decision, request)
        self._mesh = mesh
        self._ext_authz = ext_authz
        self._explained: str | None = None

    def explain(self) -> str:
        """What ``meshauthz explain`` prints for this request (without the last newline):
        the policies that apply to the destination and why, then each rule's result."""
        if self._explained is None:
            decider = self._mesh._decider(self._ext_authz)
            d = decider.decide(self.request, trace=True, explain=True)
            self._explained = _explain_text(self._mesh.snapshot, self.request, d)
        return self._explained

    def to_json(self) -> dict[str, Any]:
        """The document ``meshauthz check -o json`` prints (its trace only when
        checked with ``trace=True``), with the analyzer's findings on the deciding rule."""
        notes = DecisionNotes(self._mesh.snapshot, [self.decision])
        return render.named_json(self.request, self.decision.to_json()) | {
            "findings": notes.to_json(self.decision)
        }


class Mesh:
    """A mesh loaded by ``meshauthz.load``: valid as Istio would accept it."""

    def __init__(self, loaded: LoadedMesh) -> None:
        self._loaded = loaded
        self._deciders: dict[ExtAuthzAssumption, Decider] = {}

    @property
    def snapshot(self) -> MeshSnapshot:
        return self._loaded.snapshot

    @property
    def manifests(self) -> Manifests:
        return self._loaded.manifests

    @property
    def findings(self) -> tuple[Finding, ...]:
        """Istio's warnings about the objects (errors are raised as InvalidInput)."""
        return self._loaded.findings

    @property
    def skipped(self) -> tuple[Skipped, ...]:
        """Objects of kinds meshauthz does not read."""
        return self._loaded.skipped

    def _decider(self, ext_authz: ExtAuthzAssumption) -> Decider:
        d = self._deciders.get(ext_authz)
        if d is None:
            d = self._deciders[ext_authz] = Decider(self.snapshot, ext_authz=ext_authz)
        return d

    @overload
    def check(
        self,
        request: RequestData,
        *,
        ext_authz: ExtAuthzAssumption = "deny",
        trace: bool = False,
    ) -> Outcome: ...

    @overload
    def check(
        self,
        request: Sequence[RequestData],
        *,
        ext_authz: ExtAuthzAssumption = "deny",
        trace: bool = False,
    ) -> list[Outcome]: ...

    def check(
        self,
        request: RequestData | Sequence[RequestData],
        *,
        ext_authz: ExtAuthzAssumption = "deny",
        trace: bool = False,
    ) -> Outcome | list[Outcome]:
        """Decide a request (a mapping in the request format) or a list of them, as
        ``meshauthz check`` does. ``ext_authz``: what a CUSTOM provider is assumed to
        answer (``--ext-authz``); ``trace``: keep the evaluation trace. Raises
        InputError for a malformed request (``check --request``'s message), and
        MeshauthzError for a name the mesh does not hold."""
        specs, single = _specs(request)
        resolved = [resolve(s, self.snapshot) for s in specs]
        decider = self._decider(ext_authz)
        out = [Outcome(decider.decide(r, trace=trace), r, self, ext_authz) for r in resolved]
        return out[0] if single else out

    def filters(
        self,
        workload: str,
        *,
        port: int | None = None,
        protocol: Literal["http", "tcp"] | None = None,
    ) -> list[BuiltFilter]:
        """The Envoy filters istiod builds for ``workload`` ("namespace/name"), in
        order: what ``meshauthz build --workload`` prints (``BuiltFilter.to_dict()``
        is its JSON). Without ``protocol``, the port's declared protocol decides
        (HTTP when no port is given)."""
        snapshot = self.snapshot
        w = snapshot.workload(workload)
        if protocol is None and port is not None:
            protocol = "tcp" if inbound_port(snapshot, w, port).listener == "tcp" else "http"
        chain = Chain.TCP if protocol == "tcp" else Chain.HTTP
        return build_for_workload(snapshot, w, chain)[1].filters


class ProxyOutcome(_Checked):
    """A request checked against a proxy's config dump, and where in the dump it went."""

    __slots__ = ("chain",)

    def __init__(self, decision: Decision, request: Request, chain: _dump.ChainInfo) -> None:
        super().__init__(decision, request)
        self.chain = chain

    def to_json(self) -> dict[str, Any]:
        """The document ``meshauthz check --config-dump -o json`` prints."""
        return render.named_json(self.request, self.decision.to_json()) | {
            "configDump": self.chain.to_json()
        }


class Proxy:
    """One proxy's Envoy config dump, read by ``meshauthz.load_config_dump``."""

    def __init__(self, dump: _dump.ConfigDump, mesh: Mesh | None) -> None:
        self._dump = dump
        self._mesh = mesh

    @property
    def workload(self) -> str:
        """The dump's pod, "namespace/name" (from the bootstrap's node metadata)."""
        return self._dump.workload.key

    @overload
    def check(
        self,
        request: RequestData,
        *,
        ext_authz: ExtAuthzAssumption = "deny",
        trace: bool = True,
    ) -> ProxyOutcome: ...

    @overload
    def check(
        self,
        request: Sequence[RequestData],
        *,
        ext_authz: ExtAuthzAssumption = "deny",
        trace: bool = True,
    ) -> list[ProxyOutcome]: ...

    def check(
        self,
        request: RequestData | Sequence[RequestData],
        *,
        ext_authz: ExtAuthzAssumption = "deny",
        trace: bool = True,
    ) -> ProxyOutcome | list[ProxyOutcome]:
        """Decide requests against the dump's filters, as ``meshauthz check
        --config-dump`` does. The destination is the dump's pod: "to" gives the
        port (``"ns/name:PORT"``, or "port"); a caller named as a workload needs
        the mesh given to ``load_config_dump``."""
        specs, single = _specs(request)
        snapshot = self._mesh.snapshot if self._mesh is not None else None
        out = []
        for s in specs:
            r, d, info = _dump.decide_in_dump(
                self._dump, s, snapshot, ext_authz=ext_authz, trace=trace
            )
            out.append(ProxyOutcome(d, r, info))
        return out[0] if single else out


def load(
    paths: PathArg | Iterable[PathArg],
    *,
    mesh_config: MeshConfigArg = None,
    namespace: str | None = None,
    exclude: Sequence[str] = (),
) -> Mesh:
    """Load manifests (files, directories; ``"-"`` for standard input), validate them
    with Istio's rules and build the mesh. Raises InvalidInput (with ``.findings``)
    when Istio would reject an object, InputError when the input cannot be read.
    ``mesh_config``: a MeshConfig file or the ``istio`` ConfigMap (otherwise the
    ``istio`` ConfigMap among the inputs, or Istio's defaults). ``namespace`` and
    ``exclude``: the command line's ``-n`` and ``--exclude``."""
    return Mesh(load_mesh(paths, mesh_config=mesh_config, namespace=namespace, exclude=exclude))


def load_config_dump(path: str | os.PathLike[str], *, mesh: Mesh | None = None) -> Proxy:
    """Read a proxy's Envoy config dump (``"-"`` for standard input). ``mesh``
    resolves callers and Services named in requests, as ``check --config-dump -f``."""
    return Proxy(_dump.load_config_dump(os.fspath(path)), mesh)


__all__ = [
    "Mesh",
    "Outcome",
    "Proxy",
    "ProxyOutcome",
    "RequestData",
    "load",
    "load_config_dump",
]
