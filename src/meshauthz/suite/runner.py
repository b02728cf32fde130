"""Running test suites: every case through the same pipeline as ``check``.

A suite's manifests are loaded and validated once (suites naming the same
files and mesh share the snapshot); each case's request is resolved and
decided, and the decision compared with what the case expects. A failed case
is decided again with ``explain`` so the report can say why.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from msgspec import Struct, field

from meshauthz.decide.decision import Decision, DryRunResult
from meshauthz.decide.engine import Decider
from meshauthz.decide.request import Request, resolve
from meshauthz.decide.runner import ExtAuthzAssumption
from meshauthz.errors import InputError, Location, MeshauthzError
from meshauthz.mesh import MeshSnapshot
from meshauthz.mesh.loading import InvalidInput, JwksSource, load_mesh
from meshauthz.resources.findings import Finding
from meshauthz.resources.loader import collect_files
from meshauthz.resources.meshconfig import MeshConfig
from meshauthz.suite.coverage import Coverage
from meshauthz.suite.format import (
    Case,
    DryRunExpectation,
    Expectation,
    Suite,
    find_suites,
    load_suite,
)
from meshauthz.suite.select import CaseSelector, full_name


class CaseResult(Struct):
    case: Case
    # "pass" | "fail" | "error" (the case cannot be used) | "internal-error" (meshauthz
    # failed deciding it: its DENY is fail-closed, so it meets no expectation)
    outcome: str
    decision: Decision | None = None
    request: Request | None = None
    mismatches: list[str] = field(default_factory=list)
    explained: Decision | None = None  # for a failure: the decision traced with explain
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"


class SuiteResult(Struct):
    file: str
    suite: Suite | None
    cases: list[CaseResult] = field(default_factory=list)
    error: MeshauthzError | None = None  # the suite could not be used at all
    findings: list[Finding] = field(
        default_factory=list
    )  # the cluster would reject these objects (Istio or the API server)
    snapshot: MeshSnapshot | None = None

    @property
    def name(self) -> str:
        return self.suite.name if self.suite else os.path.basename(self.file)

    def count(self, outcome: str) -> int:
        return sum(1 for c in self.cases if c.outcome == outcome)


class RunResult(Struct):
    suites: list[SuiteResult]
    coverage: Coverage | None = None
    threshold: float | None = None  # the rule coverage (percent) required

    def count(self, outcome: str) -> int:
        return sum(s.count(outcome) for s in self.suites)

    @property
    def unusable(self) -> list[SuiteResult]:
        return [s for s in self.suites if s.error is not None or s.findings]

    @property
    def below_threshold(self) -> bool:
        return (
            self.threshold is not None
            and self.coverage is not None
            and self.coverage.percent() < self.threshold
        )

    @property
    def ok(self) -> bool:
        return (
            not self.unusable
            and not self.below_threshold
            and all(self.count(o) == 0 for o in ("fail", "error", "internal-error"))
        )


class _SnapshotCache:
    """Suites over the same manifests and mesh config share one snapshot.
    ``namespace`` and ``exclude``: how every suite's manifests are read
    (``test -n``, ``--exclude``), as ``load_mesh`` takes them."""

    def __init__(self, namespace: str | None = None, exclude: Sequence[str] = ()) -> None:
        self._cache: dict[tuple[Any, ...], tuple[MeshSnapshot | None, list[Finding]]] = {}
        self.namespace = namespace
        self.exclude = tuple(exclude)

    def get(self, suite: Suite) -> tuple[MeshSnapshot | None, list[Finding]]:
        files = tuple(os.path.realpath(f) for f in collect_files(suite.resources, self.exclude))
        # A suite with its own mesh config shares only with itself.
        key = (
            files,
            None if suite.mesh is None else os.path.realpath(suite.file),
            tuple(sorted(suite.jwks.items(), key=lambda kv: kv[0])),
        )
        hit = self._cache.get(key)
        if hit is None:
            hit = self._load(suite.resources, suite.mesh, suite.jwks)
            self._cache[key] = hit
        return hit

    def _load(
        self, resources: list[str], mesh: MeshConfig | None, jwks: Mapping[str, JwksSource]
    ) -> tuple[MeshSnapshot | None, list[Finding]]:
        """The snapshot, or the findings that make Istio reject the suite's objects
        (reported per suite; other suites still run)."""
        try:
            # The suite's mesh config takes the place of any in the manifests.
            loaded = load_mesh(
                resources,
                mesh_config=mesh,
                jwks=jwks,
                namespace=self.namespace,
                exclude=self.exclude,
            )
            return loaded.snapshot, []
        except InvalidInput as e:
            return None, list(e.errors)


def run_paths(
    paths: list[str],
    *,
    coverage: bool = False,
    select: CaseSelector | None = None,
    threshold: float | None = None,
    namespace: str | None = None,
    exclude: Sequence[str] = (),
) -> RunResult:
    """Find the suites under ``paths`` and run them. Raises InputError when a
    path does not exist or holds no suite, or ``select`` selects no case.
    ``threshold`` (percent of rules covered) implies coverage. ``namespace``
    and ``exclude`` as ``load_mesh`` takes them; ``exclude`` also leaves out
    suites found by walking a directory."""
    files = find_suites(paths, exclude)
    if not files:
        raise InputError(
            "no test suites found (files named *.test.yaml)",
            location=Location(paths[0]) if len(paths) == 1 else None,
        )
    cache = _SnapshotCache(namespace, exclude)
    return run_files(files, coverage=coverage, select=select, threshold=threshold, cache=cache)


def run_files(
    files: list[str],
    *,
    coverage: bool = False,
    select: CaseSelector | None = None,
    threshold: float | None = None,
    cache: _SnapshotCache | None = None,
) -> RunResult:
    cache = cache or _SnapshotCache()
    cov = Coverage() if coverage or threshold is not None else None
    results = [r for f in files if (r := run_suite_file(f, cache, cov, select)) is not None]
    if select is not None and not any(r.cases or r.error or r.findings for r in results):
        raise InputError(f"no case matches --run {select.regex!r} (names are 'SUITE: CASE')")
    return RunResult(results, cov, threshold)


def run_suite_file(
    path: str,
    cache: _SnapshotCache | None = None,
    cov: Coverage | None = None,
    select: CaseSelector | None = None,
) -> SuiteResult | None:
    """None: ``select`` selects none of the suite's cases (its manifests are not read)."""
    try:
        suite = load_suite(path)
    except MeshauthzError as e:
        return SuiteResult(path, None, error=e)
    if select is not None:
        suite.cases = [c for c in suite.cases if select(suite.name, c.name)]
        if not suite.cases:
            return None
    return run_suite(suite, cache, cov)


def run_suite(
    suite: Suite, cache: _SnapshotCache | None = None, cov: Coverage | None = None
) -> SuiteResult:
    cache = cache or _SnapshotCache()
    out = SuiteResult(suite.file, suite)
    try:
        snapshot, errors = cache.get(suite)
    except MeshauthzError as e:
        out.error = e
        return out
    if snapshot is None:
        out.findings = errors
        return out
    out.snapshot = snapshot
    if cov is not None:
        cov.add_snapshot(snapshot)
    deciders: dict[str, Decider] = {}
    for case in suite.cases:
        mode: ExtAuthzAssumption = "allow" if case.ext_authz == "allow" else "deny"
        decider = deciders.get(mode)
        if decider is None:
            decider = deciders[mode] = Decider(snapshot, ext_authz=mode)
        out.cases.append(run_case(case, snapshot, decider, cov, suite))
    return out


def run_case(
    case: Case,
    snapshot: MeshSnapshot,
    decider: Decider,
    cov: Coverage | None = None,
    suite: Suite | None = None,
) -> CaseResult:
    try:
        request = resolve(case.request, snapshot)
    except MeshauthzError as e:
        return CaseResult(case, "error", error=str(e))
    # untraced unless coverage reads the trace; a failure is decided again, explained
    decision = decider.decide(request, trace=cov is not None)
    if decision.internal_error:
        return CaseResult(case, "internal-error", decision, request, error=decision.error)
    if cov is not None:
        cov.record(decision, full_name(suite.name if suite else "", case.name))
    mismatches = compare(case.expect, decision)
    if not mismatches:
        return CaseResult(case, "pass", decision, request)
    explained = decider.decide(request, trace=True, explain=True)
    return CaseResult(case, "fail", decision, request, mismatches, explained)


class Answer(Protocol):
    """What ``compare`` reads: a Decision, or an answer observed elsewhere."""

    @property
    def verdict(self) -> str: ...
    @property
    def status(self) -> int | str: ...
    @property
    def stage(self) -> str: ...
    @property
    def policy(self) -> str | None: ...
    @property
    def rule(self) -> int | None: ...
    @property
    def dry_run(self) -> tuple[DryRunResult, ...]: ...
    @property
    def audit(self) -> bool: ...
    @property
    def audit_policy(self) -> str | None: ...


def compare(expect: Expectation, d: Answer) -> list[str]:
    """What differs between the expectation and the decision, one line each."""
    out: list[str] = []
    if d.verdict != expect.decision:
        out.append(f"expected {expect.decision}, got {d.verdict} ({d.status})")
    if expect.status is not None and str(d.status) != str(expect.status):
        out.append(f"expected status {expect.status}, got {d.status}")
    if expect.stage is not None and d.stage != expect.stage:
        out.append(f"expected stage {expect.stage}, got {d.stage}")
    if expect.pins_policy and d.policy != expect.policy:
        out.append(f"expected policy {expect.policy or 'none'}, got {d.policy or 'none'}")
    if expect.pins_rule and d.rule != expect.rule:
        out.append(f"expected rule {_none(expect.rule)}, got {_none(d.rule)}")
    if expect.dry_run is not None:
        out += compare_dry_run(expect.dry_run, d.dry_run)
    if expect.audit is not None and d.audit != expect.audit:
        got = f"audited by {d.audit_policy}" if d.audit else "not audited"
        out.append(f"expected {'audited' if expect.audit else 'not audited'}, got {got}")
    if expect.pins_audit_policy and d.audit_policy != expect.audit_policy:
        out.append(
            f"expected audited by {expect.audit_policy or 'no policy'}, "
            f"got {d.audit_policy or 'no policy'}"
        )
    if expect.enforced_by is not None and isinstance(d, Decision):
        out += compare_enforced_by(expect.enforced_by, d)
    return out


def compare_enforced_by(expected: str | tuple[str, ...], d: Decision) -> list[str]:
    """The enforcement point that decided, or (a list) the whole path."""
    if isinstance(expected, str):
        if d.enforced_by != expected:
            return [f"expected enforced by {expected}, got {d.enforced_by}"]
        return []
    path = tuple(h.enforcer for h in d.hops)
    if path != expected:
        shown = " -> ".join(path) or "none"
        return [f"expected the path {' -> '.join(expected)}, got {shown}"]
    return []


def compare_dry_run(
    expected: tuple[DryRunExpectation, ...], got: tuple[DryRunResult, ...]
) -> list[str]:
    """The dry-run results, per stage: each expected one present and as pinned,
    no other."""
    out: list[str] = []
    by_stage = {str(r.stage): r for r in got}
    for e in expected:
        r = by_stage.pop(e.stage, None)
        if r is None:
            out.append(f"expected {e.describe()}, got no dry-run {e.stage} result")
            continue
        if (
            (e.result is not None and r.result != e.result)
            or (e.pins_policy and r.policy != e.policy)
            or (e.pins_rule and r.rule != e.rule)
        ):
            out.append(f"expected {e.describe()}, got {_describe_dry_run(r)}")
    for r in by_stage.values():
        out.append(f"expected no dry-run {r.stage} result, got {_describe_dry_run(r)}")
    return out


def _describe_dry_run(r: DryRunResult) -> str:
    text = f"dry-run {r.stage}: {r.result}"
    return text + (f" by {r.policy} rule {_none(r.rule)}" if r.policy else " by no policy")


def _none(v: int | None) -> str:
    return "none" if v is None else str(v)
