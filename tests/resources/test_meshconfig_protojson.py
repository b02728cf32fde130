"""The mesh config read as istiod reads it (issue 11, point 2).

istiod reads it with ``protomarshal.ApplyYAML`` (istio/istio
pkg/config/mesh/mesh.go ``ApplyMeshConfig``): YAML to JSON, then the legacy
``github.com/golang/protobuf/jsonpb`` unmarshaler (v1.5.4 in Istio's go.mod),
retried with ``AllowUnknownFields``. The expectations below are that
unmarshaler's rules (jsonpb/decode.go ``unmarshalSingularValue``: integers with
their quotes stripped then Go's JSON decoder, strings and booleans as JSON
types, enums by name or number, Durations with Go's ``time.ParseDuration``;
``unmarshalMessage``: a field by proto name or JSON name, ``null`` unset) and
Istio's own mesh config tests (pkg/config/mesh/mesh_test.go).
"""

from __future__ import annotations

import json
import os

import pytest

from meshauthz.cli.main import main
from meshauthz.errors import InputError
from meshauthz.mesh.loading import load_mesh, read_manifests
from meshauthz.resources.meshconfig import MeshConfigError, mesh_config_from_data


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exc.value.code or 0), out, err


# The istio.io ext_authz task's mesh config (tasks/security/authorization/authz-custom):
# the ports are quoted.
EXT_AUTHZ_MESH = """\
    extensionProviders:
    - name: "sample-ext-authz-grpc"
      envoyExtAuthzGrpc:
        service: "ext-authz.foo.svc.cluster.local"
        port: "9000"
    - name: "sample-ext-authz-http"
      envoyExtAuthzHttp:
        service: "ext-authz.foo.svc.cluster.local"
        port: "8000"
        includeRequestHeadersInCheck: ["x-ext-authz"]
"""
CONFIGMAP = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\n"
    "data:\n  mesh: |-\n" + EXT_AUTHZ_MESH
)
APPS = """\
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  template:
    metadata: {labels: {app: httpbin}}
    spec:
      serviceAccountName: httpbin
      containers: [{name: httpbin, image: x, ports: [{containerPort: 8080}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: curl, namespace: foo}
spec:
  selector: {matchLabels: {app: curl}}
  template:
    metadata: {labels: {app: curl}}
    spec:
      containers: [{name: curl, image: x}]
---
apiVersion: v1
kind: Service
metadata: {name: ext-authz, namespace: foo}
spec:
  selector: {app: ext-authz}
  ports: [{name: http, port: 8000}, {name: grpc, port: 9000}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ext-authz, namespace: foo}
spec:
  selector: {matchLabels: {app: ext-authz}}
  template:
    metadata: {labels: {app: ext-authz}}
    spec:
      containers: [{name: ext-authz, image: x, ports: [{containerPort: 8000}, {containerPort: 9000}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: CUSTOM
  provider: {name: PROVIDER}
  rules: [{to: [{operation: {paths: ["/headers"]}}]}]
"""
CHECK = ["--from", "foo/curl", "--to", "foo/httpbin:8000", "--path", "/headers"]


def _task(write, provider: str = "sample-ext-authz-grpc", *, configmap: bool = True) -> str:
    if configmap:
        write("task/mesh.yaml", CONFIGMAP)
    return os.path.dirname(write("task/apps.yaml", APPS.replace("PROVIDER", provider)))


def test_the_ext_authz_tasks_quoted_ports_are_ports(write):
    mc = read_manifests(_task(write)).manifests.mesh_config
    assert [(p.name, p.kind, p.config["port"]) for p in mc.extension_providers[3:]] == [
        ("sample-ext-authz-grpc", "envoyExtAuthzGrpc", 9000),
        ("sample-ext-authz-http", "envoyExtAuthzHttp", 8000),
    ]


@pytest.mark.parametrize("provider", ["sample-ext-authz-grpc", "sample-ext-authz-http"])
def test_the_ext_authz_task_is_decided_by_the_provider(capsys, write, provider):
    d = _task(write, provider)
    code, out, err = run(capsys, "check", "-f", d, *CHECK, "--ext-authz", "allow")
    assert code == 0 and out.startswith("ALLOW (200)") and err == ""
    code, out, err = run(capsys, "check", "-f", d, *CHECK, "--ext-authz", "deny")
    assert code == 0 and out.startswith("DENY (403)")
    # build no longer says "port number 9000 must be in the range 1..65535"
    code, out, err = run(capsys, "build", "-f", d, "--workload", "foo/httpbin")
    assert code == 0 and err == "" and "envoy.filters.http.ext_authz" in out


def test_mesh_config_takes_the_istio_configmap_as_kubectl_prints_it(capsys, write):
    d = _task(write, configmap=False)
    cm = write("cm.yaml", CONFIGMAP)
    listed = write(
        "list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- " + CONFIGMAP.replace("\n", "\n  ").rstrip() + "\n",
    )
    for config in (cm, listed):
        mesh = load_mesh(d, mesh_config=config)
        assert [p.name for p in mesh.snapshot.mesh_config.extension_providers[3:]] == [
            "sample-ext-authz-grpc",
            "sample-ext-authz-http",
        ]
        code, out, _ = run(
            capsys, "check", "-f", d, "--mesh-config", config, *CHECK, "--ext-authz", "allow"
        )
        assert code == 0 and out.startswith("ALLOW (200)")


def test_a_configmap_mesh_config_error_names_its_line_in_the_file(write):
    cm = write("cm.yaml", CONFIGMAP.replace('port: "9000"', 'port: "90.5"'))
    with pytest.raises(InputError) as e:
        read_manifests(_task(write, configmap=False), mesh_config=cm)
    assert e.value.location is not None and e.value.location.line == 12
    assert e.value.field == "extensionProviders[0].envoyExtAuthzGrpc.port"


def _grpc(**config: object) -> dict[str, object]:
    provider = {"service": "a.foo.svc.cluster.local", **config}
    return {"extensionProviders": [{"name": "p", "envoyExtAuthzGrpc": provider}]}


def _config(**config: object) -> dict[str, object]:
    provider = mesh_config_from_data(_grpc(**config)).provider("p")
    assert provider is not None
    return provider.config


@pytest.mark.parametrize(
    ("written", "read"),
    [("9000", 9000), (9000, 9000), (9000.0, 9000), (" 9000 ", 9000), (70000, 70000)],
)
def test_integers_may_be_strings_as_jsonpb_reads_them(written, read):
    # unmarshalSingularValue: trimQuote then json.Unmarshal into uint32 (the
    # range 1..65535 is the builder's check, not the parser's)
    assert _config(port=written)["port"] == read


@pytest.mark.parametrize("written", ["9000.5", "-1", "1e3", "+5", "09", "0x10", True, 2**32, []])
def test_integers_go_rejects(written):
    with pytest.raises(MeshConfigError) as e:
        _config(port=written)
    assert e.value.path == ("extensionProviders", 0, "envoyExtAuthzGrpc", "port")


@pytest.mark.parametrize(
    ("written", "read"),
    [("500ms", "0.5s"), ("1m30s", "90s"), ("1.5h", "5400s"), ("2us", "0.000002s"), ("0", "0s")],
)
def test_durations_are_go_durations(written, read):
    assert _config(timeout=written)["timeout"] == read


@pytest.mark.parametrize("written", ["10", "1d", 10, "", "1.2.3s"])
def test_durations_go_rejects(written):
    with pytest.raises(MeshConfigError):
        _config(timeout=written)


def test_booleans_and_strings_are_json_types():
    assert _config(failOpen=True)["failOpen"] is True
    with pytest.raises(MeshConfigError):
        _config(failOpen="true")
    with pytest.raises(MeshConfigError):
        _config(statusOnError=403)


def test_fields_by_proto_name_and_the_json_name_wins():
    assert _config(status_on_error="403", fail_open=True) == {
        "service": "a.foo.svc.cluster.local",
        "statusOnError": "403",
        "failOpen": True,
    }
    assert _config(status_on_error="500", statusOnError="403")["statusOnError"] == "403"
    mc = mesh_config_from_data({"trust_domain": "td", "root_namespace": "istio-config"})
    assert (mc.trust_domain, mc.root_namespace) == ("td", "istio-config")


def test_null_leaves_a_field_unset():
    assert "port" not in _config(port=None)
    assert mesh_config_from_data({"trustDomain": None}).trust_domain == "cluster.local"


@pytest.mark.parametrize(
    ("written", "mode"), [("MERGE_SLASHES", "MERGE_SLASHES"), (3, "MERGE_SLASHES"), (0, "BASE")]
)
def test_enums_by_name_or_number(written, mode):
    mc = mesh_config_from_data({"pathNormalization": {"normalization": written}})
    assert mc.path_normalization == mode


@pytest.mark.parametrize("written", ["3", "merge_slashes", 9])
def test_enums_jsonpb_rejects(written):
    with pytest.raises(MeshConfigError):
        mesh_config_from_data({"pathNormalization": {"normalization": written}})


def test_unknown_fields_are_allowed_as_in_istios_mesh_config_test():
    # pkg/config/mesh/mesh_test.go TestApplyMeshConfigDefaults, "Verify overrides"
    mc = mesh_config_from_data(
        {
            "serviceSettings": [
                {"settings": {"clusterLocal": True}, "host": ["*.myns.svc.cluster.local"]}
            ],
            "ingressClass": "foo",
            "enableTracing": False,
            "trustDomainAliases": ["default", "both"],
            "defaultServiceExportTo": ["foo"],
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
            "clusterLocalNamespaces": ["foons"],
            "defaultProviders": {"tracing": ["foo"]},
            "extensionProviders": [{"name": "sd", "stackdriver": {}}],
            "defaultConfig": {"tracing": {}, "concurrency": 4},
        }
    )
    assert mc.trust_domain_aliases == (
        "both",
        "default",
    )  # a sorted set, as ApplyMeshConfig keeps them
    # the default mesh config's providers, then the one given
    assert [p.name for p in mc.extension_providers] == ["prometheus", "stackdriver", "envoy", "sd"]


def test_trust_domain_aliases_are_a_sorted_set():
    # mesh_test.go TestDeepMerge "add trust domain aliases": sets.SortedList
    mc = mesh_config_from_data({"trustDomainAliases": ["added", "both", "added"]})
    assert mc.trust_domain_aliases == ("added", "both")


def test_providers_merge_with_the_default_ones_by_name():
    # mesh_test.go TestDeepMerge "replace builtin provider" and "add provider"
    mc = mesh_config_from_data(
        {"extensionProviders": [{"name": "stackdriver", "stackdriver": {"x": 5}}]}
    )
    assert [(p.name, p.config) for p in mc.extension_providers] == [
        ("prometheus", {}),
        ("stackdriver", {"x": 5}),
        ("envoy", {"path": "/dev/stdout"}),
    ]
    mc = mesh_config_from_data({"extensionProviders": [{"name": "p2", "prometheus": {}}]})
    assert [p.name for p in mc.extension_providers] == ["prometheus", "stackdriver", "envoy", "p2"]
    assert _config(someFutureField=1, port=9000) == {
        "service": "a.foo.svc.cluster.local",
        "port": 9000,
    }


def test_a_provider_of_no_supported_kind_is_refused_as_istiod_validates():
    # agent.ValidateMeshConfig -> validateExtensionProvider: "unsupported provider"
    with pytest.raises(MeshConfigError) as e:
        mesh_config_from_data({"extensionProviders": [{"name": "p", "envoyExtAuthzHtp": {}}]})
    assert "unsupported provider" in str(e.value) and e.value.path == ("extensionProviders", 0)


def test_provider_warnings_name_the_providers_that_exist(capsys, write):
    listed = (
        "ext_authz providers: sample-ext-authz-grpc (envoyExtAuthzGrpc), sample-ext-authz-http "
        "(envoyExtAuthzHttp); others: prometheus, stackdriver, envoy"
    )
    d = _task(write, "no-such-provider")
    code, out, _ = run(capsys, "validate", d)
    assert code == 0 and "warning[custom-provider-unknown]" in out and listed in out
    assert 'provider "no-such-provider" is not in the mesh config' in out
    for command in ("check", "explain"):
        code, out, err = run(capsys, command, "-f", d, *CHECK, "--ext-authz", "allow")
        # istiod's builder: a missing provider gets the deny configs (builder.go)
        assert code == 0 and "DENY (403)" in out
        assert "warning[custom-provider-unknown]" in err and listed in err, command
    code, out, _ = run(capsys, "validate", "-o", "json", d)
    codes = [f["code"] for f in json.loads(out)["findings"]]
    assert codes == ["custom-provider-unknown"]


def test_a_provider_istiod_rejects_is_a_warning_too(capsys, write):
    # the provider's service is not in the registry: istiod's builder rejects it
    d = _task(write)
    write("task/apps.yaml", APPS.replace("PROVIDER", "sample-ext-authz-grpc").split("---")[0])
    write(
        "task/policy.yaml",
        APPS.replace("PROVIDER", "sample-ext-authz-grpc").split("---")[-1],
    )
    code, out, _ = run(capsys, "validate", d)
    assert code == 0 and "warning[custom-provider-rejected]" in out
    assert "could not find service ext-authz.foo.svc.cluster.local" in out
