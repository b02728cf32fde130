"""Running ``meshauthz analyze`` in-process, as the command line runs it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meshauthz.cli.main import main
from tests.conftest import EXAMPLES

SEED = str(EXAMPLES / "seed")
FIXED = str(EXAMPLES / "seed-fixed")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exc.value.code or 0), out, err


def analyze_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = run(capsys, "analyze", *args, "-o", "json")
    return code, json.loads(out)


def codes(doc: dict[str, Any]) -> list[str]:
    return [f["code"] for f in doc["findings"]]
