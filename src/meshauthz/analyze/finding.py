"""The analyzer's one finding type: a code from the catalogue (``codes``), where
it is written, what it is about, and the request that shows it (``Witness``)."""

from __future__ import annotations

from typing import Any

from msgspec import Struct

from meshauthz.analyze.codes import CODES, Code
from meshauthz.errors import Location
from meshauthz.records import Record
from meshauthz.resources.findings import Severity
from meshauthz.resources.objects import Resource
from meshauthz.resources.yamlload import dotted

SEVERITY_RANK: dict[Severity, int] = {"info": 0, "warning": 1, "error": 2}


class Witness(Struct, frozen=True):
    """A request that shows the finding, in the request format (``check --request``),
    with the decision the one decision path (``decide``) gave it."""

    request: dict[str, Any]
    decision: str  # "ALLOW" | "DENY"
    stage: str
    policy: str | None
    rule: int | None
    status: int | str

    def to_json(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "decision": self.decision,
            "status": self.status,
            "stage": self.stage,
            "policy": self.policy,
            "rule": self.rule,
        }

    def describe(self) -> str:
        """The request in a few words, then the decision."""
        r = self.request
        src = r["from"]
        if isinstance(src, dict):
            if src.get("plaintext"):
                who = "a plaintext caller" + (f" at {src['ip']}" if src.get("ip") else "")
            elif src.get("principal"):
                who = src["principal"]
            else:
                who = src.get("workload", "?")
        else:
            who = str(src)
        to = r["to"] + (f" port {r['port']}" if r.get("port") else "")
        if r.get("protocol") == "tcp":
            what = "TCP"
        else:
            what = f"{r.get('method', 'GET')} {r.get('path', '/')}"
            if r.get("host"):
                what += f" (Host {r['host']})"
            jwt = r.get("jwt")
            if isinstance(jwt, dict):
                what += f" (token of {jwt.get('iss', '?')}/{jwt.get('sub', '?')})"
            hdrs = r.get("headers") or {}
            for k, v in hdrs.items():
                what += f" ({k}: {v})"
        return f"{what} from {who} to {to}: {self.decision} ({self.status}) {self._by()}"

    def _by(self) -> str:
        if self.policy:
            return f"by {self.policy} rule {self.rule}"
        return {
            "ALLOW": "as no ALLOW rule matches",
            "default": "as no policy decides",
            "mTLS": "by mTLS (STRICT)",
        }.get(self.stage, f"at the {self.stage} stage")


class AnalysisFinding(Record, frozen=True):
    code: str  # a key of CODES, e.g. "MA2001"
    message: str
    location: Location
    kind: str
    namespace: str
    name: str
    field: str = ""
    fix: str = ""
    witness: Witness | None = None
    severity_override: Severity | None = None
    annotations: dict[str, str] = {}

    provenance = ("annotations",)

    @property
    def info(self) -> Code:
        return CODES[self.code]

    @property
    def severity(self) -> Severity:
        return self.severity_override or self.info.severity

    @property
    def equivalents(self) -> tuple[str, ...]:
        return self.info.equivalents

    @property
    def resource_key(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def sort_key(self) -> tuple[str, int, int, str, str]:
        loc = self.location
        return (loc.file, loc.line or 0, loc.column or 0, self.code, self.field)

    def to_json(self) -> dict[str, Any]:
        loc = self.location
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "file": loc.file,
            "line": loc.line,
            "column": loc.column,
            "resource": {"kind": self.kind, "namespace": self.namespace, "name": self.name},
            "field": self.field,
            "equivalents": list(self.equivalents),
            "fix": self.fix,
            "witness": self.witness.to_json() if self.witness else None,
        }

    def text_lines(self) -> list[str]:
        what = f"{self.kind} {self.resource_key}"
        where = f"{self.field}: " if self.field else ""
        eq = f" (as {', '.join(self.equivalents)})" if self.equivalents else ""
        lines = [f"{self.location}: {self.severity}[{self.code}]{eq} {what}: {where}{self.message}"]
        if self.witness is not None:
            lines.append(f"  witness: {self.witness.describe()}")
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return lines


def at(resource: Resource, *path: str | int) -> dict[str, Any]:
    """The location, resource and field arguments of a finding about ``path`` of
    ``resource`` (the field spelled as validate spells it)."""
    return {
        "location": resource.location(*path),
        "kind": resource.kind,
        "namespace": resource.namespace,
        "name": resource.name,
        "field": dotted(path) if path else "",
        "annotations": dict(resource.annotations),
    }
