"""Policy tests as code: ``*.test.yaml`` suites of expected decisions, their
runner, rule coverage, JUnit output and watch mode (``meshauthz test``)."""

from meshauthz.suite.coverage import Coverage
from meshauthz.suite.format import Case, Expectation, Suite, find_suites, load_suite
from meshauthz.suite.runner import CaseResult, RunResult, SuiteResult, run_files, run_paths

__all__ = [
    "Case",
    "CaseResult",
    "Coverage",
    "Expectation",
    "RunResult",
    "Suite",
    "SuiteResult",
    "find_suites",
    "load_suite",
    "run_files",
    "run_paths",
]
