"""The test-suite file format: ``*.test.yaml`` files of expected decisions.

A suite names the manifests it tests (``resources``: files, directories or
globs, relative to the suite file), optionally the mesh config (``mesh``), and
``cases``: a request in the format of ``check --request`` and the expected
outcome. The JSON schema is ``meshauthz/schemas/suite.schema.json``.

```yaml
resources: [.]
mesh: {rootNamespace: istio-system, trustDomain: cluster.local}
cases:
  - name: frontend reads data
    request: {from: default/frontend, to: default/backend, path: /api/v1/data}
    expect: DENY
  - name: pinned
    request: {from: default/frontend, to: default/backend}
    expect: {decision: DENY, status: 403, policy: default/deny-all-backend, rule: 0,
             dryRun: [{stage: DENY, result: denied}], audit: false}
```

``jwks`` (optional) maps a jwksUri to the keys istiod would fetch from it: a
JWKS file relative to the suite, or the JWKS itself.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from typing import Any

from msgspec import Struct, field
from msgspec.structs import replace

from meshauthz.decide.request_spec import RequestSpec, parse_request
from meshauthz.envoy.jwt_authn import jwks_problem
from meshauthz.errors import InputError, Location
from meshauthz.mesh.loading import JwksSource, JwksText
from meshauthz.resources.loader import MANIFEST_SUFFIXES, TEST_SUITE_SUFFIX, excluded
from meshauthz.resources.meshconfig import MeshConfig, MeshConfigError, mesh_config_from_data
from meshauthz.resources.yamlload import Document, Path, dotted, parse_documents, read_source

_SUITE_FIELDS = {"name", "description", "resources", "mesh", "jwks", "cases"}
_CASE_FIELDS = {"name", "request", "expect", "extAuthz", "description"}
_EXPECT_FIELDS = {
    "decision",
    "status",
    "stage",
    "policy",
    "rule",
    "dryRun",
    "audit",
    "auditPolicy",
    "enforcedBy",
}
_ENFORCERS = ("sidecar", "waypoint", "ztunnel")
_DRY_RUN_FIELDS = {"stage", "result", "policy", "rule"}
_DRY_RUN_STAGES = ("AUDIT", "DENY", "ALLOW")  # a filter of each can carry dry-run rules
_DRY_RUN_RESULTS = ("allowed", "denied")
_MESH_FIELDS = {
    "rootNamespace",
    "trustDomain",
    "trustDomainAliases",
    "pathNormalization",
    "extensionProviders",
}
_VERDICTS = ("ALLOW", "DENY")
_STAGES = (
    "no sidecar",
    "mTLS",
    "normalization",
    "CUSTOM",
    "JWT",
    "DENY",
    "ALLOW",
    "default",
    "error",
)
_UNSET: Any = object()


class DryRunExpectation(Struct, frozen=True):
    """One dry-run (shadow) result a case expects, as ``check -o json`` lists
    them: the stage whose filter carried the dry-run policies, what they would
    have done (``allowed``/``denied``; None: not checked) and which policy
    and rule decided that (unset: not checked; None: none)."""

    stage: str
    result: str | None = None
    policy: str | None = _UNSET
    rule: int | None = _UNSET

    @property
    def pins_policy(self) -> bool:
        return self.policy is not _UNSET

    @property
    def pins_rule(self) -> bool:
        return self.rule is not _UNSET

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stage": self.stage}
        if self.result is not None:
            out["result"] = self.result
        if self.pins_policy:
            out["policy"] = self.policy
        if self.pins_rule:
            out["rule"] = self.rule
        return out

    def describe(self) -> str:
        text = f"dry-run {self.stage}: {self.result or 'a result'}"
        if self.pins_policy:
            text += f" by {self.policy or 'no policy'}"
        if self.pins_rule:
            text += f" rule {'none' if self.rule is None else self.rule}"
        return text


class Expectation(Struct, frozen=True):
    """What a case expects. Fields left unset are not checked; ``policy`` and
    ``rule`` may be pinned to None (no policy decided). ``dry_run`` (when set)
    is every dry-run result, one per stage (``()``: no dry-run policy was
    evaluated); ``audit`` whether an AUDIT policy marked the request."""

    decision: str
    status: int | str | None = None
    stage: str | None = None
    policy: str | None = _UNSET
    rule: int | None = _UNSET
    dry_run: tuple[DryRunExpectation, ...] | None = None
    audit: bool | None = None
    audit_policy: str | None = _UNSET
    # The deciding enforcement point ("none": nothing enforces), or the path's list.
    enforced_by: str | tuple[str, ...] | None = None

    @property
    def pins_audit_policy(self) -> bool:
        return self.audit_policy is not _UNSET

    def pinned(self) -> set[str]:
        """The fields checked besides the decision, by their suite-file names."""
        out = {k for k, v in (("status", self.status), ("stage", self.stage)) if v is not None}
        out |= {"dryRun"} if self.dry_run is not None else set()
        out |= {"audit"} if self.audit is not None else set()
        out |= {"enforcedBy"} if self.enforced_by is not None else set()
        for name, pinned in (
            ("policy", self.pins_policy),
            ("rule", self.pins_rule),
            ("auditPolicy", self.pins_audit_policy),
        ):
            if pinned:
                out.add(name)
        return out

    def without(self, names: set[str]) -> Expectation:
        """The same expectation with the named fields (``pinned()``'s names) unchecked."""
        unset = {
            "status": None,
            "stage": None,
            "policy": _UNSET,
            "rule": _UNSET,
            "dryRun": None,
            "audit": None,
            "auditPolicy": _UNSET,
            "enforcedBy": None,
        }
        attr = {"dryRun": "dry_run", "auditPolicy": "audit_policy", "enforcedBy": "enforced_by"}
        return replace(self, **{attr.get(n, n): unset[n] for n in names})

    @property
    def pins_policy(self) -> bool:
        return self.policy is not _UNSET

    @property
    def pins_rule(self) -> bool:
        return self.rule is not _UNSET

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"decision": self.decision}
        if self.status is not None:
            out["status"] = self.status
        if self.stage is not None:
            out["stage"] = self.stage
        if self.pins_policy:
            out["policy"] = self.policy
        if self.pins_rule:
            out["rule"] = self.rule
        if self.dry_run is not None:
            out["dryRun"] = [d.to_json() for d in self.dry_run]
        if self.audit is not None:
            out["audit"] = self.audit
        if self.pins_audit_policy:
            out["auditPolicy"] = self.audit_policy
        if self.enforced_by is not None:
            eb = self.enforced_by
            out["enforcedBy"] = eb if isinstance(eb, str) else list(eb)
        return out

    def describe(self) -> str:
        parts = [self.decision]
        if self.status is not None:
            parts.append(f"status {self.status}")
        if self.stage is not None:
            parts.append(f"stage {self.stage}")
        if self.pins_policy:
            parts.append(f"policy {self.policy or 'none'}")
        if self.pins_rule:
            parts.append(f"rule {'none' if self.rule is None else self.rule}")
        if self.dry_run is not None:
            parts += [d.describe() for d in self.dry_run] or ["no dry-run result"]
        if self.audit is not None:
            parts.append("audited" if self.audit else "not audited")
        if self.pins_audit_policy:
            parts.append(f"audited by {self.audit_policy or 'no policy'}")
        if self.enforced_by is not None:
            eb = self.enforced_by
            parts.append(f"enforced by {eb if isinstance(eb, str) else ' -> '.join(eb)}")
        return ", ".join(parts)


class Case(Struct, frozen=True):
    name: str
    request: RequestSpec
    expect: Expectation
    location: Location
    ext_authz: str | None = None  # "allow" | "deny": the CUSTOM provider's assumed answer


class Suite(Struct):
    file: str
    name: str
    resources: list[str]  # the manifest files and directories, resolved
    cases: list[Case]
    mesh: MeshConfig | None = None
    description: str | None = None
    location: Location | None = None
    resource_patterns: list[str] = field(default_factory=list)
    # jwksUri -> the keys istiod would fetch from it: a file (resolved) or inline JWKS
    jwks: dict[str, JwksSource] = field(default_factory=dict)


def find_suites(paths: list[str], exclude: Sequence[str] = ()) -> list[str]:
    """Suite files under ``paths``: files as given, directories searched
    recursively (hidden directories and what ``exclude`` matches skipped, as
    ``collect_files`` skips them) for ``*.test.yaml``."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                rel_root = os.path.relpath(root, p)
                dirs[:] = sorted(
                    d
                    for d in dirs
                    if not d.startswith(".")
                    and not excluded(p, os.path.normpath(os.path.join(rel_root, d)), exclude)
                )
                out.extend(
                    os.path.join(root, f)
                    for f in sorted(files)
                    if f.endswith(TEST_SUITE_SUFFIX)
                    and not excluded(p, os.path.normpath(os.path.join(rel_root, f)), exclude)
                )
        elif os.path.exists(p):
            out.append(p)
        else:
            raise InputError("no such file or directory", location=Location(p))
    seen: set[str] = set()
    unique = []
    for f in out:
        key = os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def load_suite(path: str) -> Suite:
    """Read and check one suite file. Raises InputError naming file, line and field."""
    display, text = read_source(path, "a test suite")
    docs = parse_documents(text, display)
    if not docs:
        raise InputError("the suite file is empty", location=Location(display, 1))
    if len(docs) > 1:
        raise InputError(
            "a suite file holds one YAML document",
            location=Location(display, docs[1].line),
        )
    return _SuiteParser(docs[0], path).suite()


class _SuiteParser:
    def __init__(self, doc: Document, path: str) -> None:
        self.doc = doc
        self.path = path
        self.base_dir = os.path.dirname(path) or "."

    def fail(self, path: Path, message: str) -> InputError:
        return InputError(message, location=self.doc.location(path), field=dotted(path) or None)

    def check_fields(self, data: dict[str, Any], known: set[str], path: Path) -> None:
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise self.fail(
                (*path, unknown[0]),
                f'unknown field "{unknown[0]}"; known fields: {", ".join(sorted(known))}',
            )

    def suite(self) -> Suite:
        data = self.doc.data
        if not isinstance(data, dict):
            raise self.fail((), "a suite must be a mapping with resources and cases")
        self.check_fields(data, _SUITE_FIELDS, ())
        if "resources" not in data:
            raise self.fail((), 'a suite needs "resources": manifest files, directories or globs')
        patterns = data["resources"]
        if isinstance(patterns, str):
            patterns = [patterns]
            resources = self.resources(patterns, single=True)
        else:
            resources = self.resources(patterns, single=False)
        mesh = self.mesh(data["mesh"]) if data.get("mesh") is not None else None
        jwks = self.jwks(data["jwks"]) if data.get("jwks") is not None else {}
        cases_raw = data.get("cases")
        if not isinstance(cases_raw, list) or not cases_raw:
            raise self.fail(("cases",), 'a suite needs "cases": a non-empty list')
        cases = [self.case(c, i) for i, c in enumerate(cases_raw)]
        seen: dict[str, int] = {}
        for i, c in enumerate(cases):
            if c.name in seen:
                raise self.fail(
                    ("cases", i, "name"),
                    f"duplicate case name {c.name!r} (also case {seen[c.name]})",
                )
            seen[c.name] = i
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            raise self.fail(("name",), "expected a string")
        description = data.get("description")
        if description is not None and not isinstance(description, str):
            raise self.fail(("description",), "expected a string")
        default_name = os.path.basename(self.path).removesuffix(TEST_SUITE_SUFFIX)
        return Suite(
            file=self.doc.file,
            name=name or default_name,
            resources=resources,
            cases=cases,
            mesh=mesh,
            description=description,
            location=self.doc.location(()),
            resource_patterns=list(patterns),
            jwks=jwks,
        )

    def resources(self, patterns: Any, *, single: bool) -> list[str]:
        if not isinstance(patterns, list) or not patterns:
            raise self.fail(("resources",), "expected a path or a non-empty list of paths")
        out: list[str] = []
        for i, pat in enumerate(patterns):
            p: Path = ("resources",) if single else ("resources", i)
            if not isinstance(pat, str) or not pat:
                raise self.fail(p, "expected a path (a file, directory or glob)")
            full = pat if os.path.isabs(pat) else os.path.join(self.base_dir, pat)
            full = os.path.normpath(full)
            if glob.has_magic(pat):
                hits = sorted(glob.glob(full, recursive=True))
                # A glob such as *.yaml would match suites too: they are not manifests.
                hits = [
                    h
                    for h in hits
                    if os.path.isdir(h)
                    or (h.endswith(MANIFEST_SUFFIXES) and not h.endswith(TEST_SUITE_SUFFIX))
                ]
                if not hits:
                    raise self.fail(p, f"the glob {pat!r} matches no manifest")
                out.extend(hits)
            elif os.path.exists(full):
                out.append(full)
            else:
                raise self.fail(p, f"no such file or directory: {pat!r} (relative to the suite)")
        return list(dict.fromkeys(out))  # each file once, in the order first named

    def jwks(self, data: Any) -> dict[str, JwksSource]:
        """``jwks: {URI: FILE | JWKS}``: what ``--jwks URI=FILE`` gives check and
        mesh up. A string is a file relative to the suite, unless it is JSON text
        (starts with ``{``); a mapping is the JWKS itself."""
        if not isinstance(data, dict):
            raise self.fail(("jwks",), "expected a mapping of jwksUri to a JWKS file or a JWKS")
        out: dict[str, JwksSource] = {}
        for uri, value in data.items():
            path: Path = ("jwks", str(uri))
            if not isinstance(uri, str) or not uri:
                raise self.fail(path, "expected a jwksUri as the key")
            if isinstance(value, dict):
                if not isinstance(value.get("keys"), list):
                    raise self.fail(path, 'an inline JWKS needs "keys": a list of keys')
                text = json.dumps(value)
                out[uri] = JwksText(text)
            elif isinstance(value, str) and value.lstrip().startswith("{"):
                text = value
                out[uri] = JwksText(value)
            elif isinstance(value, str) and value:
                full = os.path.normpath(
                    value if os.path.isabs(value) else os.path.join(self.base_dir, value)
                )
                if not os.path.isfile(full):
                    raise self.fail(path, f"no such file: {value!r} (relative to the suite)")
                try:
                    with open(full, encoding="utf-8") as f:
                        text = f.read()
                except (OSError, UnicodeDecodeError) as e:
                    why = e.strerror if isinstance(e, OSError) and e.strerror else "not UTF-8"
                    raise self.fail(path, f"cannot read {value!r}: {why}") from None
                out[uri] = full
            else:
                raise self.fail(path, "expected a JWKS file (relative to the suite) or a JWKS")
            problem = jwks_problem(text)
            if problem is not None:
                raise self.fail(path, problem)
        return out

    def mesh(self, data: Any) -> MeshConfig:
        if not isinstance(data, dict):
            raise self.fail(("mesh",), "expected a mapping (rootNamespace, trustDomain, ...)")
        self.check_fields(data, _MESH_FIELDS, ("mesh",))
        data = dict(data)
        pn = data.get("pathNormalization")
        if isinstance(pn, str):  # shorthand: pathNormalization: MERGE_SLASHES
            data["pathNormalization"] = {"normalization": pn}
        try:
            return mesh_config_from_data(data, lambda p: self.doc.location(("mesh", *p)))
        except MeshConfigError as e:
            raise self.fail(("mesh", *e.path), str(e)) from None

    def case(self, data: Any, i: int) -> Case:
        base: Path = ("cases", i)
        if not isinstance(data, dict):
            raise self.fail(base, "a case must be a mapping with name, request and expect")
        self.check_fields(data, _CASE_FIELDS, base)
        for key in ("name", "request", "expect"):
            if key not in data:
                raise self.fail(base, f'a case needs "{key}"')
        name = data["name"]
        if not isinstance(name, str) or not name:
            raise self.fail((*base, "name"), "expected a non-empty string")
        try:
            request = parse_request(self.doc, (*base, "request"))
        except InputError as e:  # name the field from the top of the suite
            prefix = dotted((*base, "request"))
            raise InputError(
                e.message,
                location=e.location,
                field=f"{prefix}.{e.field}" if e.field else prefix,
            ) from None
        ext = data.get("extAuthz")
        if ext is not None and ext not in ("allow", "deny"):
            raise self.fail((*base, "extAuthz"), f'expected "allow" or "deny", got {ext!r}')
        return Case(
            name=name,
            request=request,
            expect=self.expect(data["expect"], (*base, "expect")),
            location=self.doc.location(base),
            ext_authz=ext,
        )

    def expect(self, data: Any, path: Path) -> Expectation:
        if isinstance(data, str):
            return Expectation(self.verdict(data, path))
        if not isinstance(data, dict):
            raise self.fail(path, "expected ALLOW, DENY or a mapping with decision")
        self.check_fields(data, _EXPECT_FIELDS, path)
        if "decision" not in data:
            raise self.fail(path, 'an expectation needs "decision": ALLOW or DENY')
        verdict = self.verdict(data["decision"], (*path, "decision"))
        status = data.get("status")
        if status is not None:
            if isinstance(status, bool) or not isinstance(status, int | str):
                raise self.fail(
                    (*path, "status"),
                    'expected an HTTP status (200, 403, 401, ...), "connection reset" or "connected"',
                )
            if isinstance(status, str) and status.isdigit():
                status = int(status)
        stage = data.get("stage")
        if stage is not None and stage not in _STAGES:
            raise self.fail((*path, "stage"), f"expected one of {', '.join(_STAGES)}")
        policy = self.policy_pin(data, path, "policy")
        rule = self.rule_pin(data, path)
        dry_run = None
        if "dryRun" in data:
            dry_run = self.dry_run(data["dryRun"], (*path, "dryRun"))
        audit = data.get("audit")
        if audit is not None and not isinstance(audit, bool):
            raise self.fail((*path, "audit"), "expected true or false")
        audit_policy = self.policy_pin(data, path, "auditPolicy")
        enforced_by = self.enforced_by(data.get("enforcedBy"), path)
        return Expectation(
            verdict, status, stage, policy, rule, dry_run, audit, audit_policy, enforced_by
        )

    def enforced_by(self, value: Any, path: Path) -> str | tuple[str, ...] | None:
        if value is None:
            return None
        if isinstance(value, str) and value in (*_ENFORCERS, "none"):
            return value
        if isinstance(value, list) and all(isinstance(v, str) and v in _ENFORCERS for v in value):
            return tuple(value)
        raise self.fail(
            (*path, "enforcedBy"),
            "expected sidecar, waypoint, ztunnel or none, or a list of sidecar, waypoint, ztunnel",
        )

    def policy_pin(self, data: dict[str, Any], path: Path, key: str) -> Any:
        policy = data.get(key, _UNSET)
        if (
            policy is not _UNSET
            and policy is not None
            and (
                not isinstance(policy, str) or policy.count("/") != 1 or not all(policy.split("/"))
            )
        ):
            raise self.fail((*path, key), 'expected "namespace/name" (or null for none)')
        return policy

    def rule_pin(self, data: dict[str, Any], path: Path) -> Any:
        rule = data.get("rule", _UNSET)
        if (
            rule is not _UNSET
            and rule is not None
            and (isinstance(rule, bool) or not isinstance(rule, int) or rule < 0)
        ):
            raise self.fail((*path, "rule"), "expected a rule index (0, 1, ...) or null")
        return rule

    def dry_run(self, data: Any, path: Path) -> tuple[DryRunExpectation, ...]:
        if not isinstance(data, list):
            raise self.fail(path, "expected a list of dry-run results ([] for none)")
        out: list[DryRunExpectation] = []
        for i, item in enumerate(data):
            p: Path = (*path, i)
            if not isinstance(item, dict):
                raise self.fail(p, "expected a mapping with stage (and result, policy, rule)")
            self.check_fields(item, _DRY_RUN_FIELDS, p)
            stage = item.get("stage")
            if stage not in _DRY_RUN_STAGES:
                raise self.fail((*p, "stage"), f"expected one of {', '.join(_DRY_RUN_STAGES)}")
            if any(d.stage == stage for d in out):
                raise self.fail((*p, "stage"), f"{stage} is listed twice (one result per stage)")
            result = item.get("result")
            if result is not None and result not in _DRY_RUN_RESULTS:
                raise self.fail((*p, "result"), 'expected "allowed" or "denied"')
            out.append(
                DryRunExpectation(
                    stage, result, self.policy_pin(item, p, "policy"), self.rule_pin(item, p)
                )
            )
        return tuple(out)

    def verdict(self, value: Any, path: Path) -> str:
        if not isinstance(value, str) or value.upper() not in _VERDICTS:
            raise self.fail(path, f"expected ALLOW or DENY, got {value!r}")
        return value.upper()
