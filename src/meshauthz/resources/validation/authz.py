"""Istio's webhook checks for AuthorizationPolicy (ValidateAuthorizationPolicy)."""

from __future__ import annotations

import re

from meshauthz.resources.istio import Condition, Operation, Source
from meshauthz.resources.objects import AuthorizationPolicy
from meshauthz.resources.validation.common import check_metadata, check_targets
from meshauthz.resources.validation.gosyntax import ip_or_cidr_error, parse_uint32
from meshauthz.resources.validation.report import Report

# (python attribute, field name as written)
SOURCE_FIELDS = (
    ("principals", "principals"),
    ("not_principals", "notPrincipals"),
    ("request_principals", "requestPrincipals"),
    ("not_request_principals", "notRequestPrincipals"),
    ("namespaces", "namespaces"),
    ("not_namespaces", "notNamespaces"),
    ("service_accounts", "serviceAccounts"),
    ("not_service_accounts", "notServiceAccounts"),
    ("ip_blocks", "ipBlocks"),
    ("not_ip_blocks", "notIpBlocks"),
    ("remote_ip_blocks", "remoteIpBlocks"),
    ("not_remote_ip_blocks", "notRemoteIpBlocks"),
    ("trust_domains", "trustDomains"),
    ("not_trust_domains", "notTrustDomains"),
)
OPERATION_FIELDS = (
    ("hosts", "hosts"),
    ("not_hosts", "notHosts"),
    ("ports", "ports"),
    ("not_ports", "notPorts"),
    ("methods", "methods"),
    ("not_methods", "notMethods"),
    ("paths", "paths"),
    ("not_paths", "notPaths"),
)
_IP_FIELDS = {"ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"}
_SERVICE_ACCOUNT_FIELDS = {"serviceAccounts", "notServiceAccounts"}
_TRUST_DOMAIN_FIELDS = {"trustDomains", "notTrustDomains"}
# Source fields that only make sense for TCP as well as HTTP (request principals and
# trust domains are not among them in Istio's check).
_TCP_SOURCE_FIELDS = {
    "principals",
    "not_principals",
    "ip_blocks",
    "not_ip_blocks",
    "namespaces",
    "not_namespaces",
    "remote_ip_blocks",
    "not_remote_ip_blocks",
    "service_accounts",
    "not_service_accounts",
}
# Source fields that CUSTOM policies cannot use (they need the peer or JWT identity).
_CUSTOM_UNSUPPORTED_SOURCE = (
    "namespaces",
    "not_namespaces",
    "service_accounts",
    "not_service_accounts",
    "trust_domains",
    "not_trust_domains",
    "principals",
    "not_principals",
    "request_principals",
    "not_request_principals",
)
_CUSTOM_UNSUPPORTED_KEYS = (
    "source.namespace",
    "source.serviceAccount",
    "source.trustDomain",
    "source.principal",
)

MAX_SERVICE_ACCOUNTS = 16
MAX_SERVICE_ACCOUNT_BYTES = 320
MATCH_ONE = "{*}"
MATCH_ANY = "{**}"
# A path segment next to a template must be an RFC 3986 pchar string (compiled on
# first use, re's cache, not at import: start-up).
_PCHAR_LITERAL = r"[A-Za-z0-9\-._~%!$&'()+,;:@=]+"


def _camel(attr: str) -> str:
    head, *rest = attr.split("_")
    return head + "".join(p.capitalize() for p in rest)


def validate_authorization_policy(policy: AuthorizationPolicy, report: Report) -> None:
    check_metadata(policy, report)
    spec = policy.spec
    check_targets(spec.selector, spec.target_ref, spec.target_refs, report)
    action = spec.action

    if action == "CUSTOM":
        _check_custom(policy, report)
    if spec.provider is not None and action != "CUSTOM":
        report.error(
            "provider-without-custom",
            f"spec.provider may only be set with action CUSTOM, not {action}",
            "spec",
            "provider",
        )
    if action == "DENY" and not spec.rules:
        report.error(
            "action-without-rules",
            "a DENY policy without rules never matches anything; "
            "add an empty rule {} to make it apply to every request",
            "spec",
        )

    for i, rule in enumerate(spec.rules):
        rpath = ("spec", "rules", i)
        from_exists = to_exists = tcp_in_from = tcp_in_to = False
        for j, frm in enumerate(rule.from_):
            fpath = (*rpath, "from", j)
            if frm.source is None:
                report.error(
                    "missing-rule-source",
                    f"spec.rules[{i}].from[{j}] needs a source",
                    *fpath,
                )
                continue
            from_exists = True
            _check_source(frm.source, report, (*fpath, "source"))
            if any(getattr(frm.source, a) for a in _TCP_SOURCE_FIELDS):
                tcp_in_from = True
        for j, to in enumerate(rule.to):
            tpath = (*rpath, "to", j)
            if to.operation is None:
                report.error(
                    "missing-rule-operation",
                    f"spec.rules[{i}].to[{j}] needs an operation",
                    *tpath,
                )
                continue
            to_exists = True
            _check_operation(to.operation, report, (*tpath, "operation"))
            if to.operation.ports or to.operation.not_ports:
                tcp_in_to = True
        for j, cond in enumerate(rule.when):
            _check_condition(cond, report, (*rpath, "when", j))

        http_only = (from_exists and not to_exists and not tcp_in_from) or (
            to_exists and not tcp_in_to
        )
        if http_only and action == "DENY":
            report.warning(
                "deny-http-only",
                f"spec.rules[{i}] uses only HTTP attributes in a DENY rule, so this policy "
                "denies all traffic to TCP ports it applies to; name the port(s) explicitly",
                *rpath,
            )


def _check_custom(policy: AuthorizationPolicy, report: Report) -> None:
    spec = policy.spec
    if not spec.rules:
        report.error(
            "action-without-rules",
            "a CUSTOM policy without rules is never triggered; "
            "add an empty rule {} to make it apply to every request",
            "spec",
        )
    elif spec.provider is None or spec.provider.name == "":
        where = ("spec", "provider", "name") if spec.provider is not None else ("spec",)
        report.error(
            "custom-provider-name",
            "spec.provider.name must be set for action CUSTOM",
            *where,
        )
    for i, rule in enumerate(spec.rules):
        for j, frm in enumerate(rule.from_):
            src = frm.source
            if src is None:
                continue
            for attr in _CUSTOM_UNSUPPORTED_SOURCE:
                if getattr(src, attr):
                    name = _camel(attr)
                    report.error(
                        "custom-unsupported-field",
                        f"from.source.{name} is not supported with action CUSTOM",
                        "spec",
                        "rules",
                        i,
                        "from",
                        j,
                        "source",
                        name,
                    )
        for j, cond in enumerate(rule.when):
            key = cond.key
            if key in _CUSTOM_UNSUPPORTED_KEYS or key.startswith("request.auth."):
                report.error(
                    "custom-unsupported-field",
                    f"when key {key} is not supported with action CUSTOM",
                    "spec",
                    "rules",
                    i,
                    "when",
                    j,
                    "key",
                )


def _check_source(src: Source, report: Report, path: tuple[str | int, ...]) -> None:
    where = _where(path)
    has_identity = bool(src.principals or src.not_principals or src.namespaces)
    has_identity = has_identity or bool(src.not_namespaces)
    if has_identity and (src.service_accounts or src.not_service_accounts):
        report.error(
            "service-accounts-with-principals-or-namespaces",
            f"{where}: serviceAccounts cannot be combined with principals or namespaces "
            "in the same source",
            *path,
        )
    if not any(getattr(src, attr) for attr, _ in SOURCE_FIELDS):
        report.error("empty-rule-source", f"{where} must not be empty", *path)
    for attr, name in SOURCE_FIELDS:
        values: tuple[str, ...] = getattr(src, attr)
        if name in _IP_FIELDS:
            for k, v in enumerate(values):
                if v == "":
                    report.error("empty-value", f"{where}.{name}[{k}] is empty", *path, name, k)
                    continue
                err = ip_or_cidr_error(v)
                if err:
                    report.error("invalid-ip-block", err, *path, name, k)
        elif name in _SERVICE_ACCOUNT_FIELDS:
            check_service_accounts(values, report, f"{where}.{name}", (*path, name))
        elif name in _TRUST_DOMAIN_FIELDS:
            check_trust_domains(values, report, f"{where}.{name}", (*path, name))
        else:
            _check_not_empty(values, report, f"{where}.{name}", (*path, name))


def _check_operation(op: Operation, report: Report, path: tuple[str | int, ...]) -> None:
    where = _where(path)
    if not any(getattr(op, attr) for attr, _ in OPERATION_FIELDS):
        report.error("empty-rule-operation", f"{where} must not be empty", *path)
    for attr, name in OPERATION_FIELDS:
        values: tuple[str, ...] = getattr(op, attr)
        _check_not_empty(values, report, f"{where}.{name}", (*path, name))
        if name in ("ports", "notPorts"):
            check_ports(values, report, f"{where}.{name}", (*path, name))
        if name in ("paths", "notPaths"):
            for k, p in enumerate(values):
                err = path_template_error(p)
                if err:
                    report.error(
                        "invalid-path-template", f"{where}.{name}[{k}]: {err}", *path, name, k
                    )


def _check_condition(cond: Condition, report: Report, path: tuple[str | int, ...]) -> None:
    where = _where(path)
    key = cond.key
    if key == "":
        report.error("empty-condition-key", f"{where}.key must not be empty", *path, "key")
        return
    if not cond.values and not cond.not_values:
        report.error(
            "condition-without-values",
            f"{where}: at least one of values or notValues must be set for key {key}",
            *path,
        )
        return
    for name, values in (("values", cond.values), ("notValues", cond.not_values)):
        check_attribute(key, values, report, f"{where}.{name}", (*path, name), path)


# --- shared value checks -------------------------------------------------------


def _where(path: tuple[str | int, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def _check_not_empty(
    values: tuple[str, ...], report: Report, where: str, path: tuple[str | int, ...]
) -> bool:
    ok = True
    for k, v in enumerate(values):
        if v == "":
            report.error("empty-value", f"{where}[{k}] is empty", *path, k)
            ok = False
    return ok


def check_service_accounts(
    values: tuple[str, ...], report: Report, where: str, path: tuple[str | int, ...]
) -> None:
    if len(values) > MAX_SERVICE_ACCOUNTS:
        report.error(
            "invalid-service-account",
            f"{where} may have at most {MAX_SERVICE_ACCOUNTS} values, found {len(values)}",
            *path,
        )
    for k, v in enumerate(values):
        err = _service_account_error(v)
        if err:
            report.error(
                "empty-value" if v == "" else "invalid-service-account",
                f"{where}[{k}]: {err}",
                *path,
                k,
            )


def _service_account_error(value: str) -> str | None:
    if value == "":
        return "empty value"
    if "*" in value:
        return "wildcards are not allowed in service accounts"
    if value.count("/") > 1:
        return f"{value!r} is not 'serviceAccount' or 'namespace/serviceAccount'"
    if len(value.encode()) > MAX_SERVICE_ACCOUNT_BYTES:
        return f"longer than {MAX_SERVICE_ACCOUNT_BYTES} characters"
    ns, sep, sa = value.partition("/")
    if sep and not ns:
        return f"{value!r} has an empty namespace (expected 'namespace/serviceAccount')"
    if sep and not sa:
        return f"{value!r} has an empty service account (expected 'namespace/serviceAccount')"
    return None


def wildcard_error(value: str) -> str | None:
    """Exact, prefix (foo*), suffix (*foo) or presence (*) only."""
    if value == "":
        return "empty value"
    stars = value.count("*")
    if stars > 1:
        return f"at most one wildcard is allowed: {value!r}"
    if stars == 1 and not (value.startswith("*") or value.endswith("*")):
        return f"a wildcard is only allowed at the start or the end: {value!r}"
    return None


def check_trust_domains(
    values: tuple[str, ...], report: Report, where: str, path: tuple[str | int, ...]
) -> None:
    for k, v in enumerate(values):
        err = wildcard_error(v)
        if err is None and "/" in v:
            err = f"a trust domain must not contain '/': {v!r}"
        if err:
            report.error(
                "empty-value" if v == "" else "invalid-trust-domain",
                f"{where}[{k}]: {err}",
                *path,
                k,
            )


def check_ports(
    values: tuple[str, ...], report: Report, where: str, path: tuple[str | int, ...]
) -> None:
    for k, v in enumerate(values):
        port = parse_uint32(v)
        if port is None or port > 65535:
            report.error("invalid-port", f"{where}[{k}]: bad port {v!r} (want 0-65535)", *path, k)


def is_valid_literal(segment: str) -> bool:
    """A path segment that may sit next to a template: RFC 3986 pchars (no '*')."""
    return re.fullmatch(_PCHAR_LITERAL, segment) is not None


def path_template_error(path: str) -> str | None:
    """Istio's path template rules for {*} and {**}."""
    has_template = MATCH_ONE in path or MATCH_ANY in path
    seen_any = False
    trimmed = path.strip("/")
    for segment in trimmed.split("/"):
        if segment in (MATCH_ONE, MATCH_ANY):
            if seen_any:
                return f"{{**}} must be the last operator in path {trimmed!r}"
            seen_any = segment == MATCH_ANY
            continue
        if "{" in segment or "}" in segment:
            return f"path {trimmed!r} contains '{{' or '}}' outside a {{*}} or {{**}} template"
        if has_template and not is_valid_literal(segment):
            return f"path {trimmed!r} has a segment that is not a valid literal: {segment!r}"
    return None


def _map_key_ok(key: str) -> bool:
    """a[b]: a non-empty name, then a non-empty bracketed part at the end."""
    open_at = key.find("[")
    return key.endswith("]") and 0 < open_at < len(key) - 2


def check_attribute(
    key: str,
    values: tuple[str, ...],
    report: Report,
    where: str,
    path: tuple[str | int, ...],
    cond_path: tuple[str | int, ...],
) -> None:
    """Istio's ValidateAttribute for one of values/notValues of a `when` condition."""
    if not _check_not_empty(values, report, where, path):
        return
    key_path = (*cond_path, "key")

    def bad_key(message: str) -> None:
        report.error("invalid-condition-key", message, *key_path)

    if key.startswith(("request.headers", "request.auth.claims", "experimental.envoy.filters.")):
        if not _map_key_ok(key):
            bad_key(f"bad key {key!r}: expected the form name[entry]")
    elif key in ("source.ip", "remote.ip", "destination.ip"):
        for k, v in enumerate(values):
            err = ip_or_cidr_error(v)
            if err:
                report.error("invalid-condition-value", f"{where}[{k}]: {err}", *path, k)
    elif key == "source.serviceAccount":
        for k, v in enumerate(values):
            err = _service_account_error(v)
            if err:
                report.error("invalid-condition-value", f"{where}[{k}]: {err}", *path, k)
                break
        if len(values) > MAX_SERVICE_ACCOUNTS:
            report.error(
                "invalid-condition-value",
                f"{where} may have at most {MAX_SERVICE_ACCOUNTS} values",
                *path,
            )
    elif key == "source.trustDomain":
        for k, v in enumerate(values):
            err = wildcard_error(v)
            if err:
                report.error("invalid-condition-value", f"{where}[{k}]: {err}", *path, k)
    elif key == "destination.port":
        for k, v in enumerate(values):
            port = parse_uint32(v)
            if port is None or port > 65535:
                report.error(
                    "invalid-condition-value",
                    f"{where}[{k}]: bad port {v!r} (want 0-65535)",
                    *path,
                    k,
                )
    elif key in (
        "source.namespace",
        "source.principal",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "connection.sni",
    ):
        pass
    elif key == "destination.namespace":
        bad_key(f"key {key} is not supported: the policy's own namespace plays its role")
    elif key.startswith("destination.labels"):
        bad_key(f"key {key} is not supported: use the workload selector instead")
    elif key in ("destination.name", "destination.user"):
        bad_key(f"key {key} is deprecated and was only supported in v1alpha1")
    else:
        bad_key(f"unknown key {key!r}")
