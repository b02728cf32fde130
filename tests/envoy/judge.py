"""meshauthz's side of the comparison, and the comparison itself.

A *case* is one set of built filters (a ``Prepared`` destination: the filters
meshauthz built, the path normalization, the workload's address) and one
request. meshauthz decides it with the decision engine; the same filters run
in a real Envoy (``harness.py``); both answers are reduced to the same
observable form (``Observed``) and compared field by field:

* ``status``: 200 / 403 / 400 ... for HTTP, ``connected`` / ``connection reset`` for TCP;
* ``body``: ``RBAC: access denied`` for an RBAC denial, the direct response's ``ok``;
* ``details``: Envoy's ``rbac_access_denied_matched_policy[<policy or none>]``
  for an RBAC denial (the deciding Envoy policy), ``direct_response`` for an
  allowed HTTP request;
* ``rbac``: the RBAC filters' dynamic metadata (shadow/dry-run engine results and
  effective policies, enforced results), which meshauthz's Decision reports
  as ``dry_run``;
* ``common``: ``envoy.common`` (``access_log_hint``, the AUDIT hint, which is
  ``Decision.audit``).

The Decision itself is also checked against the metadata (dry-run results and
audit as the Decision reports them), so the whole Decision is compared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import msgspec.structs

from meshauthz.decide.decision import Decision
from meshauthz.decide.engine import Decider, Prepared, PreparedStage
from meshauthz.decide.request import Request
from meshauthz.decide.view import request_view
from meshauthz.envoy.rbac.evaluate import compile_filter
from meshauthz.envoy.rbac.model import HttpRbacFilter, NetworkRbacFilter
from meshauthz.mesh import MeshSnapshot, MeshWorkload
from meshauthz.translate import BuildResult, naming
from meshauthz.translate.hcm import path_options

from .harness import CONNECTED, RESET, Observed, Probe

RBAC_NS = ("envoy.filters.http.rbac", "envoy.filters.network.rbac")
RBAC_STAGES = ("CUSTOM", "AUDIT", "DENY", "ALLOW")


def prepared_from_build(
    base: Prepared,
    result: BuildResult,
    *,
    address: str | None = None,
    port: int | None = None,
    normalization: str | None = None,
) -> Prepared:
    """``base`` with other built filters (e.g. built with a golden test's
    trust domains), destination address, port or path normalization."""
    custom: list[PreparedStage] = []
    rest: list[PreparedStage] = []
    for bf in result.filters:
        compiled = None
        if isinstance(bf.filter, HttpRbacFilter | NetworkRbacFilter):
            compiled = compile_filter(bf.filter)
        (custom if bf.stage == "CUSTOM" else rest).append(PreparedStage(bf, compiled))
    workload = base.workload
    if address is not None:
        workload = msgspec.structs.replace(workload, address=address)
    return dataclasses.replace(
        base,
        workload=workload,
        build=result,
        custom=custom,
        rest=rest,
        port=base.port if port is None else port,
        normalization=base.normalization if normalization is None else normalization,
        path_options=base.path_options if normalization is None else path_options(normalization),
    )


def request_for(probe: Probe, workload: MeshWorkload, protocol: Literal["http", "tcp"]) -> Request:
    """The meshauthz Request for what ``probe`` puts on the wire."""
    return Request(
        destination=workload,
        port=probe.dest_port,
        protocol=protocol,
        source_principal=probe.principal,
        source_namespace=None,
        source_ip=probe.source_ip,
        remote_ip=None,  # derived from X-Forwarded-For as the sidecar does
        method=probe.method,
        path=probe.path,
        host=probe.host,
        headers=tuple((k.lower(), v) for k, v in probe.headers),
        sni=probe.sni or "",
    )


def decide(
    prepared: Prepared,
    request: Request,
    metadata: Mapping[str, Mapping[str, Any]] | None = None,
    ext_authz: Literal["deny", "allow"] = "deny",
) -> tuple[Decision, dict[str, dict[str, Any]]]:
    """meshauthz's decision, and the dynamic metadata its filters wrote.

    ``metadata`` is dynamic metadata present before AUDIT/DENY/ALLOW (what
    jwt_authn writes), as the harness's Lua filter sets it in Envoy."""
    view = request_view(prepared, request)
    outcome, written = prepared.runner.outcome_and_metadata(view, ext_authz, metadata)
    return Decision.of(outcome, request), written


def decide_with(decider: Decider, request: Request) -> tuple[Decision, dict[str, dict[str, Any]]]:
    prepared = decider.prepare(request.destination, request.port, request.protocol)
    return decide(prepared, request, None, decider.ext_authz)


def expected(decision: Decision, metadata: Mapping[str, Any], http: bool) -> Observed:
    """meshauthz's answer in the form the harness observes Envoy's."""
    rbac: dict[str, Any] = {}
    for ns in RBAC_NS:
        rbac.update(metadata.get(ns, {}))
    common = dict(metadata.get("envoy.common", {}))
    if decision.allowed:
        if http:
            body = "" if decision.request.get("method") == "HEAD" else "ok"
            return Observed(200, body, "direct_response", rbac, common)
        return Observed(CONNECTED, None, None, rbac, common)
    details = None
    if decision.stage in RBAC_STAGES:
        details = f"rbac_access_denied_matched_policy[{decision.envoy_policy or 'none'}]"
    body = decision.body
    if http and body is None and decision.stage in RBAC_STAGES:
        body = ""  # HEAD: headers only
    return Observed(decision.status, body, details, rbac, common)


def ext_authz_denied(decision: Decision) -> bool:
    return decision.stage == "CUSTOM" and not decision.allowed and decision.envoy_policy is not None


def compare(
    got: Observed, want: Observed, decision: Decision, *, ext_authz_sent: bool = False
) -> list[str]:
    """The differences between Envoy's answer (``got``) and meshauthz's (``want``)."""
    diffs: list[str] = []
    if got.status != want.status:
        diffs.append(f"status: envoy {got.status!r}, meshauthz {want.status!r}")
    if got.status == want.status:
        if decision.stage == "normalization" or ext_authz_sent:
            pass  # Envoy's own refusal (codec or ext_authz server): status only
        else:
            if got.details != want.details:
                diffs.append(f"details: envoy {got.details!r}, meshauthz {want.details!r}")
            if got.body != want.body:
                diffs.append(f"body: envoy {got.body!r}, meshauthz {want.body!r}")
    if decision.stage != "normalization":
        if got.rbac != want.rbac:
            diffs.append(f"rbac metadata: envoy {got.rbac}, meshauthz {want.rbac}")
        if got.common != want.common:
            diffs.append(f"envoy.common: envoy {got.common}, meshauthz {want.common}")
        diffs += _decision_vs_metadata(decision, got)
    return diffs


def _decision_vs_metadata(decision: Decision, got: Observed) -> list[str]:
    """The Decision's dry-run results and audit flag against Envoy's metadata."""
    diffs = []
    envoy_dry: dict[str, tuple[Any, Any]] = {}
    stages = (
        (naming.DRY_RUN_ALLOW_STAT_PREFIX, "ALLOW"),
        (naming.DRY_RUN_DENY_STAT_PREFIX, "DENY"),
        ("", "AUDIT"),
    )
    for prefix, stage in stages:  # AUDIT (LOG) shadow rules have no stat prefix
        res = got.rbac.get(prefix + "shadow_engine_result")
        if res is not None:
            envoy_dry[stage] = (res, got.rbac.get(prefix + "shadow_effective_policy_id"))
    mine = {d.stage: (d.result, d.envoy_policy) for d in decision.dry_run}
    if envoy_dry != mine:
        diffs.append(f"dry run: envoy {envoy_dry}, Decision {mine}")
    audit = got.common.get("access_log_hint") is True
    if audit != decision.audit:
        diffs.append(f"audit: envoy {audit}, Decision {decision.audit}")
    return diffs


def snapshot_workload(snapshot: MeshSnapshot, key: str) -> MeshWorkload:
    return snapshot.workload(key)


__all__ = [
    "RESET",
    "compare",
    "decide",
    "decide_with",
    "expected",
    "prepared_from_build",
    "request_for",
]
