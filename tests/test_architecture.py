"""The house rules of docs/ARCHITECTURE.md: packages depend only on the ones
before them, and the Envoy layer knows nothing of Istio."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "src" / "meshauthz"
ORDER = [
    "records",
    "digests",
    "errors",
    "collector",
    "resources",
    "mesh",
    "envoy",
    "translate",
    "ambient",
    "decide",
    "symbolic",
    "analyze",
    "suite",
    "runtime",
    "cli",
]
FACADE = {"__init__", "_api"}  # the public API may use every layer


def _imports(path: Path) -> set[str]:
    """The meshauthz packages a module imports (``meshauthz.X...`` -> X)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for n in names:
            parts = n.split(".")
            if parts[0] == "meshauthz" and len(parts) > 1:
                out.add(parts[1])
    return out


def _package_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def test_every_package_is_placed() -> None:
    found = {_package_of(p) for p in PACKAGE.rglob("*.py")} - FACADE - {"schemas"}
    assert found == set(ORDER)


def test_dependencies_point_one_way() -> None:
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        pkg = _package_of(path)
        if pkg in FACADE:
            continue
        for dep in _imports(path):
            if dep in ORDER and ORDER.index(dep) > ORDER.index(pkg):
                wrong.append(f"{path.relative_to(REPO)} imports meshauthz.{dep}")
    assert not wrong, "\n".join(wrong)


def test_the_envoy_layer_has_no_istio_knowledge() -> None:
    wrong = [
        f"{path.relative_to(REPO)} imports meshauthz.{dep}"
        for path in (PACKAGE / "envoy").rglob("*.py")
        for dep in _imports(path)
        if dep not in ("envoy", "errors", "records", "digests")
    ]
    assert not wrong, "\n".join(wrong)
