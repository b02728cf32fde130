"""Pointing meshauthz at a repository as it is (issue 11, points 6, 7, 8, 10):
files that are not manifests, Helm templates, unparseable files, --exclude,
-n/--namespace, empty input, the modelled Istio release."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from meshauthz.cli.main import main
from meshauthz.resources.istio_release import ISTIO
from meshauthz.resources.loader import excluded
from tests.conftest import EXAMPLES, REPO

SEED = str(EXAMPLES / "seed")
CHECK = ["--from", "default/frontend", "--to", "default/backend", "--path", "/api/v1/data"]


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exc.value.code or 0), out, err


POLICY = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-get}
spec:
  selector: {matchLabels: {app: api}}
  rules: [{to: [{operation: {methods: ["GET"]}}]}]
"""
WORKLOADS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: x, ports: [{containerPort: 8080}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: x}]
"""
# What a GitOps repository holds beside its manifests.
REPOSITORY_FILES = {
    "kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
    "resources: [policy.yaml, workloads.yaml]\nnamespace: shop\n",
    "chart/Chart.yaml": "apiVersion: v2\nname: shop\nversion: 0.1.0\n",
    "chart/values.yaml": "replicaCount: 2\nimage: {repository: nginx, tag: stable}\n",
    ".pre-commit-config.yaml": "repos:\n- repo: https://example.invalid/hooks\n  rev: v1\n"
    "  hooks: [{id: check-yaml}]\n",
    "istio-operator.yaml": "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\n"
    "spec:\n  profile: default\n",
    "jwks.json": '{"keys": [{"kty": "RSA", "e": "AQAB", "n": "xyz", "kid": "k"}]}',
    "mesh.yaml": "extensionProviders:\n- name: x\n  envoyExtAuthzHttp: {service: a, port: 1}\n",
    "chart/templates/deployment.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n"
    '  name: {{ include "shop.fullname" . }}\n{{- if .Values.x }}\nspec: {}\n{{- end }}\n',
}


@pytest.fixture
def repo(write):
    write("repo/policy.yaml", POLICY)
    write("repo/workloads.yaml", WORKLOADS)
    for name, text in REPOSITORY_FILES.items():
        write(f"repo/{name}", text)
    return os.path.dirname(write("repo/policy.yaml", POLICY))


def test_repository_files_are_not_manifests(capsys, repo):
    code, out, err = run(capsys, "validate", repo, "-n", "shop")
    assert code == 0 and err == ""
    # the Helm template is skipped with a note; nothing else is said about the others
    assert out.splitlines() == [
        f"{repo}/chart/templates/deployment.yaml:4: info[helm-template] skipped: an unrendered "
        "Helm template ({{ ... }} here); give meshauthz what `helm template` renders",
        "valid: 0 errors, 0 warnings in 3 objects from 10 files (8 skipped; -v lists them)",
    ]
    code, out, _ = run(capsys, "validate", repo, "-n", "shop", "-v")
    skipped = [line for line in out.splitlines() if ": skipped " in line]
    assert sorted(line.split(": ", 1)[1] for line in skipped) == sorted(
        [
            "skipped IstioOperator shop/ (install.istio.io/v1alpha1): a kind meshauthz does not read",
            "skipped Kustomization shop/ (kustomize.config.k8s.io/v1beta1): a kind meshauthz "
            "does not read",
            "skipped an unrendered Helm template",
            *["skipped not a Kubernetes object (no apiVersion and kind)"] * 5,
        ]
    )


def test_check_answers_on_a_repository(capsys, repo):
    args = ["check", "-f", repo, "-n", "shop", "--from", "shop/web", "--to", "shop/api"]
    code, out, err = run(capsys, *args, "--port", "8080")
    assert code == 0 and out.startswith("ALLOW (200)") and err == ""
    code, out, _ = run(capsys, *args, "--port", "8080", "--method", "POST")
    assert code == 0 and out.startswith("DENY (403)")


def test_one_unparseable_file_is_reported_and_the_others_checked(capsys, repo, write):
    broken = write("repo/broken.yaml", "a: [\n")
    write("repo/bad-policy.yaml", POLICY.replace("allow-get", "bad").replace('["GET"]', "GET"))
    code, out, err = run(capsys, "validate", repo, "-n", "shop")
    assert code == 2
    assert f"error: {broken}:2:1: YAML syntax error" in err
    assert "error[schema] AuthorizationPolicy shop/bad" in out  # the others still checked
    assert out.splitlines()[-1].startswith("unusable (1 file not read): 1 error,")
    code, out, _ = run(capsys, "validate", repo, "-n", "shop", "-o", "json")
    doc = json.loads(out)
    assert code == 2 and doc["valid"] is False and doc["summary"]["unreadable"] == 1
    assert doc["error"]["file"] == broken and doc["error"]["files"][0]["line"] == 2
    assert [f["code"] for f in doc["findings"] if f["severity"] == "error"] == ["schema"]
    # check, explain and build refuse: an answer about part of the input is not true
    code, out, err = run(capsys, "check", "-f", repo, "-n", "shop", "--from", "shop/web",
                         "--to", "shop/api", "--port", "8080", "-o", "json")  # fmt: skip
    assert code == 2 and json.loads(out)["error"]["files"][0]["file"] == broken
    assert f"error: {broken}:2:1: YAML syntax error" in err


def test_exclude_leaves_out_what_matches(capsys, repo, write):
    write("repo/broken.yaml", "a: [\n")
    write("repo/overlays/dev/broken.yaml", "b: [\n")
    code, _, _ = run(capsys, "validate", repo, "-n", "shop", "--exclude", "broken.yaml")
    assert code == 0
    code, _, err = run(capsys, "validate", repo, "-n", "shop", "--exclude", "overlays")
    assert code == 2 and "overlays" not in err and "repo/broken.yaml" in err
    code, _, err = run(capsys, "validate", repo, "-n", "shop", "--exclude", "overlays/*/*.yaml")
    assert code == 2 and "overlays" not in err
    # as conftest's --ignore: a file named on the command line is always read
    code, _, err = run(capsys, "validate", f"{repo}/broken.yaml", "--exclude", "*.yaml")
    assert code == 2 and "YAML syntax error" in err


@pytest.mark.parametrize(
    ("relative", "pattern", "matched"),
    [
        ("a/b/c.yaml", "c.yaml", True),
        ("a/b/c.yaml", "b", True),  # a name along the path: the directory b
        ("a/b/c.yaml", "*.json", False),
        ("a/b/c.yaml", "a/*", True),  # fnmatch's * also crosses /
        ("a/b/c.yaml", "b/c.yaml", False),  # a pattern with / matches from the top
        ("a/b/c.yaml", "repo/a/b/*", True),  # the path as walked
        ("a/b/c.yaml", "charts/", False),
    ],
)
def test_exclude_patterns(relative, pattern, matched):
    assert excluded("repo", relative, [pattern]) is matched


def test_a_document_list_of_a_kind_not_read_is_never_validated(capsys, write):
    # metadata a Kubernetes API server would refuse, on a kind meshauthz does not read
    path = write("x.yaml", POLICY + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: 7}\n")
    code, out, _ = run(capsys, "validate", path)
    assert code == 0 and "valid: 0 errors, 0 warnings in 1 object" in out


@pytest.mark.parametrize("command", ["validate", "check", "build"])
def test_empty_or_mistyped_input_is_unusable(capsys, tmp_path, write, command):
    empty = tmp_path / "empty"
    empty.mkdir()
    only_values = os.path.dirname(write("chart/values.yaml", "replicaCount: 1\n"))
    tail = {"validate": [], "check": CHECK, "build": ["--workload", "default/x"]}[command]
    for path in (str(empty), str(tmp_path / "mistyped"), only_values):
        args = [path] if command == "validate" else ["-f", path]
        code, out, err = run(capsys, command, *args, *tail)
        assert code == 2 and out == "" and err.startswith("error: "), (path, err)
    code, _, err = run(capsys, "validate", only_values)
    assert "no Kubernetes objects found: 1 document(s) skipped (not a Kubernetes object" in err


def test_namespace_is_kubectl_apply_n(capsys, write):
    d = os.path.dirname(write("app/workloads.yaml", WORKLOADS))
    write("app/policy.yaml", POLICY)
    code, out, _ = run(capsys, "check", "-f", d, "-n", "shop", "--from", "shop/web",
                       "--to", "shop/api", "--port", "8080")  # fmt: skip
    assert code == 0 and out.startswith("ALLOW (200) GET / from shop/web to shop/api")
    # without -n: kubectl's default namespace
    code, out, _ = run(capsys, "check", "-f", d, "--from", "default/web", "--to", "default/api",
                       "--port", "8080")  # fmt: skip
    assert code == 0 and out.startswith("ALLOW (200)")
    # an object naming another namespace: kubectl apply -n refuses it
    other = write("app/other.yaml", POLICY.replace("{name: allow-get}", "{name: o, namespace: x}"))
    code, out, _ = run(capsys, "validate", d, "-n", "shop")
    assert code == 1
    assert (
        f"{other}:3:21: error[namespace-mismatch] AuthorizationPolicy x/o: metadata.namespace: "
        'the object\'s namespace "x" does not match -n/--namespace "shop"'
    ) in out
    code, _, err = run(capsys, "check", "-f", d, "-n", "shop", "--from", "shop/web",
                       "--to", "shop/api", "--port", "8080")  # fmt: skip
    assert code == 2 and "error[namespace-mismatch]" in err


def test_a_name_in_another_namespace_says_which(capsys, write):
    d = os.path.dirname(write("app/workloads.yaml", WORKLOADS))
    code, _, err = run(capsys, "check", "-f", d, "-n", "shop", "--from", "default/web",
                       "--to", "shop/api", "--port", "8080")  # fmt: skip
    assert code == 2 and "no workload default/web (there is one in namespace shop: shop/web)" in err
    code, _, err = run(capsys, "check", "-f", d, "-n", "shop", "--from", "shop/web",
                       "--to", "default/api", "--port", "8080")  # fmt: skip
    assert code == 2
    assert "no workload or service default/api (there is one in namespace shop: shop/api)" in err


def test_build_namespace_is_the_same_option(capsys, write):
    d = os.path.dirname(write("app/workloads.yaml", WORKLOADS))
    write("app/policy.yaml", POLICY)
    by_name = run(capsys, "build", "-f", d, "-n", "shop", "--workload", "api", "-o", "json")
    by_key = run(capsys, "build", "-f", d, "-n", "shop", "--workload", "shop/api", "-o", "json")
    by_labels = run(capsys, "build", "-f", d, "-n", "shop", "--labels", "app=api", "-o", "json")
    assert by_name[0] == 0 and by_name[1] == by_key[1] == by_labels[1]
    assert "ns[shop]-policy[allow-get]-rule[0]" in by_name[1]


def test_mesh_logs_keeps_n_as_its_line_count():
    # mesh logs reads no manifests: -n stays --tail (as tail -n)
    import click

    from meshauthz.cli.group import cli

    mesh = cli.get_command(click.Context(cli), "mesh")  # imported on first use
    assert isinstance(mesh, click.Group)
    logs = mesh.commands["logs"]
    assert [p.opts for p in logs.params if "-n" in p.opts] == [["-n", "--tail"]]


GATEWAY_TASK = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: httpbin-gateway, namespace: foo}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-headers, namespace: foo}
spec:
  selector:
    matchLabels:
      LABEL: httpbin-gateway
  action: DENY
  rules: [{to: [{operation: {paths: ["/headers"], ports: ["80"]}}]}]
"""


def test_a_policy_on_the_gateway_name_label_of_before_1_24_is_flagged(capsys, write):
    # releasenotes/notes/52049.yaml: "Removed istio.io/gateway-name, please use
    # gateway.networking.k8s.io/gateway-name"; the deployment istiod creates
    # (gatewaycommon/testdata/deployment/simple.yaml) has only the new label.
    old = write("old/gw.yaml", GATEWAY_TASK.replace("LABEL", "istio.io/gateway-name"))
    code, out, _ = run(capsys, "validate", old)
    assert code == 0 and "warning[removed-gateway-name-label]" in out
    assert f"Istio 1.24; meshauthz models Istio {ISTIO.version}" in out
    to = ["--to", "foo/httpbin-gateway:80", "--plaintext", "--path", "/headers"]
    code, out, err = run(capsys, "check", "-f", old, *to)
    assert code == 0 and out.startswith("ALLOW (200)")  # the policy selects no gateway pod
    assert "warning[removed-gateway-name-label]" in err
    new = write(
        "new/gw.yaml", GATEWAY_TASK.replace("LABEL", "gateway.networking.k8s.io/gateway-name")
    )
    code, out, err = run(capsys, "check", "-f", new, *to)
    assert code == 0 and out.startswith("DENY (403)") and err == ""
    assert "to foo/httpbin-gateway-istio port 80" in out  # the Gateway's own name resolves


def test_the_modelled_istio_release_is_said(capsys):
    main(["--version"])
    assert capsys.readouterr().out == f"meshauthz 0.1.0, modelling Istio {ISTIO}\n"
    assert ISTIO.commit in (REPO / "tests/conformance/istio/README.md").read_text()
    assert f"Istio {ISTIO.version}" in (REPO / "README.md").read_text()
    for args in (
        ["validate", SEED],
        ["check", "-f", SEED, *CHECK],
        ["explain", "-f", SEED, *CHECK],
        ["test", str(EXAMPLES / "seed" / "seed.test.yaml")],
    ):
        _, out, _ = run(capsys, *args, "-o", "json")
        assert json.loads(out)["istioVersion"] == ISTIO.version, args


def test_version_runs_as_an_installed_command():
    p = subprocess.run(
        [sys.executable, "-m", "meshauthz.cli.main", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0 and ISTIO.commit[:12] in p.stdout


def test_mesh_up_reads_its_manifests_with_n_and_exclude(capsys, tmp_path, write):
    # mesh up reads manifests as the other commands do: an object naming another
    # namespace than -n is refused before anything starts, and --exclude leaves
    # out what it matches (here, the unparseable file)
    d = os.path.dirname(write("app/workloads.yaml", WORKLOADS))
    write("app/broken.yaml", "a: [\n")
    write("app/other.yaml", POLICY.replace("{name: allow-get}", "{name: o, namespace: x}"))
    state = tmp_path / "state"
    code, _, err = run(capsys, "mesh", "up", d, "--state-dir", str(state), "-n", "shop")
    assert code == 2 and "YAML syntax error" in err and not state.exists()
    code, _, err = run(capsys, "mesh", "up", d, "--state-dir", str(state), "-n", "shop",
                       "--exclude", "broken.yaml")  # fmt: skip
    assert code == 2 and "error[namespace-mismatch]" in err and "YAML" not in err
    assert not state.exists()


def test_a_configmap_that_is_not_the_mesh_config_is_not_read(capsys, write):
    # metadata an API server would refuse, on a ConfigMap other than 'istio'
    path = write("cm.yaml", POLICY + "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n"
                 "  name: app-settings\n  labels: {a: [1]}\ndata: {mesh: 7}\n")  # fmt: skip
    code, out, _ = run(capsys, "validate", "-v", path)
    assert code == 0 and "skipped ConfigMap default/app-settings (v1)" in out


def test_test_reads_its_suites_manifests_with_n_and_exclude(capsys, repo, write):
    """``meshauthz test -n NS --exclude GLOB``: the suites' manifests are read
    as the other commands read them, and excluded suites are not run."""
    write(
        "repo/api.test.yaml",
        "resources: ['.']\ncases:\n"
        "- name: web gets\n"
        "  request: {from: shop/web, to: shop/api, port: 8080, method: GET}\n"
        "  expect: ALLOW\n"
        "- name: web posts\n"
        "  request: {from: shop/web, to: shop/api, port: 8080, method: POST}\n"
        "  expect: DENY\n",
    )
    write("repo/drafts/wip.test.yaml", "cases: [\n")
    write("repo/broken.yaml", "a: [\n")
    code, out, _ = run(capsys, "test", repo, "-n", "shop", "--exclude", "broken.yaml",
                       "--exclude", "drafts")  # fmt: skip
    assert code == 0 and "2 passed, 0 failed" in out
    # without -n the objects are in `default`: the suite names a namespace that has none
    code, out, _ = run(capsys, "test", repo, "--exclude", "broken.yaml", "--exclude", "drafts")
    assert code != 0 and "there is one in namespace default" in out
    # without --exclude the broken suite and the unparseable manifest are reported
    code, out, err = run(capsys, "test", repo, "-n", "shop")
    assert code == 2 and "wip.test.yaml" in out + err
