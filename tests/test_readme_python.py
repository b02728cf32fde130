"""The README's Python example runs, and prints what the README says it prints."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO


def _example() -> tuple[str, str]:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"```python\n(.*?)```.*?```\n(.*?)```", section, re.S)
    assert m is not None, "the Python API section has a python block and its output"
    return m.group(1), m.group(2)


def test_readme_python_example_prints_what_the_readme_says() -> None:
    code, printed = _example()
    p = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout == printed


def test_the_example_explains_the_seeds_denial() -> None:
    code, printed = _example()
    assert 'meshauthz.load("examples/seed")' in code
    assert printed.startswith("False 403 DENY default/deny-all-backend 0\n")
