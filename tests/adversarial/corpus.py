"""A corpus of a real Envoy's answers: one JSON object a line, recorded by a probe
script and compared with meshauthz by a test. One command line for every probe:

    .venv/bin/python -m tests.adversarial.<probe>           # re-record
    .venv/bin/python -m tests.adversarial.<probe> --check   # compare only
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def load(path: Path) -> list[Row]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def main(path: Path, record: Callable[[], list[Row]], description: str) -> int:
    """Re-record ``path`` with ``record`` (a run of a real Envoy), or with
    ``--check`` compare and exit 1 on any difference."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--check", action="store_true", help="compare with the corpus, write nothing")
    args = ap.parse_args()
    # as the corpus file holds them (tuples become lists), so equal rows compare equal
    rows = [json.loads(json.dumps(r, ensure_ascii=True)) for r in record()]
    if args.check:
        old = load(path)
        diff = [(a, b) for a, b in zip(old, rows, strict=False) if a != b]
        if diff or len(old) != len(rows):
            for a, b in diff[:20]:
                print(f"corpus {a} / envoy {b}")
            print(f"{len(diff)} rows differ ({len(old)} in corpus, {len(rows)} recorded)")
            return 1
        print(f"{len(rows)} rows agree")
        return 0
    path.write_text("".join(json.dumps(r, ensure_ascii=True) + "\n" for r in rows))
    print(f"wrote {len(rows)} rows to {path}")
    return 0
