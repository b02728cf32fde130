"""ztunnel's authorization of an inbound connection (src/rbac.rs, src/state.rs).

ztunnel sees a connection, not a request: the peer's identity from the HBONE
mTLS handshake (none for plaintext), the TCP source and destination addresses
and the destination (target) port. Its order (``assert_rbac``):

1. dry-run DENY policies that match are logged;
2. "If there are any DENY policies that match the request, deny the request."
3. dry-run ALLOW policies that match are logged;
4. "If there are no ALLOW policies for the workload, allow the request."
5. "If any of the ALLOW policies match the request, allow the request."
6. "Deny the request."

No CUSTOM or AUDIT (istiod never sends them).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

from msgspec import Struct

from meshauthz.ambient.authorization import Authorization, IPAddress, Match

Verdict = Literal["ALLOW", "DENY"]
# How ztunnel reached the verdict:
# explicitly-denied -> AuthorizationRejectionError::ExplicitlyDenied
# not-allowed       -> AuthorizationRejectionError::NotAllowed
Reason = Literal["explicitly-denied", "not-allowed", "no-allow-policies", "allow-matched"]

# proxy.rs AuthorizationRejectionError's Display, the text ztunnel logs.
NOT_ALLOWED_TEXT = "allow policies exist, but none allowed"


class SpiffeIdentity(Struct, frozen=True):
    """identity.rs ``Identity::Spiffe``."""

    trust_domain: str
    namespace: str
    service_account: str

    def __str__(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @staticmethod
    def parse(principal: str) -> SpiffeIdentity | None:
        """``td/ns/NS/sa/SA`` (with or without ``spiffe://``); None if not of that form."""
        parts = principal.removeprefix("spiffe://").split("/")
        if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa" or not all(parts):
            return None
        return SpiffeIdentity(parts[0], parts[2], parts[4])


class Connection(Struct, frozen=True):
    """rbac.rs ``Connection`` (the network does not take part in matching)."""

    src_ip: IPAddress
    dst_ip: IPAddress
    dst_port: int
    src_identity: SpiffeIdentity | None = None

    @staticmethod
    def of(
        src_ip: str, dst_ip: str, dst_port: int, identity: SpiffeIdentity | None = None
    ) -> Connection:
        return Connection(
            ipaddress.ip_address(src_ip), ipaddress.ip_address(dst_ip), dst_port, identity
        )


T = TypeVar("T")


def _field(positive: Sequence[T], negative: Sequence[T], pred: Callable[[T], bool]) -> bool:
    """rbac.rs ``matches_internal``: any positive (if given) and none of the negatives."""
    return (not positive or any(pred(v) for v in positive)) and not any(pred(v) for v in negative)


def match_matches(m: Match, conn: Connection) -> bool:
    """One non-empty ``RbacMatch``: every field type must match."""
    ident = conn.src_identity
    principal = str(ident) if ident is not None else ""
    ns = ident.namespace if ident is not None else ""
    return (
        _field(m.destination_ips, m.not_destination_ips, lambda a: a.contains(conn.dst_ip))
        and _field(m.source_ips, m.not_source_ips, lambda a: a.contains(conn.src_ip))
        and _field(m.destination_ports, m.not_destination_ports, lambda p: p == conn.dst_port)
        and _field(
            m.service_accounts,
            m.not_service_accounts,
            lambda s: (
                ident is not None
                and s.namespace == ident.namespace
                and s.service_account == ident.service_account
            ),
        )
        and _field(m.principals, m.not_principals, lambda s: s.matches_principal(principal))
        and _field(m.namespaces, m.not_namespaces, lambda s: s.matches(ns))
    )


def matching_rule(policy: Authorization, conn: Connection) -> int | None:
    """rbac.rs ``Authorization::matches``, returning the index of the first rule
    that matches (None: the policy does not match). No rules: no match; a rule
    without clauses matches; a clause without matches matches; empty matches
    are skipped, so a clause of only empty matches does not match."""
    for i, rule in enumerate(policy.rules):
        if all(
            not clause or any(not m.is_empty and match_matches(m, conn) for m in clause)
            for clause in rule
        ):
            return i
    return None


def matches(policy: Authorization, conn: Connection) -> bool:
    return matching_rule(policy, conn) is not None


class PolicyHit(Struct, frozen=True):
    policy: Authorization
    rule: int


class ZtunnelDecision(Struct, frozen=True):
    verdict: Verdict
    reason: Reason
    deciding: PolicyHit | None  # the DENY or ALLOW that decided, if one did
    dry_run_denies: tuple[PolicyHit, ...] = ()  # logged "dry-run: deny policy match"
    dry_run_allows: tuple[PolicyHit, ...] = ()  # logged "dry-run: allow policy match"
    # "dry-run: no allow policies match": allowed now, denied once dry-run ALLOWs enforce.
    dry_run_no_allow_match: bool = False
    evaluated: tuple[Authorization, ...] = ()

    @property
    def log_text(self) -> str:
        """What ztunnel logs for the decision (proxy.rs error texts)."""
        if self.reason == "explicitly-denied" and self.deciding is not None:
            return f"explicitly denied by: {self.deciding.policy.key}"
        if self.reason == "not-allowed":
            return NOT_ALLOWED_TEXT
        if self.reason == "no-allow-policies":
            return "no allow policies, allow"
        return "allow policy match"


def _hit(policy: Authorization, conn: Connection) -> PolicyHit | None:
    rule = matching_rule(policy, conn)
    return None if rule is None else PolicyHit(policy, rule)


def assert_rbac(policies: Sequence[Authorization], conn: Connection) -> ZtunnelDecision:
    """state.rs ``assert_rbac`` over the policies that apply to the destination
    (see ``store.PolicyStore.for_workload``). ztunnel iterates hash sets, so
    which of several matching DENYs it names is not defined; we name the first
    in the order given."""
    deny = [p for p in policies if p.action == "DENY" and not p.dry_run]
    deny_dry = [p for p in policies if p.action == "DENY" and p.dry_run]
    allow = [p for p in policies if p.action == "ALLOW" and not p.dry_run]
    allow_dry = [p for p in policies if p.action == "ALLOW" and p.dry_run]
    dry_denies = tuple(h for p in deny_dry if (h := _hit(p, conn)) is not None)
    evaluated = tuple(policies)
    for p in deny:
        hit = _hit(p, conn)
        if hit is not None:
            return ZtunnelDecision(
                "DENY", "explicitly-denied", hit, dry_denies, evaluated=evaluated
            )
    dry_allows = tuple(h for p in allow_dry if (h := _hit(p, conn)) is not None)
    no_allow_match = not allow and bool(allow_dry) and not dry_allows
    if not allow:
        return ZtunnelDecision(
            "ALLOW", "no-allow-policies", None, dry_denies, dry_allows, no_allow_match, evaluated
        )
    for p in allow:
        hit = _hit(p, conn)
        if hit is not None:
            return ZtunnelDecision(
                "ALLOW", "allow-matched", hit, dry_denies, dry_allows, evaluated=evaluated
            )
    return ZtunnelDecision("DENY", "not-allowed", None, dry_denies, dry_allows, evaluated=evaluated)


__all__ = [
    "NOT_ALLOWED_TEXT",
    "Connection",
    "PolicyHit",
    "SpiffeIdentity",
    "ZtunnelDecision",
    "assert_rbac",
    "match_matches",
    "matches",
    "matching_rule",
]
