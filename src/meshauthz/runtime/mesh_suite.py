"""``meshauthz test --mesh NAME``: a suite's cases sent through a running local mesh.

Each case that meshauthz decided is sent as ``mesh curl`` sends a request:
from the calling workload's address through its sidecar (or, for a plaintext
caller, straight to the destination's sidecar), to the Service its Host
names, with exactly the case's method, path, headers and token. The mesh's
answer is what the client saw (status, or a reset connection) and what the
destination sidecar's access log records (the deciding stage, policy and
rule, the dry-run results, the AUDIT hint). It is compared with the case's
expectation and with meshauthz's own decision.

A case the mesh cannot express is not run, and says why: the mesh sends only
from its workloads' own addresses and certificates, with signed tokens (not
claims taken as signed), through Services, and does not run CUSTOM
providers. An expectation that pins what the access log does not record for
that request (the policy of a TCP decision, the AUDIT policy, ...) is not run
either, once what can be observed agrees: a case is never passed unchecked.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any, Literal

from msgspec import Struct, field

from meshauthz.decide.cause import Stage
from meshauthz.decide.decision import DryRunResult
from meshauthz.decide.request import Request
from meshauthz.decide.request_spec import RequestSpec
from meshauthz.errors import MeshauthzError
from meshauthz.mesh import MeshSnapshot, select_policies
from meshauthz.mesh.loading import JwksSource, JwksText
from meshauthz.mesh.ports import resolve_target_port
from meshauthz.resources.loader import collect_files
from meshauthz.resources.objects import AuthorizationPolicy
from meshauthz.runtime import client
from meshauthz.runtime.controlplane import load_plan_snapshot
from meshauthz.runtime.plan import MeshPlan
from meshauthz.runtime.supervisor import is_running, read_json
from meshauthz.suite.runner import CaseResult, RunResult, SuiteResult, compare

MeshOutcome = Literal["pass", "fail", "not-run"]
# Headers a case cannot set through mesh curl: the Host is the URL's, the request
# id finds the log entry, the body framing is the client's.
_UNSENDABLE = ("host", "x-request-id", "content-length", "transfer-encoding")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# The stages whose dry-run results the access log records (istiod's stat prefixes).
_LOGGED_DRY_RUN = ("DENY", "ALLOW")


class MeshAnswer(Struct, frozen=True):
    """What the mesh did with a case's request. ``observed`` names the fields
    (the suite-file names) that the client and the access log established."""

    verdict: str
    status: int | str
    observed: frozenset[str]
    stage: str = ""
    policy: str | None = None
    rule: int | None = None
    dry_run: tuple[DryRunResult, ...] = ()
    audit: bool = False
    audit_policy: str | None = None
    request_id: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"decision": self.verdict, "status": self.status}
        if "stage" in self.observed:
            out.update(stage=self.stage, policy=self.policy, rule=self.rule)
        if "dryRun" in self.observed:
            out["dryRun"] = [d.to_json() for d in self.dry_run]
        if "audit" in self.observed:
            out["audit"] = self.audit
        out["requestId"] = self.request_id
        return out


class MeshCaseResult(Struct):
    suite: SuiteResult
    case: CaseResult
    outcome: MeshOutcome
    reason: str | None = None  # why it was not run
    answer: MeshAnswer | None = None
    mismatches: list[str] = field(default_factory=list)  # the expectation vs the mesh
    differs: list[str] = field(default_factory=list)  # meshauthz's decision vs the mesh

    def to_json(self) -> dict[str, Any]:
        return {
            "result": self.outcome,
            "reason": self.reason,
            "actual": self.answer.to_json() if self.answer else None,
            "mismatches": self.mismatches,
            "differsFromMeshauthz": self.differs,
        }


class MeshRun(Struct):
    plan: MeshPlan
    cases: list[MeshCaseResult]
    # suite file -> a note: its manifests are not the ones the mesh runs
    notes: dict[str, str] = field(default_factory=dict)

    def count(self, outcome: MeshOutcome) -> int:
        return sum(1 for c in self.cases if c.outcome == outcome)

    @property
    def differ(self) -> int:
        return sum(1 for c in self.cases if c.differs)

    @property
    def ok(self) -> bool:
        return not self.count("fail") and not self.differ

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.plan.name,
            "stateDir": str(self.plan.state),
            "passed": self.count("pass"),
            "failed": self.count("fail"),
            "notRun": self.count("not-run"),
            "differFromMeshauthz": self.differ,
            "notes": [{"file": f, "note": n} for f, n in self.notes.items()],
        }


class NotRun(Exception):
    """The mesh cannot send this case as written."""


def check_mesh(plan: MeshPlan) -> None:
    """The mesh must be running and enforcing its manifests as they are."""
    if not is_running(plan.state):
        raise MeshauthzError(f"mesh {plan.name} is not running (state {plan.state})")
    status = read_json(plan.state / "status.json") or {}
    if status.get("lastError") or status.get("failClosed"):
        raise MeshauthzError(
            f"mesh {plan.name} is not enforcing its manifests as they are (a change was not "
            "applied, or a sidecar fails closed): see meshauthz mesh status"
        )


def run_on_mesh(result: RunResult, plan: MeshPlan, *, timeout: float = 10.0) -> MeshRun:
    """Send every decided case of ``result`` through the mesh and compare."""
    check_mesh(plan)
    snapshot = load_plan_snapshot(plan)  # read as mesh up read them (-n, --exclude)
    theirs = {os.path.realpath(f) for f in collect_files([plan.manifests], plan.exclude)}
    run = MeshRun(plan, [])
    for s in result.suites:
        if s.suite is not None and s.cases:
            mine = {os.path.realpath(f) for f in collect_files(s.suite.resources)}
            if mine != theirs:
                run.notes[s.file] = (
                    f"the suite's manifests are not the ones mesh {plan.name} runs "
                    f"({plan.manifests}): where they differ, so may the answers"
                )
        for c in s.cases:
            run.cases.append(_run_case(s, c, plan, snapshot, timeout))
    return run


def _run_case(
    s: SuiteResult, c: CaseResult, plan: MeshPlan, snapshot: MeshSnapshot, timeout: float
) -> MeshCaseResult:
    if c.request is None or c.decision is None or c.outcome in ("error", "internal-error"):
        return MeshCaseResult(s, c, "not-run", "meshauthz could not decide the case")
    try:
        caller, url, host, headers, plaintext = _expressible(s, c, plan, snapshot)
        resp = client.send(
            plan,
            snapshot,
            caller,
            url,
            host=host,
            method=c.request.method,
            headers=headers,
            plaintext=plaintext,
            timeout=timeout,
            curl_headers=False,
        )
    except NotRun as e:
        return MeshCaseResult(s, c, "not-run", str(e))
    except client.CurlError as e:
        return MeshCaseResult(s, c, "not-run", f"the mesh cannot send it: {e}")
    except (ValueError, UnicodeError) as e:  # what http.client refuses to put on the wire
        return MeshCaseResult(s, c, "not-run", f"an HTTP client cannot send it: {e}")
    answer = _answer(plan, resp)
    expect = c.case.expect
    unobserved = expect.pinned() - answer.observed
    if expect.dry_run and any(d.stage not in _LOGGED_DRY_RUN for d in expect.dry_run):
        unobserved.add("dryRun")
    mismatches = compare(expect.without(unobserved), answer)
    differs = _differs(c, answer)
    if mismatches:
        return MeshCaseResult(s, c, "fail", None, answer, mismatches, differs)
    if unobserved:
        why = (
            f"sent, but the mesh's access log does not establish {', '.join(sorted(unobserved))} "
            "for this request, which the case expects"
        )
        return MeshCaseResult(s, c, "not-run", why, answer, [], differs)
    return MeshCaseResult(s, c, "pass", None, answer, [], differs)


def _expressible(
    s: SuiteResult, c: CaseResult, plan: MeshPlan, snapshot: MeshSnapshot
) -> tuple[str, str, str, list[tuple[str, str]], bool]:
    """The caller, URL, Host, headers and plaintext flag that send the case; NotRun
    naming what the mesh cannot do."""
    spec: RequestSpec = c.case.request
    r = c.request
    assert r is not None and s.suite is not None
    if s.suite.mesh is not None and s.suite.mesh != snapshot.mesh_config:
        raise NotRun("the suite's mesh config differs from the mesh's")
    src = spec.source
    if src.workload is None:
        raise NotRun("the caller is not a workload: the mesh sends only from its workloads")
    if src.principal is not None or src.namespace is not None:
        raise NotRun("the case sets the caller's identity: the mesh's callers use their own")
    if src.ip is not None:
        raise NotRun("the case sets the caller's address: the mesh's callers use their own")
    caller = plan.workloads.get(src.workload)
    if caller is None:
        raise NotRun(f"the mesh has no workload {src.workload}")
    if spec.remote_ip is not None:
        raise NotRun("remoteIP: a sidecar takes the remote address from the connection")
    if spec.sni is not None:
        raise NotRun("sni: the caller's sidecar sets the TLS server name itself")
    if spec.jwt is not None:
        raise NotRun("jwt: claims taken as signed; the mesh verifies tokens (use token:)")
    _check_keys(s, spec, plan)
    custom = [p.key for p in _policies(snapshot, r.destination.key) if p.spec.action == "CUSTOM"]
    if custom:
        raise NotRun(f"CUSTOM policies are not run by the local mesh ({', '.join(custom)})")
    dest = plan.workloads.get(r.destination.key)
    if dest is None:
        raise NotRun(f"the mesh has no workload {r.destination.key}")
    if dest.sidecar and dest.inbound.get(r.port, r.port) != r.port:
        named = [p.key for p in _policies(snapshot, dest.key) if _names_ports(p)]
        if named:
            raise NotRun(
                f"the mesh's sidecar of {dest.key} took port {dest.inbound[r.port]} for "
                f"{r.port} (not root), and {', '.join(named)} names ports"
            )
    if not _TOKEN.fullmatch(r.method):
        raise NotRun(f"the method {r.method!r} is not an HTTP token")
    headers: list[tuple[str, str]] = []
    for k, v in r.headers:
        if k.lower() in _UNSENDABLE or k.startswith(":"):
            raise NotRun(f"the header {k}: mesh curl sets it itself")
        if not _TOKEN.fullmatch(k):
            raise NotRun(f"the header name {k!r} is not an HTTP token")
        if any((ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F or ord(ch) > 0xFF for ch in v):
            raise NotRun(f"the header {k}: a control or non-Latin-1 character cannot be sent")
        headers.append((k, v))
    path = r.path
    if "#" in path or any(ord(ch) <= 0x20 or ord(ch) >= 0x7F for ch in path):
        raise NotRun("the path holds a fragment, a space, a control or a non-ASCII character")
    if r.jwt is not None and r.jwt.token is not None:  # where the case puts it
        if r.jwt.param is not None:
            q = urllib.parse.urlencode({r.jwt.param: r.jwt.token})
            path += ("&" if "?" in path else "?") + q
        elif r.jwt.header is not None:
            headers.append((r.jwt.header, f"{r.jwt.prefix}{r.jwt.token}"))
        else:
            headers.append(("authorization", f"Bearer {r.jwt.token}"))
    # The URL names the Service by the Host's name and the Service port the request
    # goes to (the Host's own port, else the one the case names or leads to); the
    # Host header is the case's, with or without its port, as a client may send it.
    name, _, hport = r.host.partition(":")
    port = int(hport) if hport.isdigit() else spec.to_port or _service_port(snapshot, r)
    url = f"http://{name}:{port}{path}"
    try:
        target, _ = client.resolve_url(plan, snapshot, caller, url)
    except client.CurlError as e:
        raise NotRun(f"the Host {r.host} leads nowhere in the mesh: {e}") from None
    if target.workload.key != dest.key or target.workload_port != r.port:
        raise NotRun(
            f"the Host {r.host} leads to {target.workload.key} port {target.workload_port}, "
            f"not {dest.key} port {r.port}"
        )
    return caller.key, url, r.host, headers, r.plaintext and caller.sidecar


def _service_port(snapshot: MeshSnapshot, r: Request) -> int:
    """The port of a Service that leads to the request's workload port."""
    w = next((x for x in snapshot.workloads if x.key == r.destination.key), None)
    for svc in snapshot.services_for(w) if w is not None else ():
        for sp in svc.ports:
            assert w is not None
            if resolve_target_port(w, sp) == r.port:
                return int(sp.port)
    raise NotRun(f"no Service port leads to {r.destination.key} port {r.port}")


def _policies(snapshot: MeshSnapshot, workload: str) -> list[AuthorizationPolicy]:
    w = next((x for x in snapshot.workloads if x.key == workload), None)
    if w is None:
        return []
    selected = select_policies(snapshot, w, "AuthorizationPolicy")
    return [s.policy for s in selected if isinstance(s.policy, AuthorizationPolicy)]


def _names_ports(p: AuthorizationPolicy) -> bool:
    for rule in p.spec.rules:
        if any(t.operation and (t.operation.ports or t.operation.not_ports) for t in rule.to):
            return True
        if any(c.key == "destination.port" for c in rule.when):
            return True
    return False


def _keys(src: JwksSource | None) -> Any:
    if src is None:
        return None
    try:
        text = src.text if isinstance(src, JwksText) else Path(src).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return f"(unreadable: {src})"  # differs from any keys: the case is not run
    try:
        return json.loads(text)
    except ValueError:
        return text


def _check_keys(s: SuiteResult, spec: RequestSpec, plan: MeshPlan) -> None:
    """A raw token is verified with the keys each side has for the jwksUris."""
    if spec.token is None:
        return
    assert s.suite is not None
    for uri in sorted(set(s.suite.jwks) | set(plan.jwks)):
        mine, theirs = _keys(s.suite.jwks.get(uri)), _keys(plan.jwks.get(uri))
        if mine == theirs:
            continue
        if theirs is None:
            raise NotRun(
                f"the suite has keys for the jwksUri {uri}, which the mesh was not given "
                f"(mesh up --jwks {uri}=FILE)"
            )
        if mine is None:
            raise NotRun(f"the mesh was given keys for the jwksUri {uri}; the suite has none")
        raise NotRun(f"the suite's keys for the jwksUri {uri} are not the mesh's")


def _answer(plan: MeshPlan, resp: client.Response) -> MeshAnswer:
    """The mesh's answer: what the client saw, and what the access log establishes."""
    t = resp.target
    assert t is not None
    tcp = t.protocol == "tcp"
    seen = frozenset({"status"})  # what the client saw, always
    if resp.status == client.RESET:
        return MeshAnswer("DENY", client.RESET, seen, request_id=resp.request_id)
    if tcp:
        return MeshAnswer("ALLOW", "connected", seen, request_id=resp.request_id)
    entry = client.find_entry(plan, t.workload, resp.request_id, 3.0)
    details = str((entry or {}).get("details") or "")
    decided = details == "via_upstream" or details.startswith(
        ("rbac_access_denied", "jwt_authn_access_denied")
    )
    if entry is None or not decided:
        # a local reply other than the authorization filters' (a codec refusal, ...)
        verdict = "ALLOW" if details == "via_upstream" else "DENY"
        return MeshAnswer(verdict, resp.status, seen, request_id=resp.request_id)
    d = client.interpret(entry)
    observed = {"status", "stage", "policy", "rule", "dryRun"}
    if d["audit"] is not None:
        observed.add("audit")
    dry = tuple(
        DryRunResult(Stage(x["stage"]), x["result"], x["policy"], x["rule"], x["envoyPolicy"])
        for x in d["dryRun"]
    )
    return MeshAnswer(
        d["decision"],
        resp.status,
        frozenset(observed),
        stage=d["stage"],
        policy=d["policy"],
        rule=d["rule"],
        dry_run=dry,
        audit=bool(d["audit"]),
        request_id=resp.request_id,
    )


def _differs(c: CaseResult, a: MeshAnswer) -> list[str]:
    """Where meshauthz's decision and the mesh's answer differ, on what the mesh observed."""
    d = c.decision
    assert d is not None
    ours: dict[str, Any] = {"decision": d.verdict, "status": d.status}
    theirs: dict[str, Any] = {"decision": a.verdict, "status": a.status}
    if "stage" in a.observed and d.stage in ("DENY", "ALLOW", "JWT", "default"):
        ours.update(stage=str(d.stage), policy=d.policy, rule=d.rule)
        theirs.update(stage=a.stage, policy=a.policy, rule=a.rule)
    if "dryRun" in a.observed:
        ours["dryRun"] = _dry(r for r in d.dry_run if r.stage in _LOGGED_DRY_RUN)
        theirs["dryRun"] = _dry(a.dry_run)
    if "audit" in a.observed:
        ours["audit"], theirs["audit"] = d.audit, a.audit
    return [
        f"{k}: meshauthz {_show(ours[k])}, mesh {_show(theirs[k])}"
        for k in ours
        if ours[k] != theirs[k]
    ]


def _show(v: Any) -> str:
    return "none" if v is None else str(v)


def _dry(results: Any) -> str:
    items = [f"{r.stage} {r.result} by {r.policy or 'no policy'}" for r in results]
    return "[" + "; ".join(items) + "]"


__all__ = ["MeshAnswer", "MeshCaseResult", "MeshRun", "check_mesh", "run_on_mesh"]
