"""The per-namespace index behind ``list_policies`` only skips policies that
cannot attach: on random meshes (enough policies per namespace to be indexed),
the selection equals ``should_attach``/the PeerAuthentication rule applied to
every policy of the namespaces istiod reads, in the same order."""

from __future__ import annotations

import random

from meshauthz.mesh import PolicyMatcher, ServiceRef, list_policies, should_attach
from meshauthz.mesh.selection import _selector_reason, peer_authentication_store, target_refs
from tests.mesh.mesh_builders import GATEWAY_KIND, SERVICE_KIND, ap, pa, ra, unvalidated_snapshot

ROOT = "istio-system"
GW_LABEL = "gateway.networking.k8s.io/gateway-name"
NAMESPACES = ("a", "b", ROOT)
LABELS = {"app": ("x", "y", "z"), "tier": ("front", "back"), GW_LABEL: ("gw",)}


def _labels(rng: random.Random) -> dict[str, str]:
    keys = rng.sample(sorted(LABELS), rng.randrange(0, 3))
    return {k: rng.choice(LABELS[k]) for k in keys}


def _targeting(rng: random.Random) -> dict:
    x = rng.random()
    if x < 0.2:
        return {}
    if x < 0.3:
        return {"selector": {}}
    if x < 0.8:
        return {"selector": _labels(rng)}
    kind = rng.choice((GATEWAY_KIND, SERVICE_KIND))
    return {"target_refs": [{**kind, "name": rng.choice(("gw", "svc"))}]}


def _brute(snapshot, matcher: PolicyMatcher, kind: str) -> list[str]:
    order = (
        [ROOT, matcher.namespace] if kind == "AuthorizationPolicy" else [matcher.namespace, ROOT]
    )
    order += [s.namespace for s in matcher.services]
    if kind == "AuthorizationPolicy":
        pols = snapshot.authorization_policies
    elif kind == "RequestAuthentication":
        pols = snapshot.request_authentications
    else:
        pols = peer_authentication_store(snapshot)
    m = PolicyMatcher(
        matcher.namespace, matcher.labels, matcher.is_waypoint, matcher.services, ROOT
    )
    out = []
    for ns in dict.fromkeys(order):
        for p in (p for p in pols if p.namespace == ns):
            if kind == "PeerAuthentication":
                ok = _selector_reason(m, ns, p.spec.selector) is not None
            else:
                refs = target_refs(p.spec.target_ref, p.spec.target_refs)
                ok = should_attach(m, ns, p.spec.selector, refs) is not None
            if ok:
                out.append(p.key)
    return out


def test_indexed_selection_equals_a_scan_of_every_policy() -> None:
    rng = random.Random(17)
    for _ in range(8):
        objs = []
        for i in range(60):
            ns = rng.choice(NAMESPACES)
            t = _targeting(rng)
            objs.append(ap(f"p{i}", ns, action=rng.choice(("ALLOW", "DENY")), **t))
            if "target_refs" not in t:
                objs.append(ra(f"r{i}", ns, selector=t.get("selector")))
                objs.append(pa(f"m{i}", ns, selector=t.get("selector")))
        snapshot = unvalidated_snapshot(*objs, root=ROOT)
        for _ in range(40):
            waypoint = rng.random() < 0.2
            labels = _labels(rng)
            if waypoint:
                labels[GW_LABEL] = "gw"
            services = (ServiceRef("svc", rng.choice(NAMESPACES)),) if waypoint else ()
            matcher = PolicyMatcher(rng.choice(NAMESPACES), labels, waypoint, services)
            for kind in ("AuthorizationPolicy", "RequestAuthentication", "PeerAuthentication"):
                got = [s.key for s in list_policies(snapshot, matcher, kind)]
                assert got == _brute(snapshot, matcher, kind), (matcher, kind)
