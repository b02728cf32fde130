"""Shared test helpers: where Istio's conformance data and the examples are.

Istio's test data is copied into tests/conformance/istio (with Istio's LICENSE
and the commit it comes from in its README), so a fresh clone runs every
conformance test; a test whose data is missing fails, it never skips.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONFORMANCE = REPO / "tests" / "conformance" / "istio"
EXAMPLES = REPO / "examples"
# examples/failing holds the README's inputs that fail on purpose, among them
# manifests Istio rejects: nothing can be decided or built from them
# (tests/test_readme_examples.py runs them).
EXAMPLE_MESHES = sorted(d for d in EXAMPLES.iterdir() if d.is_dir() and d.name != "failing")


@pytest.fixture
def write(tmp_path: Path):
    """Write a file under tmp_path and return its path as a string."""

    def _write(name: str, content: str | bytes) -> str:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
        return str(p)

    return _write


@pytest.fixture
def failing_matcher(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fault injected into deciding: every RBAC filter's matching raises (the
    generated fast path, which inlines the matchers, is turned off so that the
    walk runs them). Returns the error as the decision reports it."""
    from meshauthz.decide import runner
    from meshauthz.envoy.rbac.evaluate import CompiledFilter

    def boom(self: CompiledFilter, inp: object, trace: bool = False) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(CompiledFilter, "evaluate", boom)
    monkeypatch.setattr(runner, "_generate", lambda r: None)
    return "RuntimeError: injected fault"


def _repository_files() -> set[str]:
    """Files at the repository's top level (where a test that writes to the
    working directory leaves them)."""
    return {p.name for p in REPO.iterdir()}


_FILES_AT_START = _repository_files()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A test writes under tmp_path, never into the repository: files that a
    test run left at the top level fail the run."""
    left = sorted(_repository_files() - _FILES_AT_START - {".pytest_cache", ".hypothesis"})
    if left:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"tests left files in the repository: {left!r}", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
