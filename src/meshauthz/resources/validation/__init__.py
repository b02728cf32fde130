"""Istio's validation of the security resources, with Istio's accept/reject outcome.

Two layers, as in a cluster:

* the CRD schema (``crd``): what the Kubernetes API server enforces from Istio's
  CRDs beyond types: item and length limits, patterns and the CEL rules;
* Istio's validating webhook (``authz``, ``authn``, ``common``):
  ValidateAuthorizationPolicy, ValidateRequestAuthentication and
  ValidatePeerAuthentication with the helpers they call.

An object is rejected when either layer reports an error. Istio's warnings are
findings of severity "warning"; they never reject. When both layers say the
same thing about the same field, one finding is kept.

Finding codes (stable; the same code may come from either layer):

=============================================== ========= =====================================
code                                            severity  meaning
=============================================== ========= =====================================
dry-run-annotation                              error     istio.io/dry-run is not a boolean, is
                                                          on a non-ALLOW/DENY policy, or is on
                                                          another kind
reserved-annotation                             error     an internal.istio.io annotation is set
selector-and-target-ref                         error     more than one of selector, targetRef,
                                                          targetRefs
selector-empty-key                              error     a matchLabels key is empty
selector-wildcard                               error     '*' in a matchLabels key or value
selector-no-labels                              warning   selector without labels
target-ref-name                                 error     targetRef without a name
target-ref-namespace                            error     targetRef with a namespace
target-ref-kind                                 error     targetRef to a kind Istio does not
                                                          support, or an empty kind
action-without-rules                            error     DENY or CUSTOM policy without rules
custom-provider-name                            error     CUSTOM policy without provider.name
custom-unsupported-field                        error     a source field or when key that CUSTOM
                                                          cannot use
provider-without-custom                         error     provider set on a non-CUSTOM policy
missing-rule-source                             error     from[] entry without a source
empty-rule-source                               error     source with no field set
missing-rule-operation                          error     to[] entry without an operation
empty-rule-operation                            error     operation with no field set
service-accounts-with-principals-or-namespaces  error     serviceAccounts combined with
                                                          principals or namespaces
empty-value                                     error     an empty string in a list of values
invalid-ip-block                                error     not an IP address or CIDR (Go's rules)
invalid-service-account                         error     not 'sa' or 'ns/sa', wildcard, too
                                                          many or too long
invalid-trust-domain                            error     bad wildcard or '/' in a trust domain
invalid-port                                    error     not a port number in range
invalid-path-template                           error     misuse of {*} / {**} path templates
empty-condition-key                             error     when[].key is empty
condition-without-values                        error     when[] without values or notValues
invalid-condition-key                           error     unknown, unsupported or malformed key
invalid-condition-value                         error     a value the key does not accept
deny-http-only                                  warning   DENY rule with only HTTP attributes:
                                                          it denies all TCP traffic
missing-issuer-and-jwks-uri                     error     JWT rule with neither issuer nor
                                                          jwksUri
invalid-jwks-uri                                error     jwksUri not an http(s) URL
invalid-jwks                                    error     jwks cannot be parsed
jwks-private-key                                warning   jwks holds private key material
multiple-jwks-sources                           error     more than one of jwks, jwksUri,
                                                          jwks_uri
invalid-output-claim-to-header                  error     claim or header empty, or a bad header
                                                          name
invalid-timeout                                 error     JWT timeout not a duration >= 1ms in
                                                          whole milliseconds
mesh-command-annotation                         warning   a workload asks 'meshauthz mesh up' to
                                                          run a command (only with
                                                          --run-commands)
port-level-mtls-without-selector                error     portLevelMtls without selector labels
empty-port-level-mtls                           error     portLevelMtls present but empty
too-many-items                                  error     a CRD maxItems / maxProperties limit
too-few-items                                   error     a CRD minProperties limit
too-long                                        error     a CRD maxLength limit
too-short                                       error     a CRD minLength limit
pattern-mismatch                                error     a CRD pattern
duplicate-object                                error     the same kind, namespace and name
                                                          defined twice (a cluster keeps one)
removed-gateway-name-label                      warning   a selector on istio.io/gateway-name,
                                                          which istiod's gateways lost in 1.24
=============================================== ========= =====================================

Findings from the loader (``resources.loader``) and from the built mesh
(``translate.provider_findings``, in ``validate`` and on the standard error of
``check``, ``explain`` and ``build``):

=============================================== ========= =====================================
namespace-mismatch                              error     an object's namespace differs from
                                                          -n/--namespace
helm-template                                   info      an unrendered Helm template, skipped
invalid-name                                    error     metadata.name or generateName that the
                                                          API server refuses for the kind, or a
                                                          generateName without a name
                                                          (``objectmeta``)
invalid-namespace                               error     metadata.namespace not a DNS-1123 label
invalid-label                                   error     a label key or value Kubernetes refuses
invalid-annotation                              error     an annotation key Kubernetes refuses, or
                                                          annotations over 256 KiB in all
schema                                          error     a wrong type, a missing required field
                                                          or an unknown field (metadata's too)
custom-provider-unknown                         warning   a CUSTOM policy's provider is not in
                                                          the mesh config
custom-provider-rejected                        warning   a CUSTOM policy's provider is one
                                                          istiod's builder rejects
=============================================== ========= =====================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from meshauthz.resources.findings import Finding
from meshauthz.resources.objects import (
    AuthorizationPolicy,
    Manifests,
    PeerAuthentication,
    RequestAuthentication,
    Resource,
)
from meshauthz.resources.validation.authn import (
    validate_peer_authentication,
    validate_request_authentication,
)
from meshauthz.resources.validation.authz import validate_authorization_policy
from meshauthz.resources.validation.crd import validate_crd
from meshauthz.resources.validation.releases import release_findings
from meshauthz.resources.validation.report import Report
from meshauthz.resources.validation.workload import validate_workload

if TYPE_CHECKING:
    from meshauthz.resources.reuse import LoadRecord


def validate_resource(resource: Resource) -> list[Finding]:
    """Findings (errors and warnings) for one security resource; [] for other kinds."""
    report = Report(resource)
    if isinstance(resource, AuthorizationPolicy):
        validate_authorization_policy(resource, report)
    elif isinstance(resource, RequestAuthentication):
        validate_request_authentication(resource, report)
    elif isinstance(resource, PeerAuthentication):
        validate_peer_authentication(resource, report)
    else:
        return []
    validate_crd(resource, report, resource.written())
    return report.findings


def validate(
    manifests: Manifests,
    record: LoadRecord | None = None,
    known: Mapping[Resource, Sequence[Finding]] | None = None,
) -> list[Finding]:
    """Istio's validation of every AuthorizationPolicy, RequestAuthentication and
    PeerAuthentication in ``manifests``, in load order, the objects defined twice,
    then meshauthz's notes about workloads. ``record``: the load's record, whose
    objects validated before are not validated again (``resources.reuse``).
    ``known``: ``validate_resource`` of objects the loader validated already."""
    known = known or {}
    findings: list[Finding] = []
    for resource in (
        *manifests.peer_authentications,
        *manifests.request_authentications,
        *manifests.authorization_policies,
    ):
        found = known.get(resource)
        if found is None:
            found = (
                validate_resource(resource)
                if record is None
                else record.validated(resource, validate_resource)
            )
        findings.extend(found)
    findings.extend(duplicates(manifests))
    findings.extend(release_findings(manifests))
    for workload in manifests.workloads:
        report = Report(workload)
        validate_workload(workload, report)
        findings.extend(report.findings)
    return findings


def duplicates(manifests: Manifests) -> list[Finding]:
    """An object defined twice (same group, kind, namespace and name, e.g. in two
    files): a cluster keeps one, the last applied, and which one that is depends on
    the order of ``kubectl apply``; meshauthz refuses to guess or to merge them."""
    first: dict[tuple[str, str, str, str], Resource] = {}
    out: list[Finding] = []
    for r in manifests.all():
        group = r.api_version.rpartition("/")[0]
        key = (group, r.kind, r.namespace, r.name)
        seen = first.setdefault(key, r)
        if seen is r:
            continue
        where = seen.location()
        out.append(
            Finding(
                "error",
                "duplicate-object",
                f"defined twice (also at {where.file}:{where.line}): a cluster keeps only "
                "the last one applied; keep one definition",
                r.location(),
                r.kind,
                r.namespace,
                r.name,
            )
        )
    return out


def is_rejected(findings: list[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


__all__ = ["duplicates", "is_rejected", "validate", "validate_resource"]
