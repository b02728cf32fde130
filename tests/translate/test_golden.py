"""istiod's golden translations (pilot/pkg/security/authz/builder/testdata).

Each case is built with the settings of istio's builder_test.go
(TestGenerator_GenerateHTTP / TestGenerator_GenerateTCP): a proxy in namespace
``foo`` with labels ``app: httpbin, version: v1``, the Service
``my-custom-ext-authz.foo.svc.cluster.local`` registered in ``foo``, and the
case's trust-domain bundle and extension providers. Outputs are compared as
parsed data, filter by filter, in istiod's order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshauthz.mesh.loading import load_mesh
from meshauthz.resources.meshconfig import ExtensionProvider
from meshauthz.resources.objects import AuthorizationPolicy
from meshauthz.translate import BuildOptions, Chain, build
from meshauthz.translate.builder import TranslationCache
from tests.conftest import CONFORMANCE

TESTDATA = CONFORMANCE / "pilot/pkg/security/authz/builder/testdata"

PROXY_NAMESPACE = "foo"
PROXY_LABELS = {"app": "httpbin", "version": "v1"}
KNOWN_SERVICES = {("foo", "my-custom-ext-authz.foo.svc.cluster.local")}

# builder_test.go: meshConfigGRPCNoNamespace
GRPC_NO_NAMESPACE = ExtensionProvider(
    "default",
    "envoyExtAuthzGrpc",
    {
        "service": "my-custom-ext-authz.foo.svc.cluster.local",
        "port": 9000,
        "failOpen": True,
        "statusOnError": "403",
    },
)
# builder_test.go: meshConfigGRPC (timeout: 2000*1000 ns)
GRPC = ExtensionProvider(
    "default",
    "envoyExtAuthzGrpc",
    {
        "service": "foo/my-custom-ext-authz.foo.svc.cluster.local",
        "port": 9000,
        "timeout": "0.002s",
        "failOpen": True,
        "statusOnError": "403",
        "includeRequestBodyInCheck": {"maxRequestBytes": 4096, "allowPartialMessage": True},
    },
)
# builder_test.go: meshConfigHTTP
HTTP = ExtensionProvider(
    "default",
    "envoyExtAuthzHttp",
    {
        "service": "foo/my-custom-ext-authz.foo.svc.cluster.local",
        "port": 9000,
        "timeout": "10s",
        "failOpen": True,
        "statusOnError": "403",
        "pathPrefix": "/check",
        "includeRequestHeadersInCheck": ["x-custom-id", "x-prefix-*", "*-suffix"],
        "includeHeadersInCheck": ["should-not-include-when-IncludeRequestHeadersInCheck-is-set"],
        "includeAdditionalHeadersInCheck": {"x-header-1": "value-1", "x-header-2": "value-2"},
        "includeRequestBodyInCheck": {
            "maxRequestBytes": 2048,
            "allowPartialMessage": True,
            "packAsBytes": True,
        },
        "headersToUpstreamOnAllow": ["Authorization", "x-prefix-*", "*-suffix"],
        "headersToDownstreamOnDeny": ["Set-cookie", "x-prefix-*", "*-suffix"],
        "headersToDownstreamOnAllow": ["Set-cookie", "x-prefix-*", "*-suffix"],
    },
)
# builder_test.go: meshConfigInvalid
INVALID = ExtensionProvider(
    "default",
    "envoyExtAuthzHttp",
    {
        "service": "foo/my-custom-ext-authz",
        "port": 999999,
        "pathPrefix": "check",
        "statusOnError": "999",
    },
)


def _case(
    name: str,
    input: str,
    want: list[str],
    *,
    trust_domains: tuple[str, ...] = (),
    provider: ExtensionProvider | None = None,
) -> Any:
    return pytest.param(input, want, trust_domains, provider, id=name)


# TestGenerator_GenerateHTTP's cases, by their names there.
HTTP_CASES = [
    _case("allow-empty-rule", "allow-empty-rule-in.yaml", ["allow-empty-rule-out.yaml"]),
    _case("allow-full-rule", "allow-full-rule-in.yaml", ["allow-full-rule-out.yaml"]),
    _case("allow-nil-rule", "allow-nil-rule-in.yaml", ["allow-nil-rule-out.yaml"]),
    _case("allow-path", "allow-path-in.yaml", ["allow-path-out.yaml"]),
    _case("audit-full-rule", "audit-full-rule-in.yaml", ["audit-full-rule-out.yaml"]),
    _case(
        "custom-grpc-provider-no-namespace",
        "custom-simple-http-in.yaml",
        [
            "custom-grpc-provider-no-namespace-out1.yaml",
            "custom-grpc-provider-no-namespace-out2.yaml",
        ],
        provider=GRPC_NO_NAMESPACE,
    ),
    _case(
        "custom-grpc-provider",
        "custom-simple-http-in.yaml",
        ["custom-grpc-provider-out1.yaml", "custom-grpc-provider-out2.yaml"],
        provider=GRPC,
    ),
    _case(
        "custom-http-provider",
        "custom-simple-http-in.yaml",
        ["custom-http-provider-out1.yaml", "custom-http-provider-out2.yaml"],
        provider=HTTP,
    ),
    _case(
        "custom-bad-multiple-providers",
        "custom-bad-multiple-providers-in.yaml",
        ["custom-bad-multiple-providers-out1.yaml", "custom-bad-multiple-providers-out2.yaml"],
        provider=HTTP,
    ),
    _case(
        "custom-bad-invalid-config",
        "custom-simple-http-in.yaml",
        ["custom-bad-out.yaml"],
        provider=INVALID,
    ),
    _case(
        "deny-and-allow",
        "deny-and-allow-in.yaml",
        ["deny-and-allow-out1.yaml", "deny-and-allow-out2.yaml"],
    ),
    _case("deny-empty-rule", "deny-empty-rule-in.yaml", ["deny-empty-rule-out.yaml"]),
    _case(
        "dry-run-allow-and-deny",
        "dry-run-allow-and-deny-in.yaml",
        ["dry-run-allow-and-deny-out1.yaml", "dry-run-allow-and-deny-out2.yaml"],
    ),
    _case("dry-run-allow", "dry-run-allow-in.yaml", ["dry-run-allow-out.yaml"]),
    _case("dry-run-mix", "dry-run-mix-in.yaml", ["dry-run-mix-out.yaml"]),
    _case("multiple-policies", "multiple-policies-in.yaml", ["multiple-policies-out.yaml"]),
    _case("single-policy", "single-policy-in.yaml", ["single-policy-out.yaml"]),
    _case(
        "trust-domain-one-alias",
        "simple-policy-td-aliases-in.yaml",
        ["simple-policy-td-aliases-out.yaml"],
        trust_domains=("td1", "cluster.local"),
    ),
    _case(
        "trust-domain-multiple-aliases",
        "simple-policy-multiple-td-aliases-in.yaml",
        ["simple-policy-multiple-td-aliases-out.yaml"],
        trust_domains=("td1", "cluster.local", "some-td"),
    ),
    _case(
        "trust-domain-wildcard-in-principal",
        "simple-policy-principal-with-wildcard-in.yaml",
        ["simple-policy-principal-with-wildcard-out.yaml"],
        trust_domains=("td1", "foobar"),
    ),
    _case(
        "trust-domain-aliases-in-source-principal",
        "td-aliases-source-principal-in.yaml",
        ["td-aliases-source-principal-out.yaml"],
        trust_domains=("new-td", "old-td", "some-trustdomain"),
    ),
    _case("trust-domains-field", "trust-domains-in.yaml", ["trust-domains-out.yaml"]),
]

# TestGenerator_GenerateTCP's cases.
TCP_CASES = [
    _case("allow-both-http-tcp", "allow-both-http-tcp-in.yaml", ["allow-both-http-tcp-out.yaml"]),
    _case("allow-only-http", "allow-only-http-in.yaml", ["allow-only-http-out.yaml"]),
    _case("audit-both-http-tcp", "audit-both-http-tcp-in.yaml", ["audit-both-http-tcp-out.yaml"]),
    _case(
        "custom-both-http-tcp",
        "custom-both-http-tcp-in.yaml",
        ["custom-both-http-tcp-out1.yaml", "custom-both-http-tcp-out2.yaml"],
        provider=GRPC,
    ),
    _case("custom-only-http", "custom-only-http-in.yaml", [], provider=HTTP),
    _case("deny-both-http-tcp", "deny-both-http-tcp-in.yaml", ["deny-both-http-tcp-out.yaml"]),
    _case("dry-run-mix", "dry-run-mix-in.yaml", ["dry-run-mix-out.yaml"]),
]


def _applies(p: AuthorizationPolicy) -> bool:
    """Selection for the test proxy (every input is in its namespace)."""
    if p.namespace != PROXY_NAMESPACE or p.spec.target_refs or p.spec.target_ref:
        return False
    sel = p.spec.selector.match_labels if p.spec.selector else {}
    return all(PROXY_LABELS.get(k) == v for k, v in sel.items())


def _run(
    chain: Chain,
    input: str,
    want: list[str],
    trust_domains: tuple[str, ...],
    provider: ExtensionProvider | None,
) -> None:
    base = TESTDATA / ("tcp" if chain is Chain.TCP else "http")
    loaded = load_mesh([str(base / input)])  # istiod's inputs are all valid
    policies = [p for p in loaded.manifests.authorization_policies if _applies(p)]
    # istiod's test runs only the CUSTOM builder when a mesh config is given.
    policies = [p for p in policies if (p.spec.action == "CUSTOM") == (provider is not None)]
    options = BuildOptions(
        # builder_test.go leaves the bundle empty unless the case sets one.
        trust_domains=trust_domains,
        extension_providers=(provider,) if provider else (),
        known_services=KNOWN_SERVICES,
    )
    wanted = [yaml.safe_load((base / w).read_text()) for w in want]
    # Built alone, then twice with a cache of translated policies (filling it, then
    # reading it, as a mesh's workloads share it): the same filters each time.
    cache = TranslationCache()
    for shared in (None, cache, cache):
        got = build(policies, chain, options, cache=shared).to_dicts()
        assert len(got) == len(wanted), f"got {len(got)} filters, want {len(wanted)}"
        for g, w, name in zip(got, wanted, want, strict=True):
            assert g == w, name


@pytest.mark.parametrize(("input", "want", "trust_domains", "provider"), HTTP_CASES)
def test_golden_http(
    input: str, want: list[str], trust_domains: tuple[str, ...], provider: ExtensionProvider | None
) -> None:
    _run(Chain.HTTP, input, want, trust_domains, provider)


@pytest.mark.parametrize(("input", "want", "trust_domains", "provider"), TCP_CASES)
def test_golden_tcp(
    input: str, want: list[str], trust_domains: tuple[str, ...], provider: ExtensionProvider | None
) -> None:
    _run(Chain.TCP, input, want, trust_domains, provider)


@pytest.mark.xfail(
    strict=True,
    reason="orphaned golden: the (?i) regex host matcher for proxies older than 1.11; "
    "builder_test.go no longer runs it and istiod at this commit emits ignoreCase matchers",
)
def test_golden_http_allow_host_before_111() -> None:
    _run(Chain.HTTP, "allow-host-before-111-in.yaml", ["allow-host-before-111-out.yaml"], (), None)


def _extended_files() -> list[Any]:
    if not TESTDATA.is_dir():
        return []
    return [
        pytest.param(f, id=f"{f.parent.name}/{f.name}")
        for f in sorted(TESTDATA.glob("*/extended-*.yaml"))
    ]


@pytest.mark.parametrize("extended", _extended_files())
def test_extended_outputs_equal_plain_ones(extended: Path) -> None:
    # builder_test.go's second pass compares against these; they must equal
    # the plain outputs for one set of tests to cover both.
    plain = extended.with_name(extended.name.removeprefix("extended-"))
    assert yaml.safe_load(extended.read_text()) == yaml.safe_load(plain.read_text())
