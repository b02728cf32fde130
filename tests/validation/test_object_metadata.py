"""What the Kubernetes API server refuses in an object's metadata is refused too.

Expectations come from Kubernetes' own tests, whose values are in
tests/conformance/kubernetes/object-metadata.yaml (kubernetes/apimachinery
eed236ceee2c19c2753a3d93ac0631dc20750454): pkg/util/validation/validation_test.go
TestIsDNS1123Label, TestIsDNS1123Subdomain, TestIsDNS1035Label, TestIsQualifiedName,
TestIsValidLabelValue; pkg/api/validation/objectmeta_test.go TestValidateAnnotations,
TestValidateObjectMetaNamespaces, TestValidateObjectMetaTrimsTrailingDash.

Which rule a kind's name follows: a custom resource's (every Istio kind) is a
DNS-1123 subdomain (kubernetes/kubernetes 054d429d9f8bc8de4fc82e6cf2281e12a13fe1f2,
staging/src/k8s.io/apiextensions-apiserver/pkg/registry/customresource/validator.go,
ValidateObjectMetaAccessor with NameIsDNSSubdomain); a Service's a DNS-1035 label,
a Namespace's a DNS-1123 label, a Pod's and a ServiceAccount's a DNS-1123 subdomain
(kubernetes/kubernetes 000f26050b9be6fb3d79fae95e06b47fc96128cd,
pkg/apis/core/validation/validation.go: ValidateServiceName, ValidateNamespaceName,
ValidatePodName, ValidateServiceAccountName); a StatefulSet's a DNS-1123 subdomain,
and its pod template's labels and annotations checked as an object's
(kubernetes/kubernetes 00010901c746f9ad7ae204b123615c2880d6f2fd,
pkg/apis/apps/validation/validation.go: ValidateStatefulSetName,
ValidatePodTemplateSpecForStatefulSet). ObjectMeta's fields are its JSON names in
apimachinery's pkg/apis/meta/v1/types.go.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshauthz.cli.main import main
from meshauthz.resources.findings import Finding
from meshauthz.resources.validation.objectmeta import (
    OBJECT_META_FIELDS,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_label_value,
    qualified_name_problem,
)
from tests.conftest import EXAMPLES, REPO
from tests.validation.validation_helpers import check_object, errors

KUBERNETES = REPO / "tests" / "conformance" / "kubernetes"
CASES: dict[str, dict[str, list[Any]]] = yaml.safe_load(
    (KUBERNETES / "object-metadata.yaml").read_text(encoding="utf-8")
)


def value(v: Any) -> str:
    """A value as the data file writes it: a string, {repeat, times} or a list joined."""
    if isinstance(v, list):
        return "".join(value(x) for x in v)
    if isinstance(v, dict):
        return str(v["repeat"]) * int(v["times"])
    return str(v)


def cases(test: str, key: str) -> list[str]:
    return [value(v) for v in CASES[test][key]]


def ids(values: list[str]) -> list[str]:
    return [repr(v) if len(v) < 20 else f"{v[:8]!r}...({len(v)})" for v in values]


def test_the_data_is_kubernetes_with_its_license_and_commit() -> None:
    assert "Apache License" in (KUBERNETES / "LICENSE").read_text(encoding="utf-8")
    readme = (KUBERNETES / "README.md").read_text(encoding="utf-8")
    assert "eed236ceee2c19c2753a3d93ac0631dc20750454" in readme
    # an empty parametrization would run nothing
    assert len(cases("TestIsDNS1123Subdomain", "invalid")) == 60
    assert len(cases("TestIsQualifiedName", "valid")) == 17


# --- the rules, on every value of Kubernetes' tests --------------------------

PREDICATES = {
    "TestIsDNS1123Label": is_dns1123_label,
    "TestIsDNS1123Subdomain": is_dns1123_subdomain,
    "TestIsDNS1035Label": is_dns1035_label,
    "TestIsValidLabelValue": is_label_value,
    "TestIsQualifiedName": lambda v: qualified_name_problem(v) is None,
    # annotation keys: a qualified name in any case (ValidateAnnotations lowers them)
    "TestValidateAnnotations": lambda v: qualified_name_problem(v.lower()) is None,
}


@pytest.mark.parametrize(
    ("test", "v", "expected"),
    [(t, v, True) for t in PREDICATES for v in cases(t, "valid")]
    + [(t, v, False) for t in PREDICATES for v in cases(t, "invalid")],
    ids=lambda x: x if isinstance(x, str) and len(x) < 30 else None,
)
def test_rule_as_kubernetes_tests_it(test: str, v: str, expected: bool) -> None:
    assert PREDICATES[test](v) is expected


# --- through the loader: file, line, field, and the object left out ----------


def policy(**meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "p", "namespace": "ns", **meta},
        "spec": {"action": "DENY", "rules": [{}]},
    }


def only_error(obj: dict[str, Any]) -> Finding:
    loaded, findings = check_object(obj)
    (error,) = errors(findings)
    assert not loaded.manifests.all(), "an object the API server refuses is left out"
    return error


def line_of(obj: dict[str, Any], needle: str) -> int:
    text = yaml.safe_dump(obj, sort_keys=False)
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_trial_policy_name_is_refused_at_its_line() -> None:
    obj = policy(name="Deny_All")
    error = only_error(obj)
    assert (error.code, error.field, error.severity) == ("invalid-name", "metadata.name", "error")
    assert error.location.line == line_of(obj, "name: Deny_All")
    assert "DNS-1123 subdomain" in error.message and '"deny-all"' in error.message


@pytest.mark.parametrize(
    "name", [v for v in cases("TestIsDNS1123Subdomain", "invalid") if v], ids=ids
)
def test_a_custom_resource_name_that_is_not_a_subdomain_is_refused(name: str) -> None:
    error = only_error(policy(name=name))
    assert (error.code, error.field) == ("invalid-name", "metadata.name")


@pytest.mark.parametrize("name", cases("TestIsDNS1123Subdomain", "valid"), ids=ids)
def test_a_custom_resource_name_that_is_a_subdomain_is_read(name: str) -> None:
    loaded, findings = check_object(policy(name=name))
    assert not errors(findings)
    assert [r.name for r in loaded.manifests.authorization_policies] == [name]


def kind_named(api_version: str, kind: str, name: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if kind != "Namespace":
        meta["namespace"] = "ns"
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": meta}
    if kind == "Service":
        obj["spec"] = {"selector": {"app": "a"}, "ports": [{"port": 80}]}
    if kind == "Pod":
        obj["spec"] = {"containers": [{"name": "c"}]}
    return obj


# (apiVersion, kind, the Go test whose values its names follow)
KIND_RULES = [
    ("v1", "Namespace", "TestIsDNS1123Label"),
    ("v1", "Service", "TestIsDNS1035Label"),
    ("v1", "Pod", "TestIsDNS1123Subdomain"),
    ("v1", "ServiceAccount", "TestIsDNS1123Subdomain"),
    ("apps/v1", "StatefulSet", "TestIsDNS1123Subdomain"),
    ("security.istio.io/v1", "PeerAuthentication", "TestIsDNS1123Subdomain"),
    ("networking.istio.io/v1", "ServiceEntry", "TestIsDNS1123Subdomain"),
]


@pytest.mark.parametrize(
    ("api_version", "kind", "name", "valid"),
    [
        (a, k, v, ok)
        for a, k, test in KIND_RULES
        for ok in (True, False)
        for v in cases(test, "valid" if ok else "invalid")
        if v
    ],
    ids=lambda x: x if isinstance(x, str) and len(x) < 20 else None,
)
def test_each_kind_name_follows_its_rule(
    api_version: str, kind: str, name: str, valid: bool
) -> None:
    obj = kind_named(api_version, kind, name)
    if kind == "ServiceEntry":
        obj["spec"] = {"hosts": ["x.example.com"]}
    _, findings = check_object(obj)
    found = [f for f in errors(findings) if f.code == "invalid-name"]
    assert (not found) is valid, findings
    if not valid:
        assert found[0].field == "metadata.name" and found[0].kind == kind


def test_a_service_name_starting_with_a_digit_is_refused_but_a_pod_name_is_not() -> None:
    # TestIsDNS1035Label refuses "1a", TestIsDNS1123Subdomain accepts it
    assert errors(check_object(kind_named("v1", "Service", "1a"))[1])
    assert not errors(check_object(kind_named("v1", "Pod", "1a"))[1])


@pytest.mark.parametrize(
    "namespace",
    [v for v in cases("TestIsDNS1123Label", "invalid") if v]
    + cases("TestValidateObjectMetaNamespaces", "invalid")
    + ["Default"],
    ids=ids,
)
def test_a_namespace_that_is_not_a_label_is_refused(namespace: str) -> None:
    obj = policy(namespace=namespace)
    error = only_error(obj)
    assert (error.code, error.field) == ("invalid-namespace", "metadata.namespace")


def test_the_trial_namespace_is_refused_with_a_spelling_that_works() -> None:
    obj = policy(namespace="Default")
    error = only_error(obj)
    assert error.location.line == line_of(obj, "namespace: Default")
    assert '"default"' in error.message


@pytest.mark.parametrize("namespace", cases("TestIsDNS1123Label", "valid"), ids=ids)
def test_a_namespace_that_is_a_label_is_read(namespace: str) -> None:
    assert not errors(check_object(policy(namespace=namespace))[1])


@pytest.mark.parametrize("key", cases("TestIsQualifiedName", "invalid"), ids=ids)
def test_a_label_key_that_is_not_a_qualified_name_is_refused(key: str) -> None:
    obj = policy(labels={key: "v"})
    error = only_error(obj)
    assert (error.code, error.field) == ("invalid-label", f"metadata.labels.{key}")


@pytest.mark.parametrize("v", cases("TestIsValidLabelValue", "invalid"), ids=ids)
def test_a_label_value_kubernetes_refuses_is_refused(v: str) -> None:
    obj = policy(labels={"app": v})
    error = only_error(obj)
    assert (error.code, error.field) == ("invalid-label", "metadata.labels.app")
    assert error.location.line == line_of(obj, "app:")


def test_labels_kubernetes_accepts_are_read() -> None:
    labels = {k: "v" for k in cases("TestIsQualifiedName", "valid")}
    labels.update({f"k{i}": v for i, v in enumerate(cases("TestIsValidLabelValue", "valid"))})
    assert not errors(check_object(policy(labels=labels))[1])


@pytest.mark.parametrize("key", cases("TestValidateAnnotations", "invalid"), ids=ids)
def test_an_annotation_key_that_is_not_a_qualified_name_is_refused(key: str) -> None:
    error = only_error(policy(annotations={key: "bar"}))
    assert (error.code, error.field) == ("invalid-annotation", f"metadata.annotations.{key}")


def test_annotation_keys_kubernetes_accepts_are_read() -> None:
    annotations = {k: "bar" for k in cases("TestValidateAnnotations", "valid")}
    assert not errors(check_object(policy(annotations=annotations))[1])


@pytest.mark.parametrize(
    ("sizes", "valid"),
    [(s, True) for s in CASES["TestValidateAnnotations"]["valid_sizes"]]
    + [(s, False) for s in CASES["TestValidateAnnotations"]["invalid_sizes"]],
)
def test_annotations_are_at_most_256_kib_in_all(sizes: list[int], valid: bool) -> None:
    annotations = {k: "b" * n for k, n in zip(("a", "c"), sizes, strict=False)}
    _, findings = check_object(policy(annotations=annotations))
    found = errors(findings)
    assert (not found) is valid
    if not valid:
        assert (found[0].code, found[0].field) == ("invalid-annotation", "metadata.annotations")


def test_a_generate_name_with_a_final_dash_is_accepted_beside_a_name() -> None:
    (prefix,) = cases("TestValidateObjectMetaTrimsTrailingDash", "valid_generate_name")
    assert not errors(check_object(policy(name="test", generateName=prefix))[1])


def test_an_invalid_generate_name_is_refused() -> None:
    error = only_error(policy(name="test", generateName="Foo_-"))
    assert (error.code, error.field) == ("invalid-name", "metadata.generateName")


def test_a_generate_name_without_a_name_is_refused_as_kubectl_apply_refuses_it() -> None:
    # kubectl apply: "cannot use generate name with apply" (kubernetes/kubernetes
    # staging/src/k8s.io/kubectl/pkg/cmd/apply/apply_test.go
    # TestDontAllowApplyWithPodGeneratedName)
    obj = policy(generateName="deny-")
    del obj["metadata"]["name"]
    error = only_error(obj)
    assert (error.code, error.field) == ("invalid-name", "metadata.name")
    assert "generateName" in error.message


def test_an_unknown_metadata_field_is_refused_as_strict_field_validation_does() -> None:
    obj = policy(labelz={"app": "a"})
    error = only_error(obj)
    assert (error.code, error.field) == ("schema", "metadata.labelz")
    assert error.message == 'unknown field "labelz"'
    assert error.location.line == line_of(obj, "labelz:")


def test_every_object_meta_field_is_known() -> None:
    # an object as `kubectl get -o yaml` prints it
    meta = {
        "name": "p",
        "namespace": "ns",
        "generateName": "p-",
        "selfLink": "/apis/security.istio.io/v1/namespaces/ns/authorizationpolicies/p",
        "uid": "0b1c",
        "resourceVersion": "42",
        "generation": 1,
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "deletionTimestamp": "2026-01-02T00:00:00Z",
        "deletionGracePeriodSeconds": 0,
        "labels": {"app": "a"},
        "annotations": {"note": "x"},
        "ownerReferences": [],
        "finalizers": ["example.com/f"],
        "managedFields": [],
    }
    assert set(meta) == OBJECT_META_FIELDS
    assert not errors(check_object(policy(**meta))[1])


def test_workloads_metadata_is_checked_too() -> None:
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "Web", "namespace": "ns"},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}}}},
    }
    error = only_error(obj)
    assert (error.code, error.field, error.kind) == ("invalid-name", "metadata.name", "Deployment")


# --- the commands: validate reports, check refuses (exit 2) -------------------

DENY_ALL = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: Deny_All
  namespace: default
spec:
  action: DENY
  selector: {matchLabels: {app: backend}}
  rules: [{}]
"""
CHECK = ["--from", "default/frontend", "--to", "default/backend", "--path", "/api/v1/data"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exc.value.code or 0), out, err


def test_check_refuses_a_policy_the_api_server_refuses(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fixed = str(EXAMPLES / "seed-fixed")
    code, out, _ = run(capsys, "check", "-f", fixed, *CHECK)
    assert code == 0 and out.startswith("ALLOW")
    bad = tmp_path / "deny.yaml"
    bad.write_text(DENY_ALL, encoding="utf-8")
    code, out, err = run(capsys, "check", "-f", fixed, "-f", str(bad), *CHECK)
    assert code == 2 and not out.startswith("DENY")
    assert (
        f"{bad}:4:3: error[invalid-name] AuthorizationPolicy default/Deny_All: metadata.name" in err
    )
    code, out, _ = run(capsys, "check", "-o", "json", "-f", fixed, "-f", str(bad), *CHECK)
    assert code == 2
    (finding,) = json.loads(out)["error"]["findings"]
    assert finding["code"] == "invalid-name" and finding["field"] == "metadata.name"
    assert (finding["file"], finding["line"]) == (str(bad), 4)


def test_validate_reports_each_metadata_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text(
        DENY_ALL.replace("namespace: default", "namespace: Default\n  labelz: {a: b}"),
        encoding="utf-8",
    )
    code, out, _ = run(capsys, "validate", "-o", "json", str(bad))
    assert code == 1
    found = [(f["code"], f["field"], f["line"]) for f in json.loads(out)["findings"]]
    assert found == [
        ("invalid-name", "metadata.name", 4),
        ("invalid-namespace", "metadata.namespace", 5),
        ("schema", "metadata.labelz", 6),
    ]


# A pod template's labels and annotations are checked as an object's (ValidateLabels
# and ValidateAnnotations on the template's metadata: kubernetes' apps validation,
# ValidatePodTemplateSpecForStatefulSet, cited above; core's ValidatePodTemplateSpec
# for the other controllers), its unknown fields as strict field validation reports
# them; its name and namespace are not.
def deployment(template_meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {"template": {"metadata": template_meta, "spec": {"containers": []}}},
    }


@pytest.mark.parametrize("v", cases("TestIsValidLabelValue", "invalid"), ids=ids)
def test_a_pod_template_label_value_kubernetes_refuses_is_refused(v: str) -> None:
    obj = deployment({"labels": {"app": v}})
    error = only_error(obj)
    assert (error.code, error.field) == ("invalid-label", "spec.template.metadata.labels.app")
    assert error.location.line == line_of(obj, "app:")


def test_a_pod_template_annotation_key_and_unknown_field_are_refused() -> None:
    _, findings = check_object(
        deployment({"annotations": {"only/one/slash": "x"}, "labelz": {"app": "a"}})
    )
    assert sorted((f.code, f.field) for f in errors(findings)) == [
        ("invalid-annotation", "spec.template.metadata.annotations.only/one/slash"),
        ("schema", "spec.template.metadata.labelz"),
    ]


def test_a_cron_job_template_is_checked_at_its_path() -> None:
    obj = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": "ns"},
        "spec": {
            "schedule": "0 0 * * *",
            "jobTemplate": {"spec": {"template": {"metadata": {"labels": {"app": "Bad Value"}}}}},
        },
    }
    error = only_error(obj)
    assert error.field == "spec.jobTemplate.spec.template.metadata.labels.app"


def test_a_pod_template_name_is_not_checked() -> None:
    loaded, findings = check_object(deployment({"name": "Any_Name", "labels": {"app": "web"}}))
    assert not errors(findings) and len(loaded.manifests.workloads) == 1
