"""The catalogue of the analyzer's codes: one entry per code, the only place
their names, severities, descriptions and istioctl/Kiali equivalents are written.

Codes are stable: a code is never reused for another meaning. ``MA0xxx``:
Istio's own validation warnings; ``MA1xxx``: references and the checks
istioctl analyze and Kiali make; ``MA2xxx``: how a policy behaves on the
traffic (each with a witness request where one exists).
"""

from __future__ import annotations

from msgspec import Struct

from meshauthz.resources.findings import Severity

# Where each code is documented, relative to the repository root.
DOCS_PAGE = "docs/analyze.md"


class Code(Struct, frozen=True):
    code: str
    name: str  # kebab-case, for people and SARIF rule names
    severity: Severity  # the default; a finding may say more or less
    short: str  # one line
    full: str  # what is wrong and why it matters
    equivalents: tuple[str, ...] = ()  # istioctl IST#### and Kiali KIA#### codes

    @property
    def anchor(self) -> str:
        return self.code.lower()

    @property
    def doc(self) -> str:
        """The code's section of the documentation, relative to the repository root."""
        return f"{DOCS_PAGE}#{self.anchor}"

    def help_uri(self, docs_url: str) -> str:
        """The section's absolute URI, ``docs_url`` being where docs/analyze.md is served."""
        return f"{docs_url}#{self.anchor}"


_ALL = (
    Code(
        "MA0001",
        "validation-warning",
        "warning",
        "Istio's validation warns about this object.",
        "Istio accepts the object but its validating webhook or CRD schema warns about it "
        "(meshauthz validate lists the same warning).",
        ("IST0133",),
    ),
    Code(
        "MA1001",
        "no-matching-workloads",
        "warning",
        "The policy's selector or targetRefs match no workload.",
        "No workload of the mesh is selected by the policy's selector (or its namespace has no "
        "workload, or no Gateway or Service its targetRefs name exists): the policy has no effect, "
        "often because of a typo in a label.",
        ("IST0127", "KIA0004"),
    ),
    Code(
        "MA1002",
        "unknown-namespace",
        "error",
        "A namespace in the policy's sources does not exist.",
        "A value of source.namespaces or notNamespaces matches no Namespace of the input: the "
        "value never matches a caller (or, negated, matches every caller).",
        ("IST0101", "KIA0101"),
    ),
    Code(
        "MA1003",
        "ineffective-selector",
        "warning",
        "A selector on a Kubernetes Gateway has no effect; use targetRefs.",
        "The selector selects the pods of a Gateway API gateway. Gateways are meant to be "
        "targeted by targetRefs; waypoints ignore selectors altogether.",
        ("IST0166",),
    ),
    Code(
        "MA1004",
        "unknown-service-account",
        "warning",
        "A principal or service account names a service account that does not exist.",
        "The principal's (or serviceAccounts') namespace and service account match no "
        "ServiceAccount of the input and no workload runs as it: no caller has that identity.",
        ("KIA0106",),
    ),
    Code(
        "MA1005",
        "unknown-trust-domain",
        "warning",
        "A principal's trust domain is neither the mesh's nor one of its aliases.",
        "Istio rewrites principals in cluster.local and the mesh's trust-domain aliases to the "
        "mesh trust domain; a principal in any other trust domain matches only callers from "
        "another mesh.",
        ("KIA0108",),
    ),
    Code(
        "MA1006",
        "spiffe-principal",
        "error",
        "A principal is written with spiffe://, which Istio adds itself.",
        "Istio prefixes every principal value with spiffe://; a value already starting with it "
        "becomes spiffe://spiffe://... and matches no caller.",
    ),
    Code(
        "MA1007",
        "unknown-method",
        "warning",
        "A method is not an HTTP method.",
        "Methods are compared with the request's :method, case-sensitively: a value that is not "
        "an HTTP method (or not in upper case, or a gRPC name that is not fully qualified) "
        "matches no request.",
        ("KIA0102",),
    ),
    Code(
        "MA1008",
        "unknown-host",
        "warning",
        "A host names no Service of the mesh.",
        "The hosts value matches the hostname of no Service (short name, namespace-qualified "
        "name or FQDN): requests for it do not reach the selected workloads.",
        ("KIA0104",),
    ),
    Code(
        "MA1009",
        "unknown-custom-provider",
        "error",
        "A CUSTOM policy names an extension provider the mesh config does not define.",
        "istiod cannot build the ext_authz filter and denies every request the CUSTOM policy's "
        "rules match instead (fails closed).",
    ),
    Code(
        "MA1010",
        "negative-condition",
        "warning",
        "istiod would set a negative ZtunnelAccepted or WaypointAccepted condition.",
        "In ambient mode istiod reports on the policy's status whether ztunnel and the waypoint "
        "could apply it. ztunnel cannot apply AUDIT, CUSTOM or (without the feature flag) "
        "dry-run policies; a waypoint rejects a policy whose targetRefs it cannot bind. Part or "
        "all of the policy is not enforced where it was meant.",
        ("IST0171",),
    ),
    Code(
        "MA1011",
        "l7-policy-without-waypoint",
        "warning",
        "An L7 AuthorizationPolicy in an ambient namespace whose target uses no waypoint.",
        "Only a waypoint enforces HTTP fields in ambient mode; ztunnel drops them (an ALLOW rule "
        "then matches more, a DENY rule less or nothing). The policy's target (Service, "
        "workloads or namespace) is not enrolled in a waypoint with istio.io/use-waypoint.",
        ("KIA0109",),
    ),
    Code(
        "MA1012",
        "l7-policy-without-targetrefs",
        "warning",
        "An L7 AuthorizationPolicy in ambient mode uses a selector, which waypoints ignore.",
        "Waypoints take only policies attached with targetRefs (to a Service or Gateway); a "
        "selector policy goes to ztunnel, which drops its HTTP fields.",
        ("KIA0110",),
    ),
    Code(
        "MA2001",
        "deny-all-over-allow",
        "error",
        "A DENY rule matches every request, so the ALLOW policies of the workload are dead.",
        "DENY policies are evaluated before ALLOW policies. A DENY rule that matches every "
        "request ({}, or only wildcards) denies what any ALLOW policy on the same workload "
        "allows. To deny by default, use an ALLOW policy with no rules instead.",
    ),
    Code(
        "MA2002",
        "split-from-to",
        "warning",
        "A rule's from and to are written as two rules.",
        "Rules are ORed: a rule with only 'from' and another with only 'to' match callers of the "
        "first from anywhere, and the second's operations from anyone. One rule with both "
        "(no '-' before 'to') was almost certainly meant.",
    ),
    Code(
        "MA2003",
        "identity-on-plaintext",
        "warning",
        "Identity fields on a port that accepts plaintext.",
        "principals, namespaces, serviceAccounts, trustDomains and the source.* and "
        "connection.sni conditions need the caller's mTLS certificate. On a port whose "
        "PeerAuthentication mode is PERMISSIVE (the default) or DISABLE, a plaintext caller has "
        "none: a DENY on these fields does not stop it, an ALLOW never matches it.",
        ("KIA0105",),
    ),
    Code(
        "MA2004",
        "http-fields-on-tcp",
        "warning",
        "HTTP-only fields on a TCP port.",
        "On a TCP port istiod cannot match hosts, methods, paths, request principals, headers "
        "or JWT claims: it drops an ALLOW rule that uses them, and leaves them out of a DENY "
        "rule, which then denies more than written (often every connection).",
    ),
    Code(
        "MA2005",
        "host-bypass",
        "warning",
        "A hosts value that requests slip past (a port, a trailing dot).",
        "hosts is compared with the Host header as sent, case-insensitively but without "
        "removing a ':port' or a trailing dot. Clients calling a Service on a port other than "
        "80 send 'host:port': an ALLOW naming only the host never matches them, a DENY is "
        "bypassed. List 'host:*' or both forms.",
    ),
    Code(
        "MA2006",
        "deny-path-bypass",
        "warning",
        "A DENY on paths that a request slips past under the mesh's path normalization.",
        "The DENY compares the path after the proxy's normalization (meshConfig "
        "pathNormalization). A raw path such as '//admin', '/admin;x', '/ADMIN' or "
        "'/a%2Fb' is not rewritten by every mode, does not match the DENY, and many "
        "applications still serve it as the denied path.",
    ),
    Code(
        "MA2007",
        "allow-not-paths",
        "warning",
        "An ALLOW with notPaths allows every other path, including variants of the listed ones.",
        "notPaths matches every path that is not listed, so the ALLOW admits any spelling of a "
        "listed path that the normalization does not rewrite ('//admin', '/ADMIN'). Allow the "
        "paths that are meant (paths) and deny the others.",
    ),
    Code(
        "MA2008",
        "remote-ip-on-sidecar",
        "warning",
        "remoteIpBlocks or remote.ip on a sidecar, where X-Forwarded-For is client-controlled.",
        "A sidecar takes the remote address from the X-Forwarded-For header the caller sends: "
        "any caller can claim any address. Match the peer's address with ipBlocks, or use "
        "remoteIpBlocks on an ingress gateway that sets numTrustedProxies.",
    ),
    Code(
        "MA2009",
        "jwt-without-requestauthentication",
        "warning",
        "requestPrincipals or request.auth conditions without a RequestAuthentication.",
        "No RequestAuthentication applies to the workload, so no token is ever validated: "
        "requestPrincipals and request.auth.* never match (an ALLOW rule is dead, a DENY on "
        "notRequestPrincipals denies every request).",
    ),
    Code(
        "MA2010",
        "optional-token",
        "warning",
        "A RequestAuthentication without an AuthorizationPolicy requiring a token.",
        "A RequestAuthentication only rejects invalid tokens: a request without any token is "
        "accepted. Require one with an AuthorizationPolicy (ALLOW with requestPrincipals: "
        '["*"] or DENY with notRequestPrincipals: ["*"]).',
    ),
    Code(
        "MA2011",
        "root-allow-under-deny",
        "warning",
        "An ALLOW in the root namespace cannot exempt what a DENY policy rejects.",
        "A policy in the root namespace applies to every namespace, but it does not override "
        "the others: DENY policies are evaluated first wherever they are, so the requests this "
        "ALLOW lists are still denied.",
    ),
    Code(
        "MA2012",
        "waypoint-identity-denied",
        "warning",
        "An ALLOW at an ambient workload that denies the traffic its waypoint forwards.",
        "Traffic to a Service enrolled in a waypoint reaches the workload from the waypoint: "
        "the workload's ztunnel sees the waypoint's identity, not the client's. A selector or "
        "namespace ALLOW none of whose rules admits the waypoint denies all of that traffic.",
    ),
    Code(
        "MA2013",
        "ztunnel-deny-no-op",
        "warning",
        "A DENY that ztunnel enforces with no rule left once its HTTP fields are dropped.",
        "istiod sends a selector or namespace policy to ztunnel without its HTTP fields; a DENY "
        "rule that has only HTTP fields is dropped, and when none is left the DENY never "
        "matches: the requests it names are not denied.",
    ),
    Code(
        "MA2014",
        "never-decides",
        "warning",
        "A rule or policy whose removal changes no decision.",
        "The symbolic engine shows that the mesh without this rule (or policy) decides every "
        "request on every port it applies to as the mesh with it does: it matches no request "
        "(empty match), only matches HTTP on TCP ports (unreachable on this port's protocol), "
        "every request it matches is denied by a DENY first (shadowed by a DENY), or every "
        "request it matches is decided the same by other rules (covered by other rules).",
    ),
    Code(
        "MA2015",
        "always-denies",
        "info",
        "A workload port that denies every request.",
        "No request of any caller, method, path or header reaches an allowing end of the "
        "port's chain: the port is closed to all traffic (intended for a lockdown, a mistake "
        "when ALLOW rules were meant to open it).",
    ),
    Code(
        "MA2016",
        "always-allows",
        "info",
        "A workload port with policies that allows every request.",
        "Policies apply to the port but no request is denied there: a DENY that never matches "
        "on this port, or an ALLOW that matches everything.",
    ),
)

CODES: dict[str, Code] = {c.code: c for c in _ALL}

# Codes from other tools that users may name (suppressions): each maps to ours.
EQUIVALENT_OF: dict[str, tuple[str, ...]] = {}
for _c in _ALL:
    for _e in _c.equivalents:
        EQUIVALENT_OF[_e] = (*EQUIVALENT_OF.get(_e, ()), _c.code)

__all__ = ["CODES", "DOCS_PAGE", "EQUIVALENT_OF", "Code"]
