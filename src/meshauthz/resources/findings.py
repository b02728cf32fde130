"""Findings: what validation (and later, analysis) reports about resources."""

from __future__ import annotations

from typing import Any, Literal

from msgspec import Struct

from meshauthz.errors import Location

Severity = Literal["error", "warning", "info"]


class Finding(Struct, frozen=True):
    severity: Severity
    code: str
    message: str
    location: Location
    kind: str = ""
    namespace: str = ""
    name: str = ""
    field: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "resource": {"kind": self.kind, "namespace": self.namespace, "name": self.name},
            "field": self.field,
        }

    def to_text(self) -> str:
        what = f"{self.kind} {self.namespace}/{self.name}" if self.kind else ""
        where = f"{self.field}: " if self.field else ""
        head = f"{self.location}: {self.severity}[{self.code}]"
        return f"{head} {what}: {where}{self.message}" if what else f"{head} {where}{self.message}"
