"""Collecting findings about one resource, each at the line of its field."""

from __future__ import annotations

from meshauthz.resources.findings import Finding, Severity
from meshauthz.resources.objects import Resource
from meshauthz.resources.yamlload import dotted

FieldPath = tuple[str | int, ...]


class Report:
    """Findings about one resource. Paths are relative to the object, e.g. ("spec", "rules", 0)."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.findings: list[Finding] = []
        self._seen: set[tuple[str, str, str]] = set()

    def add(self, severity: Severity, code: str, message: str, path: FieldPath) -> None:
        field = dotted(path)
        key = (severity, code, field)
        if key in self._seen:  # Istio's webhook and the CRD schema often say the same thing
            return
        self._seen.add(key)
        r = self.resource
        self.findings.append(
            Finding(
                severity,
                code,
                message,
                r.location(*path),
                r.kind,
                r.namespace,
                r.name,
                field,
            )
        )

    def error(self, code: str, message: str, *path: str | int) -> None:
        self.add("error", code, message, path)

    def warning(self, code: str, message: str, *path: str | int) -> None:
        self.add("warning", code, message, path)


def field_name(path: FieldPath) -> str:
    return dotted(path)
