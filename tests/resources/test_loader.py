"""Loading manifests as a cluster would receive them, with positions."""

from __future__ import annotations

import io
import json
import sys

import pytest

from meshauthz.errors import InputError
from meshauthz.resources.loader import collect_files, load
from tests.conftest import EXAMPLES

POLICY = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p1
  namespace: foo
  annotations:
    istio.io/dry-run: "true"
spec:
  selector:
    matchLabels:
      app: httpbin
  action: DENY
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/a/sa/b"]
        notPrincipals: ["x"]
        requestPrincipals: ["iss/sub"]
        notRequestPrincipals: ["y"]
        namespaces: ["a"]
        notNamespaces: ["b"]
        ipBlocks: ["10.0.0.0/8"]
        notIpBlocks: ["10.1.0.0/16"]
        remoteIpBlocks: ["1.2.3.4"]
        notRemoteIpBlocks: ["5.6.7.8"]
    to:
    - operation:
        hosts: ["a.com"]
        notHosts: ["b.com"]
        ports: ["80"]
        notPorts: ["81"]
        methods: ["GET"]
        notMethods: ["POST"]
        paths: ["/a"]
        notPaths: ["/b"]
    when:
    - key: request.headers[x-a]
      values: ["1"]
      notValues: ["2"]
"""


def test_every_authorization_policy_field_is_read(write):
    result = load([write("p.yaml", POLICY)])
    assert result.findings == []
    (p,) = result.manifests.authorization_policies
    assert (p.namespace, p.name, p.dry_run) == ("foo", "p1", True)
    spec = p.spec
    assert spec.action == "DENY" and spec.selector.match_labels == {"app": "httpbin"}
    src = spec.rules[0].from_[0].source
    assert src.principals == ("cluster.local/ns/a/sa/b",) and src.not_remote_ip_blocks == (
        "5.6.7.8",
    )
    op = spec.rules[0].to[0].operation
    assert (op.hosts, op.not_ports, op.methods, op.not_paths) == (
        ("a.com",),
        ("81",),
        ("GET",),
        ("/b",),
    )
    cond = spec.rules[0].when[0]
    assert (cond.key, cond.values, cond.not_values) == ("request.headers[x-a]", ("1",), ("2",))


def test_field_positions_point_at_the_line_written(write):
    path = write("p.yaml", POLICY)
    (p,) = load([path]).manifests.authorization_policies
    assert p.location().line == 1
    loc = p.location("spec", "rules", 0, "to", 0, "operation", "methods")
    assert (loc.file, loc.line) == (path, 32)
    assert p.location("spec", "rules", 0, "from", 0, "source", "ipBlocks", 0).line == 22
    assert p.location("spec", "rules", 0, "when", 0, "key").line == 37


def test_v1beta1_targetrefs_and_provider(write):
    text = """\
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: ns1}
spec:
  targetRefs:
  - kind: Gateway
    group: gateway.networking.k8s.io
    name: gw
  action: CUSTOM
  provider:
    name: my-ext-authz
  rules:
  - to:
    - operation:
        paths: ["/admin/*"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: single, namespace: ns1}
spec:
  targetRef: {kind: Service, group: "", name: reviews}
"""
    ext, single = load([write("p.yaml", text)]).manifests.authorization_policies
    assert ext.api_version == "security.istio.io/v1beta1"
    assert ext.spec.target_refs[0].name == "gw" and ext.spec.provider.name == "my-ext-authz"
    assert single.spec.target_ref.kind == "Service" and single.spec.rules == ()
    assert single.dry_run is False


def test_request_and_peer_authentication(write):
    text = """\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: foo}
spec:
  selector: {matchLabels: {app: a}}
  jwtRules:
  - issuer: https://issuer.example
    audiences: [aud1]
    jwks: '{"keys": []}'
    fromHeaders: [{name: x-jwt, prefix: "Bearer "}]
    fromParams: [token]
    outputClaimToHeaders: [{header: x-sub, claim: sub}]
    forwardOriginalToken: true
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: strict, namespace: foo}
spec:
  selector: {matchLabels: {app: a}}
  mtls: {mode: STRICT}
  portLevelMtls:
    8080: {mode: DISABLE}
"""
    m = load([write("a.yaml", text)]).manifests
    (ra,) = m.request_authentications
    rule = ra.spec.jwt_rules[0]
    assert rule.issuer == "https://issuer.example" and rule.from_headers[0].prefix == "Bearer "
    assert rule.from_params == ("token",) and rule.forward_original_token is True
    (pa,) = m.peer_authentications
    assert pa.spec.mtls.mode == "STRICT" and pa.spec.port_level_mtls["8080"].mode == "DISABLE"


def test_workload_kinds_labels_service_accounts_ports_and_ips(write):
    text = """\
apiVersion: v1
kind: Pod
metadata: {name: pod1, namespace: a, labels: {app: p}}
spec:
  serviceAccountName: sa1
  containers: [{name: c, ports: [{containerPort: 8080, name: http}]}]
status: {podIP: 10.0.0.5}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: st, namespace: a}
spec:
  template:
    metadata: {labels: {app: st}}
    spec: {containers: [{name: c}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ds}
spec: {template: {metadata: {labels: {app: ds}}, spec: {serviceAccount: legacy}}}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs}
spec: {template: {metadata: {labels: {app: rs}}, spec: {}}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: job}
spec: {template: {metadata: {labels: {app: job}}, spec: {serviceAccountName: runner}}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: cron}
spec:
  jobTemplate:
    spec:
      template:
        metadata: {labels: {app: cron}}
        spec: {serviceAccountName: cronsa}
"""
    ws = {w.name: w for w in load([write("w.yaml", text)]).manifests.workloads}
    assert ws["pod1"].ip == "10.0.0.5" and ws["pod1"].service_account == "sa1"
    assert ws["pod1"].ports[0].container_port == 8080 and ws["pod1"].pod_labels == {"app": "p"}
    assert ws["st"].service_account == "default"  # Kubernetes' fallback
    assert ws["ds"].service_account == "legacy" and ws["ds"].namespace == "default"
    assert ws["rs"].pod_labels == {"app": "rs"} and ws["job"].service_account == "runner"
    assert ws["cron"].pod_labels == {"app": "cron"} and ws["cron"].service_account == "cronsa"


def test_namespace_service_account_service_and_gateways(write):
    text = """\
apiVersion: v1
kind: Namespace
metadata: {name: foo, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: sa, namespace: foo}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: foo}
spec:
  selector: {app: web}
  ports:
  - {name: http-web, port: 80, targetPort: 8080}
  - {port: 9000, targetPort: grpc, appProtocol: grpc}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: igw, namespace: istio-system}
spec: {selector: {istio: ingressgateway}, servers: []}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: kgw, namespace: foo}
spec: {gatewayClassName: istio, listeners: [{name: http, port: 80, protocol: HTTP}]}
"""
    m = load([write("x.yaml", text)]).manifests
    assert (
        m.namespaces[0].labels == {"istio-injection": "enabled"} and m.namespaces[0].namespace == ""
    )
    assert m.service_accounts[0].key == "foo/sa"
    ports = m.services[0].spec.ports
    assert (ports[0].name, ports[0].target_port) == ("http-web", 8080)
    assert (ports[1].target_port, ports[1].app_protocol) == ("grpc", "grpc")
    igw, kgw = m.gateways
    assert igw.flavor == "istio" and igw.selector == {"istio": "ingressgateway"}
    assert kgw.flavor == "gateway-api" and kgw.gateway_class == "istio"


def test_mesh_config_from_configmap_and_defaults(write):
    m = load([write("a.yaml", POLICY)]).manifests
    mc = m.mesh_config
    assert (mc.root_namespace, mc.trust_domain, mc.path_normalization) == (
        "istio-system",
        "cluster.local",
        "BASE",
    )
    text = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    rootNamespace: mesh-root
    trustDomain: td1
    trustDomainAliases: [old-td]
    pathNormalization:
      normalization: MERGE_SLASHES
    extensionProviders:
    - name: ext
      envoyExtAuthzHttp:
        service: ext.foo.svc.cluster.local
        port: 8000
"""
    mc = load([write("cm.yaml", text)]).manifests.mesh_config
    assert (mc.root_namespace, mc.trust_domain, mc.trust_domain_aliases) == (
        "mesh-root",
        "td1",
        ("old-td",),
    )
    assert mc.path_normalization == "MERGE_SLASHES"
    p = mc.provider("ext")
    assert p is not None and p.kind == "envoyExtAuthzHttp" and p.config["port"] == 8000
    assert p.location is not None and p.location.line == 12


def test_standalone_mesh_config_file(write):
    policy = write("p.yaml", POLICY)
    mesh = write("mesh.yaml", "trustDomain: example.org\nrootNamespace: root\n")
    mc = load([policy], mesh_config_file=mesh).manifests.mesh_config
    assert (mc.trust_domain, mc.root_namespace) == ("example.org", "root")


def test_kind_list_as_printed_by_kubectl(write):
    items = [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": f"p{i}", "namespace": "foo", "resourceVersion": "1", "uid": "u"},
            "spec": {},
            "status": {"validationMessages": []},
        }
        for i in range(3)
    ]
    text = json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {}}, indent=1
    )
    r = load([write("list.json", text)])
    assert r.findings == []
    names = [p.name for p in r.manifests.authorization_policies]
    assert names == ["p0", "p1", "p2"]
    assert (
        r.manifests.authorization_policies[2].location().line
        > r.manifests.authorization_policies[1].location().line
    )


def test_helm_template_output_with_source_comments_and_empty_documents(write):
    text = """\
---
# Source: chart/templates/sa.yaml
apiVersion: v1
kind: ServiceAccount
metadata:
  name: web
---
# Source: chart/templates/empty.yaml
---
# Source: chart/templates/policy.yaml
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: "web"
  labels:
    helm.sh/chart: chart-0.1.0
spec:
  selector:
    matchLabels:
      app: web
"""
    m = load([write("helm.yaml", text)]).manifests
    assert [o.kind for o in m.all()] == ["ServiceAccount", "AuthorizationPolicy"]
    assert m.authorization_policies[0].location().line == 11


def test_kustomize_build_output_with_anchors_and_merge_keys(write):
    text = """\
apiVersion: v1
kind: Namespace
metadata:
  name: prod
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: base
  namespace: prod
spec:
  rules:
  - to:
    - operation: &op
        methods: [GET]
  - to:
    - operation:
        <<: *op
        paths: [/x]
"""
    (p,) = load([write("k.yaml", text)]).manifests.authorization_policies
    assert p.spec.rules[1].to[0].operation.methods == ("GET",)
    assert p.spec.rules[1].to[0].operation.paths == ("/x",)


def test_directories_are_walked_recursively_and_suites_skipped(write, tmp_path):
    write("a/one.yaml", POLICY)
    write("a/b/two.yml", POLICY.replace("name: p1", "name: p2"))
    write(
        "a/b/c/three.json",
        json.dumps({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "s"}}),
    )
    write("a/suite.test.yaml", "cases: []\n")
    write("a/notes.txt", "not a manifest")
    write("a/.hidden/x.yaml", "{")
    files = collect_files([str(tmp_path / "a")])
    assert [f.rsplit("/", 1)[1] for f in files] == ["one.yaml", "two.yml", "three.json"]
    m = load([str(tmp_path / "a")]).manifests
    assert sorted(p.name for p in m.authorization_policies) == ["p1", "p2"]


def test_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(POLICY.encode())))
    r = load(["-"])
    (p,) = r.manifests.authorization_policies
    assert p.file == "<stdin>" and p.location("spec", "action").line == 12


def test_other_kinds_are_skipped_and_listed(write):
    text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"
    m = load([write("s.yaml", text)]).manifests
    assert [(s.kind, s.name, s.location.line) for s in m.skipped] == [
        ("Secret", "s", 1),
        ("VirtualService", "vs", 5),
    ]


def test_the_seed_example_loads_completely():
    m = load([str(EXAMPLES / "seed")]).manifests
    assert sorted(w.key for w in m.workloads) == ["default/backend", "default/frontend"]
    front = next(w for w in m.workloads if w.name == "frontend")
    assert front.service_account == "frontend"
    assert sorted(p.name for p in m.authorization_policies) == [
        "allow-frontend-get-data",
        "deny-all-backend",
    ]
    assert sorted(s.name for s in m.services) == ["backend", "frontend"]


def test_missing_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load([str(tmp_path / "nope.yaml")])


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_service_entry_is_read_in_every_served_version(write, version):
    text = f"""\
apiVersion: networking.istio.io/{version}
kind: ServiceEntry
metadata: {{name: ext, namespace: foo, labels: {{istio.io/use-waypoint: waypoint}}}}
spec:
  hosts: [api.example.com]
  ports: [{{number: 443, name: https, protocol: TLS}}]
  resolution: DNS
  location: MESH_EXTERNAL
  workloadSelector: {{labels: {{app: ext}}}}
"""
    m = load([write("se.yaml", text)]).manifests
    (se,) = m.service_entries
    assert se.key == "foo/ext" and se.labels == {"istio.io/use-waypoint": "waypoint"}
    assert se.spec.hosts == ("api.example.com",) and se.spec.resolution == "DNS"
    assert (se.spec.ports[0].number, se.spec.ports[0].protocol) == (443, "TLS")
    assert se.spec.workload_selector is not None
    assert se.spec.workload_selector.labels == {"app": "ext"}
    assert not m.skipped
