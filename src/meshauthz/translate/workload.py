"""istiod's translation for one workload of a mesh: the AuthorizationPolicies that
select it, in istiod's order, built into that workload's filters."""

from __future__ import annotations

import weakref

from meshauthz.mesh import MeshSnapshot, MeshWorkload, SelectedPolicy, select_policies
from meshauthz.resources.objects import AuthorizationPolicy
from meshauthz.translate.builder import BuildOptions, BuildResult, Chain, TranslationCache, build

# Per snapshot: its policies as translated for the workloads built so far. A policy
# selected by many workloads (mesh- or namespace-wide) is translated once, and the
# workloads' filters share its rules.
_CACHES: weakref.WeakKeyDictionary[MeshSnapshot, TranslationCache] = weakref.WeakKeyDictionary()


def translation_cache(snapshot: MeshSnapshot) -> TranslationCache:
    """The snapshot's ``TranslationCache`` (``build``'s ``cache``)."""
    cache = _CACHES.get(snapshot)
    if cache is None:
        cache = _CACHES[snapshot] = TranslationCache()
    return cache


def mesh_build_options(snapshot: MeshSnapshot) -> BuildOptions:
    """The options istiod builds with for this mesh: its trust domains, extension
    providers and the Services a CUSTOM provider may name."""
    known = {(s.namespace, s.hostname) for s in snapshot.services}
    return BuildOptions.from_mesh_config(snapshot.mesh_config, known_services=known)


def authorization_policies(selected: list[SelectedPolicy]) -> list[AuthorizationPolicy]:
    """The policies of an AuthorizationPolicy selection, typed as such."""
    return [s.policy for s in selected if isinstance(s.policy, AuthorizationPolicy)]


def build_for_workload(
    snapshot: MeshSnapshot,
    workload: MeshWorkload,
    chain: Chain,
    options: BuildOptions | None = None,
) -> tuple[list[SelectedPolicy], BuildResult]:
    """The AuthorizationPolicies that apply to ``workload`` and the filters istiod
    builds from them for ``chain`` (``options``: the mesh's by default)."""
    selected = select_policies(snapshot, workload, "AuthorizationPolicy")
    result = build(
        authorization_policies(selected),
        chain,
        options or mesh_build_options(snapshot),
        cache=translation_cache(snapshot),
    )
    return selected, result


__all__ = [
    "authorization_policies",
    "build_for_workload",
    "mesh_build_options",
    "translation_cache",
]
