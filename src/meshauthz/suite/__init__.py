"""Policy tests as code: ``*.test.yaml`` suites of expected decisions, their
runner, case selection, rule coverage, JUnit output and watch mode
(``meshauthz test``; ``--mesh`` is ``meshauthz.runtime.mesh_suite``)."""

from meshauthz.suite.coverage import Coverage
from meshauthz.suite.format import (
    Case,
    DryRunExpectation,
    Expectation,
    Suite,
    find_suites,
    load_suite,
)
from meshauthz.suite.runner import CaseResult, RunResult, SuiteResult, run_files, run_paths
from meshauthz.suite.select import CaseSelector

__all__ = [
    "Case",
    "CaseResult",
    "CaseSelector",
    "Coverage",
    "DryRunExpectation",
    "Expectation",
    "RunResult",
    "Suite",
    "SuiteResult",
    "find_suites",
    "load_suite",
    "run_files",
    "run_paths",
]
