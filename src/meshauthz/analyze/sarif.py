"""SARIF 2.1.0 (OASIS), the format GitHub code scanning and other CI tools read:
one rule per code, one result per finding."""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from typing import Any

from msgspec import Struct, field

from meshauthz import __version__
from meshauthz.analyze.codes import CODES
from meshauthz.analyze.finding import AnalysisFinding
from meshauthz.errors import Location
from meshauthz.resources.findings import Finding, Severity

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL: dict[Severity, str] = {"error": "error", "warning": "warning", "info": "note"}


class SarifRule(Struct, frozen=True):
    id: str
    name: str
    short: str
    full: str
    help: str
    help_uri: str | None
    level: Severity
    tags: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "shortDescription": {"text": self.short},
            "fullDescription": {"text": self.full},
            "help": {"text": self.help},
            "defaultConfiguration": {"level": _LEVEL[self.level]},
        }
        if self.help_uri:
            doc["helpUri"] = self.help_uri
        if self.tags:
            doc["properties"] = {"tags": list(self.tags)}
        return doc


class SarifResult(Struct, frozen=True):
    rule_id: str
    level: Severity
    message: str
    location: Location
    properties: dict[str, Any] = field(default_factory=dict)


def _uri(file: str) -> str:
    return urllib.parse.quote(file.replace("\\", "/"), safe="/:@-._~")


def _location(loc: Location) -> dict[str, Any]:
    phys: dict[str, Any] = {"artifactLocation": {"uri": _uri(loc.file)}}
    if loc.line is not None and loc.line >= 1:
        region: dict[str, Any] = {"startLine": loc.line}
        if loc.column is not None and loc.column >= 1:
            region["startColumn"] = loc.column
        phys["region"] = region
    return {"physicalLocation": phys}


def sarif_log(rules: Sequence[SarifRule], results: Sequence[SarifResult]) -> dict[str, Any]:
    index = {r.id: i for i, r in enumerate(rules)}
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "meshauthz",
                        "version": __version__,
                        "rules": [r.to_json() for r in rules],
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": [
                    {
                        "ruleId": res.rule_id,
                        "ruleIndex": index[res.rule_id],
                        "level": _LEVEL[res.level],
                        "message": {"text": res.message},
                        "locations": [_location(res.location)],
                        **({"properties": res.properties} if res.properties else {}),
                    }
                    for res in results
                ],
            }
        ],
    }


def analysis_rules(docs_url: str | None = None) -> list[SarifRule]:
    """One rule per analyzer code, in code order. ``docs_url``: the absolute URI
    of docs/analyze.md (SARIF's helpUri must be absolute); None: no helpUri,
    the help names the page in the repository."""
    return [
        SarifRule(
            c.code,
            c.name,
            c.short,
            c.full,
            f"{c.full} See {c.doc} in the meshauthz repository."
            + (f" Reported by other tools as {', '.join(c.equivalents)}." if c.equivalents else ""),
            c.help_uri(docs_url) if docs_url else None,
            c.severity,
            c.equivalents,
        )
        for c in sorted(CODES.values(), key=lambda c: c.code)
    ]


def analysis_sarif(
    findings: Sequence[AnalysisFinding], docs_url: str | None = None
) -> dict[str, Any]:
    results = []
    for f in findings:
        text = f.message
        if f.witness is not None:
            text += f". Witness: {f.witness.describe()}"
        if f.fix:
            text += f". Fix: {f.fix}"
        doc = f.to_json()
        results.append(
            SarifResult(
                f.code,
                f.severity,
                f"{f.kind} {f.resource_key}: {text}",
                f.location,
                {k: doc[k] for k in ("resource", "field", "equivalents", "fix", "witness")},
            )
        )
    return sarif_log(analysis_rules(docs_url), results)


def validation_sarif(findings: Sequence[Finding]) -> dict[str, Any]:
    """``validate -o sarif``: one rule per validation code found."""
    codes: dict[str, Severity] = {}
    for f in findings:
        codes.setdefault(f.code, f.severity)
    rules = [
        SarifRule(
            code,
            code,
            f"Istio's validation: {code}",
            f"Istio's validation (the CRD schema or the validating webhook) reports '{code}'; "
            "an error means a cluster rejects the object.",
            "The finding's message says what is wrong and where; meshauthz/resources/"
            "validation/__init__.py lists every validation code.",
            None,
            sev,
        )
        for code, sev in sorted(codes.items())
    ]
    results = [
        SarifResult(
            f.code,
            f.severity,
            (f"{f.kind} {f.namespace}/{f.name}: " if f.kind else "")
            + (f"{f.field}: " if f.field else "")
            + f.message,
            f.location,
            {
                "resource": {"kind": f.kind, "namespace": f.namespace, "name": f.name},
                "field": f.field,
            },
        )
        for f in findings
    ]
    return sarif_log(rules, results)


__all__ = [
    "SarifResult",
    "SarifRule",
    "analysis_rules",
    "analysis_sarif",
    "sarif_log",
    "validation_sarif",
]
