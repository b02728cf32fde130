"""A loaded document keeps its text, not its parsed data (``Document.release``):
the data of a large mesh takes several times its text. What reads a document
after loading (ambient's waypoints, the positions of every finding and note)
reads the same values and positions, analyze and the local mesh's plan read
none again, and the memory a load keeps per byte of YAML stays bounded."""

from __future__ import annotations

import pickle
import tracemalloc
from pathlib import Path

import pytest

from meshauthz.errors import InputError
from meshauthz.mesh.loading import load_mesh, read_manifests
from meshauthz.mesh.snapshot import creation_time
from meshauthz.resources.yamlload import Document, Positions, parse_documents

POLICY = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-{i}
  namespace: ns{ns}
  creationTimestamp: "2024-01-0{day}T00:00:00Z"
spec:
  selector:
    matchLabels:
      app: svc{i}
  action: ALLOW
  rules:
{rules}"""

RULE = """\
  - from:
    - source:
        principals: [{principals}]
    to:
    - operation:
        methods: ["GET", "POST"]
        paths: ["/svc{i}/r{j}/*"]
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: svc{i}
  namespace: ns{ns}
spec:
  selector:
    matchLabels:
      app: svc{i}
  template:
    metadata:
      labels:
        app: svc{i}
      annotations:
        note: "{i}"
    spec:
      serviceAccountName: svc{i}
      containers:
      - name: app
        image: app
        ports:
        - containerPort: 8080
"""


def _mesh(d: Path, n: int) -> Path:
    """n Deployments and n AuthorizationPolicies of 3 rules, in two files."""
    d.mkdir()
    policies, workloads = [], []
    for i in range(n):
        rules = "".join(
            RULE.format(
                i=i,
                j=j,
                principals=", ".join(
                    f'"cluster.local/ns/ns{k % 10}/sa/client{(i * 7 + j * 3 + k) % (2 * n)}"'
                    for k in range(5)
                ),
            )
            for j in range(3)
        )
        policies.append(POLICY.format(i=i, ns=i % 10, day=1 + i % 9, rules=rules))
        workloads.append(DEPLOYMENT.format(i=i, ns=i % 10))
    (d / "authz.yaml").write_text("---\n".join(policies))
    (d / "workloads.yaml").write_text("---\n".join(workloads))
    return d


def test_loaded_documents_read_again_as_they_were_read(tmp_path: Path) -> None:
    d = _mesh(tmp_path / "mesh", 5)
    mesh = load_mesh([str(d)])
    resources = [*mesh.manifests.authorization_policies, *mesh.manifests.workloads]
    assert len(resources) == 10
    for r in resources:
        doc = r.doc
        assert doc.source is not None  # released: its data is read again from its text
        whole = parse_documents(Path(doc.file).read_text(), doc.file)[doc.index]
        assert doc.data == whole.data
        assert doc.line == whole.line
        assert isinstance(doc.positions, Positions)
        assert dict(doc.positions) == dict(whole.positions)
        for path in whole.positions:
            assert doc.location(path) == whole.location(path)
        # a path not in the document: its closest parent, as before
        assert doc.location(("spec", "nothing", 3)) == whole.location(("spec",))
        assert r.location("spec", "selector") == whole.location(("spec", "selector"))
    policy = mesh.manifests.authorization_policies[3]
    assert creation_time(policy).isoformat() == "2024-01-04T00:00:00+00:00"
    copy = pickle.loads(pickle.dumps(policy))
    assert copy.doc.data == policy.doc.data
    assert copy.location("spec", "rules", 1) == policy.location("spec", "rules", 1)


def test_a_document_without_its_own_text_keeps_its_data() -> None:
    doc = Document("f.yaml", 0, 1, {"a": 1})
    doc.release()
    assert doc.data == {"a": 1}


def test_a_file_not_read_in_chunks_is_read_whole_and_nothing_of_it_is_kept(
    tmp_path: Path,
) -> None:
    d = _mesh(tmp_path / "mesh", 2)
    # a valid first document, then one that is not YAML: the file is unreadable,
    # as it is read whole, and nothing of its first document is kept
    broken = d / "broken.yaml"
    text = POLICY.format(i=9, ns=1, day=1, rules=RULE.format(i=9, j=0, principals='"a"'))
    broken.write_text(text + "---\nkind: [unclosed\n")
    with pytest.raises(InputError) as whole:
        parse_documents(broken.read_text(), str(broken))
    checked = read_manifests([str(d)])
    assert [(e.message, e.location) for e in checked.unreadable] == [
        (whole.value.message, whole.value.location)
    ]
    assert [p.name for p in checked.manifests.authorization_policies] == ["allow-0", "allow-1"]


def _retained_per_yaml_byte(d: Path) -> float:
    size = sum(p.stat().st_size for p in d.iterdir())
    tracing = tracemalloc.is_tracing()  # e.g. PYTHONTRACEMALLOC set: left on
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        mesh = load_mesh([str(d)])
        after = tracemalloc.get_traced_memory()[0]
    finally:
        if not tracing:
            tracemalloc.stop()
    assert len(mesh.snapshot.workloads) == 300
    return (after - before) / size


def test_a_load_keeps_a_few_times_its_yaml(tmp_path: Path) -> None:
    """What a load keeps, counted by tracemalloc (the same on every run): 4.5
    times the YAML's size for this mesh (the objects, their documents' text and
    positions, the snapshot). Keeping each document's parsed data as well was
    8.6 times; the positions of each document apart (not shared between
    documents of one shape), 5.4 times."""
    load_mesh([str(_mesh(tmp_path / "warm", 3))])  # modules and caches of a first load
    ratio = _retained_per_yaml_byte(_mesh(tmp_path / "mesh", 300))
    assert ratio < 5.0, ratio


def test_an_object_read_from_a_file_of_others_keeps_its_own_text_only(tmp_path: Path) -> None:
    big = "".join(
        f"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\ndata:\n  k: v{i}\n"
        for i in range(50)
    )
    one = "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns1\n"
    f = tmp_path / "bundle.yaml"
    f.write_text(big + one)
    (namespace,) = read_manifests([str(f)]).manifests.namespaces
    source = namespace.doc.source
    assert source is not None
    assert source.text == one  # not the whole file's text
    assert namespace.doc.data == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "ns1"},
    }
    assert namespace.location("metadata", "name").line == f.read_text().count("\n")  # the last


def test_analyze_and_the_mesh_plan_read_no_document_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After loading, analyze and the local mesh's plan read what the loader
    kept (annotations, istio-proxy containers, creation times), not a
    document's text again: that was one more parse per workload."""
    from meshauthz.analyze.run import analyze
    from meshauthz.resources import yamlload
    from meshauthz.runtime.plan import make_plan

    d = _mesh(tmp_path / "mesh", 20)
    mesh = load_mesh([str(d)])
    reads: list[object] = []
    read = yamlload._Text.read

    def counted(text: yamlload._Text) -> object:
        reads.append(text)
        return read(text)

    monkeypatch.setattr(yamlload._Text, "read", counted)
    analyze(mesh)
    plan = make_plan(
        mesh.snapshot,
        name="m",
        manifests=str(d),
        state_dir=tmp_path / "state",
        cert_ttl_seconds=3600,
    )
    assert len(plan.workloads) == 20
    assert reads == []
