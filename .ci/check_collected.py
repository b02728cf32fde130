"""Fail when a test file under tests/ is not collected by the README's test command.

pytest's default ``norecursedirs`` silently skips folders such as ``build`` and
``dist``; this check makes such a gap an error instead of a quiet loss.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    on_disk = {p.relative_to(root).as_posix() for p in (root / "tests").rglob("test_*.py")}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.stdout.write(out.stdout + out.stderr)
        print("error: pytest could not collect the tests", file=sys.stderr)
        return 1
    collected = {line.split("::")[0].split(": ")[0] for line in out.stdout.splitlines()}
    missing = sorted(on_disk - collected)
    if missing:
        print("error: test files the README's test command does not collect:", file=sys.stderr)
        for m in missing:
            print(f"  {m}", file=sys.stderr)
        return 1
    print(f"collection check: all {len(on_disk)} test files are collected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
