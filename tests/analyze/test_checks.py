"""Behaviour of single checks beyond their fixtures: mesh membership as
istioctl reads it, the normalizer deciding which path spellings slip past,
and codes from other tools in suppressions."""

from __future__ import annotations

from pathlib import Path

from tests.analyze.helpers import analyze_json
from tests.conftest import REPO

FIXTURES = REPO / "tests/analyze/fixtures"
BASE = str(FIXTURES / "base.yaml")

POLICY = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: lab, annotations: ANNOTATIONS}
spec:
  selector: {matchLabels: {app: x}}
  rules: [{to: [{operation: {methods: [GET]}}]}]
"""


def _lab(tmp_path: Path, *, ns_labels: str, pod_labels: str, containers: str, ann: str = "{}"):
    f = tmp_path / "lab.yaml"
    f.write_text(
        f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: lab, labels: {ns_labels}}}\n---\n"
        "apiVersion: v1\nkind: Pod\n"
        f"metadata: {{name: x-0, namespace: lab, labels: {pod_labels}}}\n"
        f"spec: {{containers: {containers}}}\n---\n" + POLICY.replace("ANNOTATIONS", ann)
    )
    return str(f)


def _ma1001(capsys, path: str) -> list[dict]:
    _, doc = analyze_json(capsys, path)
    return [f for f in doc["findings"] if f["code"] == "MA1001"]


def test_a_pod_outside_the_mesh_is_named(tmp_path, capsys):
    (f,) = _ma1001(
        capsys, _lab(tmp_path, ns_labels="{}", pod_labels="{app: x}", containers="[{name: a}]")
    )
    assert "lab/x-0" in f["message"] and "not in the mesh" in f["message"]


def test_mesh_membership_as_istioctl_reads_it(tmp_path, capsys):
    # a proxy container, the namespace's injection label, the pod's inject label
    injected = [
        ("{}", "{app: x}", "[{name: istio-proxy, image: proxyv2}]"),
        ("{istio-injection: enabled}", "{app: x}", "[{name: a}]"),
        ("{}", "{app: x, sidecar.istio.io/inject: 'true'}", "[{name: a}]"),
    ]
    for ns, pod, containers in injected:
        assert not _ma1001(
            capsys, _lab(tmp_path, ns_labels=ns, pod_labels=pod, containers=containers)
        )
    # the pod's label wins over the namespace's
    out = _lab(
        tmp_path,
        ns_labels="{istio-injection: enabled}",
        pod_labels="{app: x, sidecar.istio.io/inject: 'false'}",
        containers="[{name: a}]",
    )
    assert _ma1001(capsys, out)


def test_an_istioctl_code_in_the_annotation_suppresses_ours(tmp_path, capsys):
    path = _lab(
        tmp_path,
        ns_labels="{}",
        pod_labels="{app: x}",
        containers="[{name: a}]",
        ann="{galley.istio.io/analyze-suppress: IST0127}",
    )
    assert not _ma1001(capsys, path)


def test_path_spellings_follow_the_mesh_normalization(tmp_path, capsys):
    deny = (FIXTURES / "MA2006" / "fail.yaml").read_text()

    def spellings(mode: str | None) -> str:
        f = tmp_path / "deny.yaml"
        mesh = (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\n"
            f"data:\n  mesh: 'pathNormalization: {{normalization: {mode}}}'\n---\n"
            if mode
            else ""
        )
        f.write_text(mesh + deny)
        _, doc = analyze_json(capsys, BASE, str(f))
        (finding,) = [x for x in doc["findings"] if x["code"] == "MA2006"]
        return finding["message"]

    base = spellings(None)  # BASE: dot segments and escaped letters are normalized away
    assert "'//admin/users'" in base and "'/admin%2Fusers'" in base
    assert "/x/../admin/users" not in base and "%61" not in base.lower()
    merged = spellings("DECODE_AND_MERGE_SLASHES")
    assert "'//admin/users'" not in merged and "'/admin%2Fusers'" not in merged
    assert "'/ADMIN/USERS'" in merged
    none = spellings("NONE")
    assert "'/x/../admin/users'" in none


def test_deny_hosts_slipped_past_by_a_dot_a_port_or_a_second_host(tmp_path, capsys):
    def slips(hosts: str) -> str | None:
        f = tmp_path / "deny-host.yaml"
        f.write_text(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            "metadata: {name: p, namespace: shop}\n"
            "spec:\n  selector: {matchLabels: {app: web}}\n  action: DENY\n"
            f"  rules: [{{to: [{{operation: {{hosts: {hosts}}}}}]}}]\n"
        )
        _, doc = analyze_json(capsys, BASE, str(f))
        found = [x["message"] for x in doc["findings"] if x["code"] == "MA2005"]
        return found[0] if found else None

    assert "'Host: admin.example.com.'" in (slips("[admin.example.com]") or "")
    both = '[admin.example.com, admin.example.com., "admin.example.com:*"]'
    assert "two Host headers" in (slips(both) or "")


def test_a_deny_of_only_wildcards_kills_the_allows_too(tmp_path, capsys):
    f = tmp_path / "deny-star.yaml"
    f.write_text(
        (FIXTURES / "MA2001" / "fail.yaml")
        .read_text()
        .replace("rules: [{}]", 'rules: [{to: [{operation: {methods: ["*"], paths: ["*"]}}]}]')
    )
    _, doc = analyze_json(capsys, BASE, str(f))
    (finding,) = [x for x in doc["findings"] if x["code"] == "MA2001"]
    assert "shop/allow-web (on shop/api)" in finding["message"]
    # a DENY that names a caller matches only some requests: no MA2001
    f.write_text(
        (FIXTURES / "MA2001" / "fail.yaml")
        .read_text()
        .replace("rules: [{}]", "rules: [{from: [{source: {namespaces: [ops]}}]}]")
    )
    _, doc = analyze_json(capsys, BASE, str(f))
    assert "MA2001" not in [x["code"] for x in doc["findings"]]


def test_an_istioctl_code_on_the_command_line_suppresses_ours(capsys):
    fail = str(FIXTURES / "MA1001" / "fail.yaml")
    _, doc = analyze_json(capsys, BASE, fail, "--suppress", "IST0127=AuthorizationPolicy p.shop")
    assert "MA1001" not in [x["code"] for x in doc["findings"]]
    assert doc["summary"]["suppressed"] == 1
