"""The SARIF that analyze and validate print is valid SARIF 2.1.0: checked
against the OASIS schema (tests/conformance/sarif, copied with its source and
terms), offline, with the formats jsonschema checks (uri, date-time: the
test extra installs jsonschema[format-nongpl] for them)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.analyze.helpers import run
from tests.conftest import EXAMPLES, REPO

SCHEMA = json.loads((REPO / "tests/conformance/sarif/sarif-schema-2.1.0.json").read_text())
FIXTURES = REPO / "tests/analyze/fixtures"


def _validator() -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(
        SCHEMA, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )


def _valid(log: dict) -> None:
    errors = sorted(_validator().iter_errors(log), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


def test_the_schema_is_the_sarif_2_1_0_schema():
    assert SCHEMA["properties"]["version"]["enum"] == ["2.1.0"]
    jsonschema.Draft4Validator.check_schema(SCHEMA)
    # helpUri must be an absolute URI: the check that makes --docs-url necessary
    assert "uri" in jsonschema.Draft4Validator.FORMAT_CHECKER.checkers


@pytest.mark.parametrize(
    "paths",
    [
        [str(EXAMPLES / "seed")],
        [str(EXAMPLES / "seed-fixed")],
        # every code at once: all the fixtures' findings in one log
        [str(FIXTURES / "base.yaml"), str(FIXTURES / "MA2001" / "fail.yaml")],
    ],
    ids=["seed", "seed-fixed", "fixture"],
)
def test_analyze_sarif_of_the_examples_is_valid(capsys, paths):
    for docs in ([], ["--docs-url", "https://example.com/meshauthz/docs/analyze.md"]):
        _, out, _ = run(capsys, "analyze", *paths, "-o", "sarif", *docs)
        log = json.loads(out)
        _valid(log)
        assert log["runs"][0]["tool"]["driver"]["name"] == "meshauthz"


def test_every_fixture_gives_valid_sarif(capsys):
    for d in sorted(p for p in FIXTURES.iterdir() if p.is_dir()):
        deep = ["--deep"] if d.name in ("MA2014", "MA2015", "MA2016") else []
        _, out, _ = run(
            capsys,
            "analyze",
            str(FIXTURES / "base.yaml"),
            str(d / "fail.yaml"),
            "-o",
            "sarif",
            *deep,
        )
        log = json.loads(out)
        _valid(log)
        assert d.name in {r["ruleId"] for r in log["runs"][0]["results"]}


def test_validate_sarif_is_valid(capsys):
    for path in ("examples/failing/broken-type-fixed.yaml", str(EXAMPLES / "seed")):
        _, out, _ = run(capsys, "validate", path, "-o", "sarif")
        _valid(json.loads(out))


def test_an_invalid_log_is_refused():
    # the check can fail: a level SARIF does not know
    _, log = (
        None,
        {
            "version": "2.1.0",
            "runs": [
                {
                    "tool": {"driver": {"name": "x"}},
                    "results": [{"message": {"text": "m"}, "level": "fatal"}],
                }
            ],
        },
    )
    assert list(_validator().iter_errors(log))
