"""A pytest plugin: ``*.test.yaml`` suites collected as pytest items, one per
case, run as ``meshauthz test`` runs them. A failing case reports what differs
and the explanation, at the case's file and line.

Registered through the ``pytest11`` entry point, so installing meshauthz makes
it available everywhere; it collects nothing unless asked, with the option
``--meshauthz`` or the ini setting ``meshauthz_suites = true``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshauthz.cli.test_cmd import failure_lines
from meshauthz.errors import MeshauthzError
from meshauthz.resources.loader import TEST_SUITE_SUFFIX
from meshauthz.suite.format import Suite, load_suite
from meshauthz.suite.runner import CaseResult, SuiteResult, run_suite

INI = "meshauthz_suites"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("meshauthz")
    group.addoption(
        "--meshauthz",
        action="store_true",
        default=False,
        help="collect meshauthz policy test suites (*.test.yaml), one item per case",
    )
    parser.addini(INI, "collect meshauthz policy test suites (*.test.yaml)", type="bool")


def _enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("--meshauthz") or config.getini(INI))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name.endswith(TEST_SUITE_SUFFIX) and _enabled(parent.config):
        return SuiteFile.from_parent(parent, path=file_path)
    return None


class SuiteFailed(Exception):
    """A case that did not decide as it expects, or could not be run."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class SuiteFile(pytest.File):
    """One suite file; its manifests are loaded once, when the first case runs."""

    _suite: Suite | None = None
    _result: SuiteResult | None = None

    def result(self) -> SuiteResult:
        if self._result is None:
            assert self._suite is not None  # collected first
            self._result = run_suite(self._suite)
        return self._result

    def collect(self) -> Iterator[pytest.Item]:
        try:
            suite = self._suite = load_suite(str(self.path))
        except MeshauthzError as e:
            raise self.CollectError(str(e)) from None
        for i, case in enumerate(suite.cases):
            yield CaseItem.from_parent(self, name=case.name, index=i, line=case.location.line)


class CaseItem(pytest.Item):
    def __init__(self, *, index: int, line: int | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = index
        self.line = line

    def runtest(self) -> None:
        parent = self.parent
        assert isinstance(parent, SuiteFile)
        s = parent.result()
        if s.error is not None:
            raise SuiteFailed([f"the suite cannot be used: {s.error}"])
        if s.findings:
            raise SuiteFailed(
                ["Istio would reject the suite's objects:", *(f.to_text() for f in s.findings)]
            )
        c: CaseResult = s.cases[self.index]
        if not c.passed:
            raise SuiteFailed(failure_lines(s, c))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, SuiteFailed):
            where = f"{self.path}:{self.line}" if self.line else str(self.path)
            return "\n".join([f"{where}: case {self.name!r} failed", *excinfo.value.lines])
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, (self.line - 1) if self.line else None, f"case: {self.name}"
