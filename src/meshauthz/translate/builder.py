"""AuthorizationPolicies of one workload -> the Envoy filters istiod builds.

Mirrors ``pilot/pkg/security/authz/builder/builder.go``. The policies are
split by action; CUSTOM policies become, per provider (in sorted order), an
RBAC filter whose shadow rules mark matching requests and an ext_authz filter
gated on that mark (or a deny-all RBAC filter when the provider is unusable).
AUDIT, DENY and ALLOW policies each become one RBAC filter (actions LOG, DENY,
ALLOW), dry-run policies going to its shadow rules. The result lists the
filters in the order a proxy runs them: CUSTOM, AUDIT, DENY, ALLOW (on an HTTP
chain istiod puts the JWT filter between CUSTOM and the others).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any, Literal

from msgspec import Struct, field

from meshauthz.envoy.ext_authz import ExtAuthzFilter
from meshauthz.envoy.rbac.model import RBAC, Action, HttpRbacFilter, NetworkRbacFilter, Policy
from meshauthz.resources.meshconfig import DEFAULT_TRUST_DOMAIN, ExtensionProvider, MeshConfig
from meshauthz.resources.objects import DRY_RUN_ANNOTATION, AuthorizationPolicy
from meshauthz.translate import naming
from meshauthz.translate import rule as r
from meshauthz.translate.extauthz import (
    ResolvedProvider,
    ServiceRegistry,
    ext_authz_filter,
    resolve_providers,
)
from meshauthz.translate.rule import Leaves, Problem
from meshauthz.translate.trustdomain import TrustDomainBundle

TCP_STAT_PREFIX = "tcp."
Stage = naming.FilterStage
Target = Literal["rules", "shadow_rules"]
Filter = HttpRbacFilter | NetworkRbacFilter | ExtAuthzFilter


class Chain(enum.Enum):
    """The filter chain being built."""

    HTTP = "http"  # HTTP filters in the HTTP connection manager
    TCP = "tcp"  # network filters
    # HTTP filters built with TCP rules (istiod's BuildTCPRulesAsHTTPFilter)
    HTTP_FOR_TCP = "http-for-tcp"

    @property
    def for_tcp(self) -> bool:
        return self is not Chain.HTTP

    @property
    def network(self) -> bool:
        return self is Chain.TCP


class BuildOptions(Struct, frozen=True):
    """What istiod knows besides the policies.

    ``trust_domains``: the mesh trust domain followed by its aliases. The
    default is Istio's default mesh (``cluster.local``, no aliases). An empty
    tuple is the zero bundle of istiod's builder tests: there a principal in
    ``cluster.local`` is rewritten to nothing, so its field disappears. ``known_services``: the service
    registry that CUSTOM providers' services are looked up in.
    ``use_filter_state``: match peer identities on the filter state set by
    HBONE (waypoints) instead of the TLS peer certificate.
    ``multiple_custom_providers``: PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS.
    """

    trust_domains: tuple[str, ...] = (DEFAULT_TRUST_DOMAIN,)
    extension_providers: tuple[ExtensionProvider, ...] = ()
    known_services: ServiceRegistry = ()
    use_filter_state: bool = False
    multiple_custom_providers: bool = False

    @classmethod
    def from_mesh_config(
        cls,
        mesh: MeshConfig,
        known_services: ServiceRegistry = (),
        *,
        use_filter_state: bool = False,
        multiple_custom_providers: bool = False,
    ) -> BuildOptions:
        return cls(
            trust_domains=(mesh.trust_domain, *mesh.trust_domain_aliases),
            extension_providers=mesh.extension_providers,
            known_services=known_services,
            use_filter_state=use_filter_state,
            multiple_custom_providers=multiple_custom_providers,
        )


class Placement(Struct, frozen=True):
    """Where one AuthorizationPolicy went in a filter."""

    policy: str  # namespace/name
    target: Target
    names: tuple[str, ...]  # the Envoy policy names generated from it
    dry_run: bool = False


class BuiltFilter(Struct, frozen=True):
    filter: Filter
    stage: Stage
    provider: str | None = None  # CUSTOM only
    placements: tuple[Placement, ...] = ()
    # Envoy policy name -> (namespace/name, rule index or None for a rule-less policy)
    sources: dict[str, tuple[str, int | None]] = field(default_factory=dict)

    def to_dict(self, style: Literal["camel", "snake"] = "camel") -> dict[str, Any]:
        if isinstance(self.filter, ExtAuthzFilter):
            return self.filter.to_dict(style)
        # here, not at the top: deciding never writes Envoy's JSON (start-up)
        from meshauthz.envoy.rbac.serialize import filter_to_dict

        return filter_to_dict(self.filter, style)


class BuildResult(Struct):
    filters: list[BuiltFilter] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def envoy_filters(self) -> list[Filter]:
        return [f.filter for f in self.filters]

    def stage(self, stage: Stage) -> list[BuiltFilter]:
        return [f for f in self.filters if f.stage == stage]

    def to_dicts(self, style: Literal["camel", "snake"] = "camel") -> list[dict[str, Any]]:
        return [f.to_dict(style) for f in self.filters]


_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _dry_run(p: AuthorizationPolicy, problems: list[Problem]) -> bool:
    """The dry-run annotation read as Go's strconv.ParseBool; unparseable is enforced."""
    if DRY_RUN_ANNOTATION not in p.annotations:
        return False
    v = p.annotations[DRY_RUN_ANNOTATION]
    if v in _GO_TRUE:
        return True
    if v not in _GO_FALSE:
        problems.append(
            Problem(
                "error",
                f"failed to parse the value of {DRY_RUN_ANNOTATION}: {v!r} is not a boolean; "
                "the policy is enforced",
                _key(p),
                None,
                p.location("metadata", "annotations", DRY_RUN_ANNOTATION),
            )
        )
    return False


def _key(p: AuthorizationPolicy) -> str:
    return f"{p.namespace}/{p.name}"


class _RuleSet(Struct):
    """The policies of one RBAC rule set being filled, with their provenance."""

    policies: dict[str, Policy] = field(default_factory=dict)
    sources: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    placements: list[Placement] = field(default_factory=list)

    def rbac(self, action: Action, rename: Callable[[str], str] | None = None) -> RBAC:
        return RBAC(action, tuple(((rename or str)(n), p) for n, p in self.policies.items()))


class _Translated(Struct, frozen=True):
    """One policy's rules as one action builds them on one kind of chain: what
    ``_fill`` adds to a rule set. It depends on the policy, not on the workload
    it is built for, so every workload the policy selects shares it."""

    policy: AuthorizationPolicy  # kept so that the cache key (its id) stays its own
    spec: Any  # the spec translated (a policy whose spec was replaced is translated again)
    rules: tuple[tuple[str, Policy, tuple[str, int | None]], ...]
    problems: tuple[Problem, ...]


class _Stage(Struct, frozen=True):
    """One AUDIT, DENY or ALLOW filter as built from its policies: what
    ``_build_action`` returns and the problems it records. It depends on the
    policies (the objects, their specs, their dry-run annotations), the chain
    and the options, not on the workload: workloads selected by the same
    policies of a stage (a mesh-wide DENY) share one filter."""

    policies: tuple[AuthorizationPolicy, ...]  # kept: the cache key holds their ids
    specs: tuple[Any, ...]  # the specs built (a policy whose spec was replaced is built again)
    built: BuiltFilter
    problems: tuple[Problem, ...]


class TranslationCache:
    """Translated policies, for building many workloads' filters from one set of
    policies (``build``'s ``cache``). Keyed by the policy object, the action, the
    CUSTOM provider, the chain's kind and the options that change a rule; a
    stage's whole filter by its policies, the chain and those options."""

    __slots__ = ("_entries", "_stages", "leaves")

    def __init__(self) -> None:
        self._entries: dict[tuple[Any, ...], _Translated] = {}
        self._stages: dict[tuple[Any, ...], _Stage] = {}
        self.leaves: Leaves = {}  # (see rule.generate)

    def stage(self, key: tuple[Any, ...], policies: Sequence[AuthorizationPolicy]) -> _Stage | None:
        hit = self._stages.get(key)
        if hit is None or len(hit.policies) != len(policies):
            return None
        for p, q, spec in zip(policies, hit.policies, hit.specs, strict=True):
            if p is not q or p.spec is not spec:
                return None
        return hit

    def put_stage(self, key: tuple[Any, ...], value: _Stage) -> None:
        self._stages[key] = value

    def get(self, key: tuple[Any, ...], policy: AuthorizationPolicy) -> _Translated | None:
        hit = self._entries.get(key)
        if hit is None or hit.policy is not policy or hit.spec is not policy.spec:
            return None
        return hit

    def put(self, key: tuple[Any, ...], value: _Translated) -> None:
        self._entries[key] = value


def _fill(
    target: _RuleSet,
    policy: AuthorizationPolicy,
    action: Action,
    provider: str | None,
    placement_target: Target,
    dry_run: bool,
    chain: Chain,
    options: BuildOptions,
    bundle: TrustDomainBundle,
    problems: list[Problem],
    cache: TranslationCache | None = None,
) -> None:
    """Translate every rule of one policy into ``target``."""
    key = _key(policy)
    cache_key = (
        id(policy),
        action,
        provider,
        chain.for_tcp,
        options.use_filter_state,
        bundle.domains,
    )
    translated = cache.get(cache_key, policy) if cache is not None else None
    if translated is None:
        leaves = cache.leaves if cache is not None else None
        translated = _translate(policy, action, provider, chain, options, bundle, leaves)
        if cache is not None:
            cache.put(cache_key, translated)
    names: list[str] = []
    for name, generated, source in translated.rules:
        target.policies[name] = generated
        target.sources[name] = source
        names.append(name)
    problems.extend(translated.problems)
    target.placements.append(Placement(key, placement_target, tuple(names), dry_run))


def _translate(
    policy: AuthorizationPolicy,
    action: Action,
    provider: str | None,
    chain: Chain,
    options: BuildOptions,
    bundle: TrustDomainBundle,
    leaves: Leaves | None = None,
) -> _Translated:
    key = _key(policy)
    problems: list[Problem] = []
    out: list[tuple[str, Policy, tuple[str, int | None]]] = []
    rules = policy.spec.rules
    for i, rule in enumerate(rules):
        name = naming.policy_name(policy.namespace, policy.name, i, provider=provider)
        if rule is None:  # pragma: no cover - the loader does not produce these
            loc = policy.location("spec", "rules", i)
            problems.append(Problem("error", f"skipped nil rule {name}", key, i, loc))
            continue
        try:
            model = r.new_model(policy, i, rule)
        except r.InvalidRule as e:
            loc = policy.location("spec", "rules", i)
            problems.append(Problem("error", f"skipped invalid rule {name}: {e}", key, i, loc))
            continue
        r.migrate_trust_domain(model, bundle)
        try:
            generated = r.generate(
                model,
                policy,
                i,
                action,
                for_tcp=chain.for_tcp,
                use_authenticated=not options.use_filter_state,
                problems=problems,
                leaves=leaves,
            )
        except r.RuleDropped as e:
            where = "TCP" if chain.for_tcp else "HTTP"
            problems.append(
                Problem(
                    "info",
                    f"skipped rule {name} on {where} filter chain: {e}",
                    key,
                    i,
                    policy.location("spec", "rules", i),
                    http_only=e.http_only,
                )
            )
            continue
        out.append((name, generated, (key, i)))
    if not rules:
        name = naming.policy_name(policy.namespace, policy.name, 0, provider=provider)
        out.append((name, r.match_never(policy), (key, None)))
    return _Translated(policy, policy.spec, tuple(out), tuple(problems))


def _shadow_prefix(shadow: RBAC | None) -> str:
    # With no shadow rules istiod reads the action of a nil rule set: ALLOW.
    return naming.dry_run_stat_prefix(shadow.action if shadow is not None else Action.ALLOW)


def _rbac_filter(
    chain: Chain,
    rules: RBAC | None,
    shadow: RBAC | None,
    shadow_prefix: str,
) -> HttpRbacFilter | NetworkRbacFilter:
    if chain.network:
        return NetworkRbacFilter(
            stat_prefix=TCP_STAT_PREFIX,
            rules=rules,
            shadow_rules=shadow,
            shadow_rules_stat_prefix=shadow_prefix,
        )
    return HttpRbacFilter(rules=rules, shadow_rules=shadow, shadow_rules_stat_prefix=shadow_prefix)


def _build_action(
    policies: Sequence[AuthorizationPolicy],
    stage: Stage,
    action: Action,
    chain: Chain,
    options: BuildOptions,
    bundle: TrustDomainBundle,
    problems: list[Problem],
    cache: TranslationCache | None = None,
) -> BuiltFilter | None:
    if not policies:
        return None
    if cache is None:
        return _build_stage(policies, stage, action, chain, options, bundle, problems)
    # everything the filter depends on besides the policies' objects and specs
    # (``TranslationCache.stage`` checks those): the dry-run annotations as
    # written, the chain (a network filter or not, TCP rules or not), the
    # options a rule's translation reads (``_fill``'s key)
    key = (
        stage,
        action,
        chain,
        options.use_filter_state,
        bundle.domains,
        tuple([(id(p), p.annotations.get(DRY_RUN_ANNOTATION)) for p in policies]),
    )
    hit = cache.stage(key, policies)
    if hit is None:
        start = len(problems)
        built = _build_stage(policies, stage, action, chain, options, bundle, problems, cache)
        hit = _Stage(
            tuple(policies), tuple([p.spec for p in policies]), built, tuple(problems[start:])
        )
        cache.put_stage(key, hit)
    else:
        problems.extend(hit.problems)
    return hit.built


def _build_stage(
    policies: Sequence[AuthorizationPolicy],
    stage: Stage,
    action: Action,
    chain: Chain,
    options: BuildOptions,
    bundle: TrustDomainBundle,
    problems: list[Problem],
    cache: TranslationCache | None = None,
) -> BuiltFilter:
    enforce, shadow = _RuleSet(), _RuleSet()
    has_enforce = has_shadow = False
    for p in policies:
        dry = _dry_run(p, problems)
        has_shadow |= dry
        has_enforce |= not dry
        target = shadow if dry else enforce
        _fill(
            target,
            p,
            action,
            None,
            "shadow_rules" if dry else "rules",
            dry,
            chain,
            options,
            bundle,
            problems,
            cache,
        )
    rules = enforce.rbac(action) if has_enforce else None
    shadow_rules = shadow.rbac(action) if has_shadow else None
    flt = _rbac_filter(chain, rules, shadow_rules, _shadow_prefix(shadow_rules))
    return BuiltFilter(
        flt,
        stage,
        placements=(*enforce.placements, *shadow.placements),
        sources={**enforce.sources, **shadow.sources},
    )


def _bad_custom(chain: Chain, provider: str, rules: _RuleSet) -> BuiltFilter:
    """Deny every request that a CUSTOM rule of an unusable provider matches."""
    placements = tuple(
        Placement(pl.policy, "rules", tuple(naming.bad_custom(n) for n in pl.names), pl.dry_run)
        for pl in rules.placements
    )
    flt = _rbac_filter(chain, rules.rbac(Action.DENY, naming.bad_custom), None, "")
    return BuiltFilter(
        flt,
        "CUSTOM",
        provider,
        placements,
        {naming.bad_custom(n): s for n, s in rules.sources.items()},
    )


def _build_custom(
    policies: Sequence[AuthorizationPolicy],
    chain: Chain,
    options: BuildOptions,
    bundle: TrustDomainBundle,
    problems: list[Problem],
    cache: TranslationCache | None = None,
) -> list[BuiltFilter]:
    if not policies:
        return []
    resolved = resolve_providers(options.extension_providers, options.known_services)
    enforce: dict[str, _RuleSet] = {}
    dry_runs: dict[str, _RuleSet] = {}
    for p in policies:
        provider = p.spec.provider.name if p.spec.provider is not None else ""
        enforce.setdefault(provider, _RuleSet())
        dry_runs.setdefault(provider, _RuleSet())
        dry = _dry_run(p, problems)
        # Enforced CUSTOM rules go to the shadow rules (they only mark the
        # request for ext_authz); dry-run ones to the enforced rules (sic).
        target = dry_runs[provider] if dry else enforce[provider]
        _fill(
            target,
            p,
            Action.DENY,
            provider,
            "rules" if dry else "shadow_rules",
            dry,
            chain,
            options,
            bundle,
            problems,
            cache,
        )
    providers = sorted(enforce)
    out: list[BuiltFilter] = []
    if len(providers) > 1 and not options.multiple_custom_providers:
        problems.append(
            Problem(
                "error",
                "multiple CUSTOM authorization providers per workload requires the "
                "PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS feature flag, found "
                f"{len(providers)} providers: {providers}; every request a CUSTOM rule "
                "matches is denied",
            )
        )
        return [_bad_custom(chain, prov, enforce[prov]) for prov in providers]
    for prov in providers:
        rp = resolved.get(prov)
        error = _provider_error(rp, prov, resolved)
        if error is not None:
            problems.append(
                Problem(
                    "error",
                    f"failed to process CUSTOM action for provider {prov}, will generate "
                    f"deny configs: {error}",
                    provider=prov,
                )
            )
            out.append(_bad_custom(chain, prov, enforce[prov]))
            continue
        assert rp is not None
        ext = ext_authz_filter(rp, prov, chain.network)
        if ext is None:
            problems.append(
                Problem(
                    "info",
                    f"ignored CUSTOM action with HTTP provider on TCP filter chain for "
                    f"provider {prov}",
                    provider=prov,
                )
            )
            continue
        dry_set = dry_runs[prov]
        rbac_filter = _rbac_filter(
            chain,
            dry_set.rbac(Action.DENY) if dry_set.policies else None,
            enforce[prov].rbac(Action.DENY),
            naming.CUSTOM_SHADOW_STAT_PREFIX,
        )
        out.append(
            BuiltFilter(
                rbac_filter,
                "CUSTOM",
                prov,
                (*enforce[prov].placements, *dry_set.placements),
                {**enforce[prov].sources, **dry_set.sources},
            )
        )
        out.append(BuiltFilter(ext, "CUSTOM", prov))
    return out


def _provider_error(
    rp: ResolvedProvider | None, name: str, resolved: dict[str, ResolvedProvider]
) -> str | None:
    if rp is None:
        return f"available providers are {sorted(resolved)} but found {name!r}"
    if rp.errors:
        return f"found errors in provider {name}: " + "; ".join(rp.errors)
    return None


def build(
    policies: Sequence[AuthorizationPolicy],
    chain: Chain = Chain.HTTP,
    options: BuildOptions | None = None,
    *,
    cache: TranslationCache | None = None,
) -> BuildResult:
    """The filters istiod builds for a workload from the policies that apply
    to it (already selected, in istiod's order). ``cache``: policies translated
    for other workloads, reused (and added to) here."""
    options = options or BuildOptions()
    bundle = TrustDomainBundle(options.trust_domains)
    result = BuildResult()
    by_action: dict[str, list[AuthorizationPolicy]] = {
        "CUSTOM": [],
        "AUDIT": [],
        "DENY": [],
        "ALLOW": [],
    }
    for p in policies:
        by_action[p.spec.action].append(p)
    result.filters.extend(
        _build_custom(by_action["CUSTOM"], chain, options, bundle, result.problems, cache)
    )
    stages: tuple[tuple[Stage, Action], ...] = (
        ("AUDIT", Action.LOG),
        ("DENY", Action.DENY),
        ("ALLOW", Action.ALLOW),
    )
    for stage, action in stages:
        built = _build_action(
            by_action[stage], stage, action, chain, options, bundle, result.problems, cache
        )
        if built is not None:
            result.filters.append(built)
    return result
