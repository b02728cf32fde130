"""Trust-domain aliases: how istiod widens identities to the mesh's aliases.

The bundle is the mesh's trust domain followed by its aliases
(``pilot/pkg/security/trustdomain``). Principals are written without the
``spiffe://`` scheme, as ``<trust-domain>/ns/<namespace>/sa/<account>``.
"""

from __future__ import annotations

from collections.abc import Sequence

from msgspec import Struct

CLUSTER_LOCAL = "cluster.local"


def _pattern_prefix(a: str, pattern: str) -> bool:
    return pattern.endswith("*") and a.startswith(pattern[:-1])


def _pattern_suffix(a: str, pattern: str) -> bool:
    return pattern.startswith("*") and a.endswith(pattern[1:])


def _matches_any(a: str, domains: Sequence[str]) -> bool:
    # Either side may carry the wildcard.
    return any(
        a == s
        or s == "*"
        or _pattern_prefix(a, s)
        or _pattern_prefix(s, a)
        or _pattern_suffix(a, s)
        or _pattern_suffix(s, a)
        for s in domains
    )


class TrustDomainBundle(Struct, frozen=True):
    """``domains``: the trust domain first, then its aliases. An empty bundle
    is what istiod's own builder tests use (no mesh trust domain at all)."""

    domains: tuple[str, ...] = ()

    @classmethod
    def of(cls, trust_domain: str, aliases: Sequence[str] = ()) -> TrustDomainBundle:
        return cls((trust_domain, *aliases))

    def replace_aliases(self, principal: str) -> list[str]:
        """The principals one written principal stands for."""
        parts = principal.split("/")
        if len(parts) != 5 or parts[0] == "*":
            # Not an identity with a trust domain to enforce: keep as written.
            return [principal]
        td = parts[0]
        if self.domains == (td,):
            # the mesh's own trust domain and no alias (most meshes, for every
            # principal): the loop below would give it back alone
            return [principal]
        if not (_matches_any(td, self.domains) or td == CLUSTER_LOCAL):
            return [principal]
        out: list[str] = []
        for domain in self.domains:
            # A wildcard trust domain that covers this alias stays as written.
            if domain == td or _pattern_suffix(domain, td):
                new = principal  # the same string: a large mesh holds it once
            else:
                new = "/".join([domain, *parts[1:]])
            if new not in out:
                out.append(new)
        return out

    def expand_trust_domain(self, value: str) -> list[str]:
        """A trust domain of the bundle stands for the whole bundle."""
        return list(self.domains) if value in self.domains else [value]
