"""istiod's conversion of AuthorizationPolicy and PeerAuthentication into
ztunnel's ``Authorization`` (pilot/pkg/serviceregistry/ambient/authorization.go
and policies.go), with the status istiod writes on the policy.

Pinned by Istio's ``TestRBACConvert`` goldens and
``TestConvertAuthorizationPolicyStatus`` table (tests/ambient/).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import TypeVar

from msgspec import Struct

from meshauthz.ambient.authorization import (
    Action,
    Address,
    Authorization,
    Clause,
    Match,
    Rule,
    Scope,
    ServiceAccountMatch,
    StringMatch,
)
from meshauthz.ambient.flags import DEFAULT_FLAGS, AmbientFlags
from meshauthz.mesh.selection import target_refs
from meshauthz.mesh.snapshot import creation_time
from meshauthz.resources.istio import (
    AuthorizationPolicySpec,
    Condition,
    MutualTls,
    Operation,
    Source,
)
from meshauthz.resources.istio import Rule as PolicyRule
from meshauthz.resources.objects import AuthorizationPolicy, PeerAuthentication

# authorization.go staticStrictPolicyName ("_" is illegal in Kubernetes names).
STATIC_STRICT_POLICY_NAME = "istio_converted_static_strict"
# model.GetAmbientPolicyConfigName (pilot/pkg/model/authentication.go).
CONVERTED_PEER_AUTHENTICATION_PREFIX = "converted_peer_authentication_"
# policies.go implicitWaypointPolicyName.
IMPLICIT_WAYPOINT_POLICY_PREFIX = "istio_allow_waypoint_"

# authorization.go: the status texts istiod writes (condition ZtunnelAccepted).
HTTP_RULE_FMT = (
    "ztunnel does not support HTTP attributes (found: {}). "
    "In ambient mode you must use a waypoint proxy to enforce HTTP rules. {}"
)
HTTP_DENY_NO_EFFECT = (
    "After omitting unsupported HTTP attributes, this DENY policy has no enforceable rules at "
    "ztunnel and will have no effect. Deploy a waypoint proxy and use a targetRef to enforce "
    "this policy."
)
HTTP_DENY_MIXED = (
    "DENY policy with HTTP attributes is enforced without the HTTP rules. "
    "This will be more restrictive than requested."
)
HTTP_ALLOW_RULE = (
    "Within an ALLOW policy, rules matching HTTP attributes are omitted. "
    "This will be more restrictive than requested."
)
# model.ZtunnelAccepted condition when there is no status message (service.go).
ACCEPTED_MESSAGE = "attached to ztunnel"

# authorization.go l4WhenAttributes.
L4_WHEN_KEYS = frozenset(
    {"source.ip", "source.namespace", "source.principal", "destination.ip", "destination.port"}
)

_PRESENCE_ONLY_NOT_PRINCIPALS = Match(not_principals=(StringMatch("presence"),))


class StatusMessage(Struct, frozen=True):
    """``model.StatusMessage``: the reason and message of the ZtunnelAccepted condition."""

    reason: str
    message: str


class ZtunnelCondition(Struct, frozen=True):
    """The ``ZtunnelAccepted`` condition istiod writes on an AuthorizationPolicy
    (``WorkloadAuthorization.GetConditions``): Bound is whether ztunnel gets it."""

    status: bool
    reason: str
    message: str


class Conversion(Struct, frozen=True):
    """One AuthorizationPolicy as istiod hands it to ztunnel."""

    authorization: Authorization | None  # None: not sent to ztunnel
    status: StatusMessage | None
    # The HTTP attributes istiod found and dropped (sorted).
    dropped_http: tuple[str, ...] = ()

    @property
    def condition(self) -> ZtunnelCondition | None:
        """None when istiod writes no ztunnel condition (targetRefs policies)."""
        if self.authorization is None and self.status is None:
            return None
        bound = self.authorization is not None
        if self.status is not None:
            return ZtunnelCondition(bound, self.status.reason, self.status.message)
        return ZtunnelCondition(bound, "Accepted", ACCEPTED_MESSAGE)


# --------------------------------------------------------------------------- AuthorizationPolicy


def convert_authorization_policy(
    root_namespace: str, policy: AuthorizationPolicy, flags: AmbientFlags = DEFAULT_FLAGS
) -> Conversion:
    """``convertAuthorizationPolicy``."""
    spec = policy.spec
    dry_run = policy.dry_run
    if dry_run and not flags.dry_run_authorization:
        return Conversion(
            None,
            StatusMessage(
                "UnsupportedValue",
                f'found policy "{policy.namespace}/{policy.name}" using dry-run annotation, '
                "but support for ambient dry-run authorizationPolicies isn't enabled",
            ),
        )
    # "TargetRef is not intended for ztunnel"
    if target_refs(spec.target_ref, spec.target_refs):
        return Conversion(None, None)
    scope: Scope = "WORKLOAD_SELECTOR"
    if spec.selector is None:
        scope = "GLOBAL" if policy.namespace == root_namespace else "NAMESPACE"
    if spec.action not in ("ALLOW", "DENY"):
        return Conversion(
            None,
            StatusMessage("UnsupportedValue", f"ztunnel does not support the {spec.action} action"),
        )
    action: Action = "DENY" if spec.action == "DENY" else "ALLOW"
    rules: list[Rule] = []
    origin: list[int] = []
    found: set[str] = set()
    for i, rule in enumerate(spec.rules):
        clauses, l7 = _handle_rule(action, rule, policy.namespace)
        if clauses is not None:
            rules.append(clauses)
            origin.append(i)
        found.update(l7)
    auth = Authorization(
        name=policy.name,
        namespace=policy.namespace,
        scope=scope,
        action=action,
        rules=tuple(rules),
        dry_run=dry_run,
        source=f"AuthorizationPolicy {policy.key}",
        origin_rules=tuple(origin),
    )
    if not found:
        return Conversion(auth, None)
    if action == "DENY" and not has_effective_rules(auth.rules):
        boilerplate = HTTP_DENY_NO_EFFECT
    elif action == "DENY":
        boilerplate = HTTP_DENY_MIXED
    else:
        boilerplate = HTTP_ALLOW_RULE
    dropped = tuple(sorted(found))
    message = HTTP_RULE_FMT.format(", ".join(dropped), boilerplate)
    return Conversion(auth, StatusMessage("UnsupportedValue", message), dropped)


def http_attributes(spec: AuthorizationPolicySpec) -> tuple[str, ...]:
    """The HTTP attributes (L7) a policy uses, as istiod names them in its status (sorted)."""
    found: set[str] = set()
    for rule in spec.rules:
        for to in rule.to:
            found.update(_http_operations(to.operation or Operation()))
        for fr in rule.from_:
            found.update(_http_sources(fr.source or Source()))
        found.update(w.key for w in rule.when if w.key not in L4_WHEN_KEYS)
    return tuple(sorted(found))


def has_effective_rules(rules: Sequence[Rule]) -> bool:
    """``hasEffectiveRules``: some rule can fire at ztunnel (a rule without
    clauses matches everything; a clause of only empty matches never does)."""
    for rule in rules:
        if not rule:
            return True
        if all(any(not m.is_empty for m in clause) for clause in rule):
            return True
    return False


def _http_operations(op: Operation) -> list[str]:
    names = [
        ("hosts", op.hosts),
        ("notHosts", op.not_hosts),
        ("methods", op.methods),
        ("notMethods", op.not_methods),
        ("paths", op.paths),
        ("notPaths", op.not_paths),
    ]
    return [n for n, v in names if v]


def _http_sources(src: Source) -> list[str]:
    names = [
        ("remoteIpBlocks", src.remote_ip_blocks),
        ("notRemoteIpBlocks", src.not_remote_ip_blocks),
        ("requestPrincipals", src.request_principals),
        ("notRequestPrincipals", src.not_request_principals),
    ]
    return [n for n, v in names if v]


def _handle_rule(action: Action, rule: PolicyRule, namespace: str) -> tuple[Rule | None, list[str]]:
    """``handleRule``: the rule's clauses (``to``, ``from``, one per ``when``)."""
    l7: list[str] = []
    to_matches: list[Match] = []
    for to in rule.to:
        op = to.operation or Operation()
        l7 += _http_operations(op)
        to_matches.append(
            Match(
                destination_ports=string_to_port(op.ports),
                not_destination_ports=string_to_port(op.not_ports),
            )
        )
    from_matches: list[Match] = []
    for fr in rule.from_:
        src = fr.source or Source()
        l7 += _http_sources(src)
        from_matches.append(
            Match(
                source_ips=string_to_ip(src.ip_blocks),
                not_source_ips=string_to_ip(src.not_ip_blocks),
                namespaces=string_to_match(src.namespaces),
                not_namespaces=string_to_match(src.not_namespaces),
                service_accounts=_service_accounts(src.service_accounts, namespace),
                not_service_accounts=_service_accounts(src.not_service_accounts, namespace),
                principals=string_to_match(src.principals),
                not_principals=string_to_match(src.not_principals),
            )
        )
    clauses: list[Clause] = []
    if to_matches:
        clauses.append(tuple(to_matches))
    if from_matches:
        clauses.append(tuple(from_matches))
    for when in rule.when:
        if when.key not in L4_WHEN_KEYS:
            l7.append(when.key)
        clauses.append((_when_match(when),))
    if action == "ALLOW" and l7:
        # "L7 policies never match for ALLOW"; a DENY keeps its (possibly empty) matches.
        return None, l7
    return tuple(clauses), l7


T = TypeVar("T")


def _when_match(when: Condition) -> Match:
    def pick(key: str, invert: bool, f: Callable[[Sequence[str]], tuple[T, ...]]) -> tuple[T, ...]:
        if when.key != key:
            return ()
        return f(when.not_values if invert else when.values)

    return Match(
        namespaces=pick("source.namespace", False, string_to_match),
        principals=pick("source.principal", False, string_to_match),
        source_ips=pick("source.ip", False, string_to_ip),
        destination_ports=pick("destination.port", False, string_to_port),
        destination_ips=pick("destination.ip", False, string_to_ip),
        not_namespaces=pick("source.namespace", True, string_to_match),
        not_principals=pick("source.principal", True, string_to_match),
        not_source_ips=pick("source.ip", True, string_to_ip),
        not_destination_ports=pick("destination.port", True, string_to_port),
        not_destination_ips=pick("destination.ip", True, string_to_ip),
    )


def string_to_match(values: Sequence[str]) -> tuple[StringMatch, ...]:
    """``stringToMatch``: "*" presence, "*x" suffix, "x*" prefix, else exact."""
    out: list[StringMatch] = []
    for v in values:
        if v == "*":
            out.append(StringMatch("presence"))
        elif v.startswith("*"):
            out.append(StringMatch("suffix", v[1:]))
        elif v.endswith("*"):
            out.append(StringMatch("prefix", v[:-1]))
        else:
            out.append(StringMatch("exact", v))
    return tuple(out)


def _service_accounts(values: Sequence[str], namespace: str) -> tuple[ServiceAccountMatch, ...]:
    """``stringToServiceAccountMatch``: a bare name is in the policy's namespace."""
    out: list[ServiceAccountMatch] = []
    for v in values:
        ns, sep, sa = v.partition("/")
        out.append(ServiceAccountMatch(ns, sa) if sep else ServiceAccountMatch(namespace, v))
    return tuple(out)


def string_to_port(values: Sequence[str]) -> tuple[int, ...]:
    """``stringToPort``: values that are not a port number are skipped silently."""
    out: list[int] = []
    for v in values:
        # strconv.ParseUint base 10: digits only, no sign or spaces.
        if v.isascii() and v.isdigit() and int(v) <= 65535:
            out.append(int(v))
    return tuple(out)


def string_to_ip(values: Sequence[str]) -> tuple[Address, ...]:
    """``stringToIP``: a bare address is a /32 (/128); unparsable values are skipped."""
    out: list[Address] = []
    for v in values:
        if not v:
            continue
        try:
            if "/" in v:
                addr_s, _, bits_s = v.partition("/")
                ip = ipaddress.ip_address(addr_s)
                bits = int(bits_s) if bits_s.isascii() and bits_s.isdigit() else -1
                if not 0 <= bits <= ip.max_prefixlen or (len(bits_s) > 1 and bits_s[0] == "0"):
                    continue
            else:
                ip = ipaddress.ip_address(v)
                bits = ip.max_prefixlen
        except ValueError:
            continue
        out.append(Address(ip, bits))
    return tuple(out)


# --------------------------------------------------------------------------- PeerAuthentication


def _mode(mtls: MutualTls | None) -> str:
    return "UNSET" if mtls is None else mtls.mode


def _strict(mtls: MutualTls | None) -> bool:
    return _mode(mtls) == "STRICT"


def _unset(mtls: MutualTls | None) -> bool:
    return _mode(mtls) == "UNSET"


def _lenient(mtls: MutualTls | None) -> bool:
    return _mode(mtls) in ("PERMISSIVE", "DISABLE")


def converted_peer_authentication_name(name: str) -> str:
    return CONVERTED_PEER_AUTHENTICATION_PREFIX + name


def static_strict_policy(root_namespace: str) -> Authorization:
    """The DENY of plaintext istiod sends once any PeerAuthentication exists
    (policies.go ``DefaultPolicy``)."""
    return Authorization(
        name=STATIC_STRICT_POLICY_NAME,
        namespace=root_namespace,
        scope="WORKLOAD_SELECTOR",
        action="DENY",
        rules=(((_PRESENCE_ONLY_NOT_PRINCIPALS,),),),
        source="istiod's static STRICT policy",
    )


def _port_key(port: str) -> int:
    return int(port) if port.isdigit() else -1


def convert_peer_authentication(
    root_namespace: str,
    cfg: PeerAuthentication,
    ns_cfg: PeerAuthentication | None,
    root_cfg: PeerAuthentication | None,
) -> Authorization | None:
    """``convertPeerAuthentication``: a workload PeerAuthentication with
    port-level mTLS, merged with the namespace and root ones, as a DENY."""
    pa = cfg.spec
    if cfg.namespace == root_namespace or pa.selector is None or not pa.port_level_mtls:
        return None
    mode = _mode(pa.mtls)
    ns_mtls = ns_cfg.spec.mtls if ns_cfg is not None else None
    root_mtls = root_cfg.spec.mtls if root_cfg is not None else None
    clauses: list[Clause] = []
    rules: list[Rule] = []
    if mode == "STRICT":
        clauses.append((_PRESENCE_ONLY_NOT_PRINCIPALS,))
    found_non_strict = False
    # maps.SeqStable: ports in ascending order.
    for port_s in sorted(pa.port_level_mtls, key=_port_key):
        port = _port_key(port_s)
        port_mode = _mode(pa.port_level_mtls[port_s])
        if port_mode == "STRICT":
            # Go's && binds tighter than ||: #1 || (#2a && #2b) || #3.
            if (
                _strict(pa.mtls)
                or (_unset(pa.mtls) and ns_cfg is not None and _strict(ns_mtls))
                or (
                    (ns_cfg is None or _unset(ns_mtls))
                    and root_cfg is not None
                    and _strict(root_mtls)
                )
            ):
                continue
            rules.append(
                ((Match(not_principals=(StringMatch("presence"),), destination_ports=(port,)),),)
            )
        elif port_mode in ("PERMISSIVE", "DISABLE"):
            if mode in ("PERMISSIVE", "DISABLE"):
                continue
            if mode == "UNSET" and (
                (ns_cfg is not None and not _strict(ns_mtls))
                or (ns_cfg is None and root_cfg is not None and not _strict(root_mtls))
                or (ns_cfg is None and root_cfg is None)
            ):
                continue
            found_non_strict = True
            clauses.append((Match(not_destination_ports=(port,)),))
    if mode == "STRICT" and not found_non_strict:
        return None
    if not clauses and not rules:
        return None
    merge_strict = (
        root_cfg is not None
        and _strict(root_mtls)
        and (ns_cfg is None or _unset(ns_mtls) or _strict(ns_mtls))
    ) or (ns_cfg is not None and _strict(ns_mtls))
    if merge_strict and found_non_strict:
        clauses.append((_PRESENCE_ONLY_NOT_PRINCIPALS,))
    if clauses:
        rules.append(tuple(clauses))
    return Authorization(
        name=converted_peer_authentication_name(cfg.name),
        namespace=cfg.namespace,
        scope="WORKLOAD_SELECTOR",
        action="DENY",
        rules=tuple(rules),
        source=f"PeerAuthentication {cfg.key}",
    )


def converted_selector_peer_authentications(
    root_namespace: str, configs: Sequence[PeerAuthentication]
) -> list[str]:
    """``convertedSelectorPeerAuthentications``: the keys of the PeerAuthentication
    policies a workload references (the static STRICT one, the converted
    port-level one), from the PeerAuthentications that apply to it; of each
    level the oldest counts."""
    mesh_cfg = ns_cfg = wl_cfg = None
    for cfg in sorted(configs, key=creation_time):
        sel = cfg.spec.selector
        if sel is None or not sel.match_labels:
            if cfg.namespace == root_namespace:
                mesh_cfg = mesh_cfg or cfg
            else:
                ns_cfg = ns_cfg or cfg
        elif cfg.namespace != root_namespace:
            wl_cfg = wl_cfg or cfg
    strict = False
    if mesh_cfg is not None:
        strict = _strict(mesh_cfg.spec.mtls)
    if ns_cfg is not None and not _unset(ns_cfg.spec.mtls):
        strict = _strict(ns_cfg.spec.mtls)
    port_key = ""
    if wl_cfg is not None:
        spec = wl_cfg.spec
        if _strict(spec.mtls):
            strict = True
        if _lenient(spec.mtls):
            strict = False
        if spec.port_level_mtls:
            key = f"{wl_cfg.namespace}/{converted_peer_authentication_name(wl_cfg.name)}"
            ports = list(spec.port_level_mtls.values())
            wl_mode = _mode(spec.mtls)
            if wl_mode == "STRICT":
                if any(_lenient(p) for p in ports):
                    port_key, strict = key, False
            elif wl_mode in ("PERMISSIVE", "DISABLE"):
                if any(_strict(p) for p in ports):
                    port_key = key
            elif strict:
                if any(_mode(p) == "PERMISSIVE" for p in ports):
                    port_key, strict = key, False
            else:
                if any(_strict(p) for p in ports):
                    port_key = key
    keys = set()
    if strict:
        keys.add(f"{root_namespace}/{STATIC_STRICT_POLICY_NAME}")
    if port_key:
        keys.add(port_key)
    return sorted(keys)


def implicit_waypoint_policy(
    waypoint_namespace: str, waypoint_name: str, principals: Sequence[str]
) -> Authorization:
    """policies.go ``implicitWaypointPolicy`` (PILOT_AUTO_ALLOW_WAYPOINT_POLICY):
    ALLOW from the waypoint's identities (principals without ``spiffe://``)."""
    return Authorization(
        name=f"{IMPLICIT_WAYPOINT_POLICY_PREFIX}{waypoint_namespace}_{waypoint_name}",
        namespace=waypoint_namespace,
        scope="WORKLOAD_SELECTOR",
        action="ALLOW",
        rules=(((Match(principals=tuple(StringMatch("exact", p) for p in principals)),),),),
        source=f"istiod's implicit ALLOW of waypoint {waypoint_namespace}/{waypoint_name}",
    )


__all__ = [
    "ACCEPTED_MESSAGE",
    "STATIC_STRICT_POLICY_NAME",
    "Conversion",
    "StatusMessage",
    "ZtunnelCondition",
    "convert_authorization_policy",
    "convert_peer_authentication",
    "converted_peer_authentication_name",
    "converted_selector_peer_authentications",
    "has_effective_rules",
    "http_attributes",
    "implicit_waypoint_policy",
    "static_strict_policy",
    "string_to_ip",
    "string_to_match",
    "string_to_port",
]
