"""Istio's webhook checks for RequestAuthentication and PeerAuthentication."""

from __future__ import annotations

import re

from meshauthz.resources.istio import JWTRule
from meshauthz.resources.objects import PeerAuthentication, RequestAuthentication
from meshauthz.resources.validation.common import check_metadata, check_selector, check_targets
from meshauthz.resources.validation.gosyntax import (
    JwkSet,
    jwks_uri_error,
    parse_duration,
    parse_jwks,
    parse_uint32,
)
from meshauthz.resources.validation.report import Report

# compiled on first use (re's cache), not at import: start-up
STRICT_HEADER_NAME = r"[-_A-Za-z0-9]+"
MILLISECOND = 1_000_000  # in nanoseconds


def validate_request_authentication(ra: RequestAuthentication, report: Report) -> None:
    check_metadata(ra, report)
    spec = ra.spec
    check_targets(spec.selector, spec.target_ref, spec.target_refs, report)
    for i, rule in enumerate(spec.jwt_rules):
        _check_jwt_rule(rule, report, ("spec", "jwtRules", i))


def _jwks_uri_field(rule: JWTRule) -> str:
    return "jwksUri" if rule.jwks_uri else "jwks_uri"


def _check_jwt_rule(rule: JWTRule, report: Report, path: tuple[str | int, ...]) -> None:
    where = f"spec.jwtRules[{path[-1]}]"
    for k, aud in enumerate(rule.audiences):
        if aud == "":
            report.error(
                "empty-value", f"{where}.audiences[{k}] must not be empty", *path, "audiences", k
            )
    uri = rule.jwks_url
    if rule.issuer == "" and uri == "":
        report.error(
            "missing-issuer-and-jwks-uri",
            f"{where}: at least one of issuer or jwksUri must be set",
            *path,
        )
    if uri:
        err = jwks_uri_error(uri)
        if err:
            report.error(
                "invalid-jwks-uri", f"{where}.jwksUri: {err}", *path, _jwks_uri_field(rule)
            )
    if rule.jwks:
        parsed = parse_jwks(rule.jwks)
        if isinstance(parsed, JwkSet):
            for index in parsed.private_key_indexes():
                report.warning(
                    "jwks-private-key",
                    f"{where}.jwks: key {index} holds private key material; only public keys "
                    "are needed to verify tokens, remove the private parts",
                    *path,
                    "jwks",
                )
        else:
            report.error("invalid-jwks", f"{where}.jwks cannot be parsed: {parsed}", *path, "jwks")
    for k, header in enumerate(rule.from_headers):
        if header.name == "":
            report.error(
                "empty-value",
                f"{where}.fromHeaders[{k}].name must not be empty",
                *path,
                "fromHeaders",
                k,
                "name",
            )
    for name, values in (("fromParams", rule.from_params), ("fromCookies", rule.from_cookies)):
        for k, v in enumerate(values):
            if v == "":
                report.error(
                    "empty-value", f"{where}.{name}[{k}] must not be empty", *path, name, k
                )
    for k, c2h in enumerate(rule.output_claim_to_headers):
        cpath = (*path, "outputClaimToHeaders", k)
        if c2h.claim == "" or c2h.header == "":
            report.error(
                "invalid-output-claim-to-header",
                f"{where}.outputClaimToHeaders[{k}]: header and claim must both be set",
                *cpath,
            )
        elif not re.fullmatch(STRICT_HEADER_NAME, c2h.header):
            report.error(
                "invalid-output-claim-to-header",
                f"{where}.outputClaimToHeaders[{k}].header: {c2h.header!r} is not a valid "
                "header name (letters, digits, '-' and '_' only)",
                *cpath,
                "header",
            )
    if rule.timeout:
        _check_timeout(rule.timeout, report, where, (*path, "timeout"))


def _check_timeout(value: str, report: Report, where: str, path: tuple[str | int, ...]) -> None:
    nanos = parse_duration(value)
    if nanos is None:
        report.error(
            "invalid-timeout",
            f"{where}.timeout: {value!r} is not a duration (such as 5s or 100ms)",
            *path,
        )
    elif nanos < MILLISECOND:
        report.error("invalid-timeout", f"{where}.timeout must be at least 1ms", *path)
    elif nanos % MILLISECOND:
        report.error(
            "invalid-timeout", f"{where}.timeout must be a whole number of milliseconds", *path
        )


def validate_peer_authentication(pa: PeerAuthentication, report: Report) -> None:
    check_metadata(pa, report)
    spec = pa.spec
    ports = spec.port_level_mtls
    no_labels = spec.selector is None or not spec.selector.match_labels
    if no_labels and ports:
        report.error(
            "port-level-mtls-without-selector",
            "spec.portLevelMtls needs a selector with labels: a mesh- or namespace-wide "
            "PeerAuthentication cannot set port-level mTLS",
            "spec",
            "portLevelMtls",
        )
    for key in ports:
        port = parse_uint32(key)
        if port is None:
            report.error(
                "invalid-port",
                f"spec.portLevelMtls: {key!r} is not a port number",
                "spec",
                "portLevelMtls",
                key,
            )
        elif not 1 <= port <= 65535:
            report.error(
                "invalid-port",
                f"spec.portLevelMtls: port {key} is outside 1-65535",
                "spec",
                "portLevelMtls",
                key,
            )
    check_selector(spec.selector, report)
