"""Running test suites: every case through the same pipeline as ``check``.

A suite's manifests are loaded and validated once (suites naming the same
files and mesh share the snapshot); each case's request is resolved and
decided, and the decision compared with what the case expects. A failed case
is decided again with ``explain`` so the report can say why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from meshauthz.decide.decision import Decision
from meshauthz.decide.engine import Decider
from meshauthz.decide.request import Request, resolve
from meshauthz.decide.runner import ExtAuthzAssumption
from meshauthz.errors import InputError, Location, MeshauthzError
from meshauthz.mesh import MeshSnapshot
from meshauthz.mesh.loading import InvalidInput, load_mesh
from meshauthz.resources.findings import Finding
from meshauthz.resources.loader import collect_files
from meshauthz.resources.meshconfig import MeshConfig
from meshauthz.suite.coverage import Coverage
from meshauthz.suite.format import Case, Expectation, Suite, find_suites, load_suite


@dataclass(slots=True)
class CaseResult:
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


@dataclass(slots=True)
class SuiteResult:
    file: str
    suite: Suite | None
    cases: list[CaseResult] = field(default_factory=list)
    error: MeshauthzError | None = None  # the suite could not be used at all
    findings: list[Finding] = field(default_factory=list)  # Istio would reject these objects
    snapshot: MeshSnapshot | None = None

    @property
    def name(self) -> str:
        return self.suite.name if self.suite else os.path.basename(self.file)

    def count(self, outcome: str) -> int:
        return sum(1 for c in self.cases if c.outcome == outcome)


@dataclass(slots=True)
class RunResult:
    suites: list[SuiteResult]
    coverage: Coverage | None = None

    def count(self, outcome: str) -> int:
        return sum(s.count(outcome) for s in self.suites)

    @property
    def unusable(self) -> list[SuiteResult]:
        return [s for s in self.suites if s.error is not None or s.findings]

    @property
    def ok(self) -> bool:
        return not self.unusable and all(
            self.count(o) == 0 for o in ("fail", "error", "internal-error")
        )


class _SnapshotCache:
    """Suites over the same manifests and mesh config share one snapshot."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], tuple[MeshSnapshot | None, list[Finding]]] = {}

    def get(self, suite: Suite) -> tuple[MeshSnapshot | None, list[Finding]]:
        files = tuple(os.path.realpath(f) for f in collect_files(suite.resources))
        # A suite with its own mesh config shares only with itself.
        key = (files, None if suite.mesh is None else os.path.realpath(suite.file))
        hit = self._cache.get(key)
        if hit is None:
            hit = _load_snapshot(suite.resources, suite.mesh)
            self._cache[key] = hit
        return hit


def _load_snapshot(
    resources: list[str], mesh: MeshConfig | None
) -> tuple[MeshSnapshot | None, list[Finding]]:
    """The snapshot, or the findings that make Istio reject the suite's objects
    (reported per suite; other suites still run)."""
    try:
        # The suite's mesh config takes the place of any in the manifests.
        return load_mesh(resources, mesh_config=mesh).snapshot, []
    except InvalidInput as e:
        return None, list(e.errors)


def run_paths(paths: list[str], *, coverage: bool = False) -> RunResult:
    """Find the suites under ``paths`` and run them. Raises InputError when a
    path does not exist or holds no suite."""
    files = find_suites(paths)
    if not files:
        raise InputError(
            "no test suites found (files named *.test.yaml)",
            location=Location(paths[0]) if len(paths) == 1 else None,
        )
    return run_files(files, coverage=coverage)


def run_files(files: list[str], *, coverage: bool = False) -> RunResult:
    cache = _SnapshotCache()
    cov = Coverage() if coverage else None
    results = [run_suite_file(f, cache, cov) for f in files]
    return RunResult(results, cov)


def run_suite_file(
    path: str, cache: _SnapshotCache | None = None, cov: Coverage | None = None
) -> SuiteResult:
    try:
        suite = load_suite(path)
    except MeshauthzError as e:
        return SuiteResult(path, None, error=e)
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
        cov.record(decision, f"{suite.name if suite else ''}: {case.name}")
    mismatches = compare(case.expect, decision)
    if not mismatches:
        return CaseResult(case, "pass", decision, request)
    explained = decider.decide(request, trace=True, explain=True)
    return CaseResult(case, "fail", decision, request, mismatches, explained)


def compare(expect: Expectation, d: Decision) -> list[str]:
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
        got = "none" if d.rule is None else d.rule
        want = "none" if expect.rule is None else expect.rule
        out.append(f"expected rule {want}, got {got}")
    return out
