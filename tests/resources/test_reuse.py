"""A load that reuses what an earlier load made (``LoadRecord``, as ``diff``
does for NEW after OLD) gives what a fresh load gives: the same objects, data
and positions, the same findings at the same file, line and column (NEW's
files, wherever a document moved), the same snapshot and the same ``diff``
answer."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from meshauthz.errors import InputError
from meshauthz.mesh.loading import (
    InvalidInput,
    LoadRecord,
    load_mesh,
    read_manifests,
)
from meshauthz.mesh.snapshot import MeshSnapshot
from meshauthz.resources.yamlload import Document, parse_documents, read_chunked
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import meshgen
from diff import change_one_policy  # the benchmark's own change

EXAMPLES = REPO / "examples"


def shape(value: Any, seen: dict[int, int] | None = None) -> Any:
    """Everything a load made, as plain values: objects by their fields (an
    object met again by the order it was first met in), documents by file,
    index, line, data and every position."""
    seen = {} if seen is None else seen
    if isinstance(value, Document):
        return ("Document", value.file, value.index, value.line, value.data, dict(value.positions))
    if isinstance(value, str | int | float | bool | type(None)):
        return value
    if isinstance(value, dict):
        return {k: shape(v, seen) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [shape(v, seen) for v in value]
        return items if not isinstance(value, set | frozenset) else sorted(map(repr, items))
    if isinstance(value, msgspec.Struct) and value.__struct_config__.eq:
        # a value: equal ones may be one object (reuse shares typed specs)
        fields = {n: shape(getattr(value, n), seen) for n in value.__struct_fields__}
        return (type(value).__name__, fields)
    if id(value) in seen:
        return ("seen", seen[id(value)])
    seen[id(value)] = len(seen)
    if isinstance(value, msgspec.Struct):
        names = value.__struct_fields__
    elif isinstance(value, MeshSnapshot):  # a plain class: its attributes
        names = tuple(vars(value))
    else:
        return value
    return (type(value).__name__, {n: shape(getattr(value, n), seen) for n in names})


def fresh_and_reused(
    old: list[Path], new: list[Path], **options: Any
) -> tuple[Any, Any, LoadRecord]:
    """NEW read fresh, and read after OLD with one record."""
    old_options = options.pop("old_options", options)
    fresh = read_manifests(new, **options)
    record = LoadRecord()
    read_manifests(old, record=record, **old_options)
    reused = read_manifests(new, record=record, **options)
    return fresh, reused, record


def assert_same(old: list[Path], new: list[Path], **options: Any) -> Any:
    fresh, reused, _ = fresh_and_reused(old, new, **options)
    assert shape(reused.manifests) == shape(fresh.manifests)
    assert reused.findings == fresh.findings  # every location too
    assert [str(e) for e in reused.unreadable] == [str(e) for e in fresh.unreadable]
    return reused


def assert_same_mesh(old: list[Path], new: list[Path]) -> None:
    """The snapshot and ``diff``'s answer too."""
    from meshauthz.symbolic import compare_meshes

    assert_same(old, new)
    fresh = load_mesh(new)
    record = LoadRecord()
    before = load_mesh(old, record=record)
    reused = load_mesh(new, record=record)
    assert shape(reused.snapshot) == shape(fresh.snapshot)
    assert reused.findings == fresh.findings
    answers = [answer(compare_meshes(before.snapshot, n.snapshot)) for n in (fresh, reused)]
    assert answers[0] == answers[1]


def answer(comparison: Any) -> Any:
    """``diff``'s answer: each class of changed requests (where, and how each
    side decides); the witness found for a class may be another request from
    one run of the solver to the next (each is confirmed by ``check``)."""
    out = comparison.to_json()
    for key in ("opened", "closed"):
        out[key] = sorted(
            (str({k: v for k, v in c.items() if k not in ("witness", "description")}))
            for c in out[key]
        )
    return out


def test_the_benchmark_mesh_with_one_policy_changed(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    meshgen.generate_mesh(old, 30)
    shutil.copytree(old, new)
    change_one_policy(new)
    assert_same_mesh([old], [new])


def test_reused_documents_name_new_files_and_lines(tmp_path: Path) -> None:
    """The benchmark's change, made two lines longer: every reused object after
    it is where NEW has it, in NEW's file."""
    old, new = tmp_path / "old", tmp_path / "new"
    meshgen.generate_mesh(old, 20)
    shutil.copytree(old, new)
    p = new / "policies.yaml"
    p.write_text(p.read_text().replace("  name: allow-svc3\n", "  name: allow-svc3\n\n\n", 1))
    fresh, reused, record = fresh_and_reused([old], [new])
    # reused indeed: the objects read from OLD's text, not read again
    before = read_manifests([old], record=record).manifests.authorization_policies
    after = reused.manifests.authorization_policies
    assert [a.spec is b.spec for a, b in zip(before, after, strict=True)] == [
        p.name != "allow-svc3" for p in after
    ]
    last = reused.manifests.authorization_policies[-1]
    assert last.file == str(p)
    assert last.location("spec", "rules", 0) == fresh.manifests.authorization_policies[-1].location(
        "spec", "rules", 0
    )
    assert_same([old], [new])


def test_the_examples(tmp_path: Path) -> None:
    for old, new in (
        ("seed", "seed-fixed"),
        ("seed-fixed", "seed"),
        ("seed", "seed-ambient"),
        ("seed-ambient", "seed-ambient-waypoint"),
    ):
        assert_same_mesh([EXAMPLES / old], [EXAMPLES / new])
    # every example at once, the invalid ones too (their findings)
    assert_same([EXAMPLES / "seed"], [EXAMPLES])
    assert_same([EXAMPLES], [EXAMPLES])
    twins = sorted((EXAMPLES / "twins").glob("*.yaml"))
    assert_same_mesh([twins[0], twins[-1]], [twins[1], twins[-1]])


POLICY = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: {name}
spec:
  selector:
    matchLabels:
      app: backend
  action: {action}
  rules:
  - to:
    - operation:
        methods: [{methods}]
        paths: ["/api/*"]
"""
WORKLOAD = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: backend
spec:
  selector:
    matchLabels:
      app: backend
  template:
    metadata:
      labels:
        app: backend
    spec:
      containers:
      - name: app
        image: app
        ports:
        - containerPort: 8080
"""


def policy(name: str, action: str = "ALLOW", methods: str = '"GET"') -> str:
    return POLICY.format(name=name, action=action, methods=methods)


def write(directory: Path, files: dict[str, str]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return [directory]


def test_an_earlier_document_grew_by_lines(tmp_path: Path) -> None:
    a, b, c = policy("a"), policy("b"), policy("c", "DENY", '"DELETE"')
    old = write(tmp_path / "old", {"p.yaml": "---\n".join([a, b, c]), "w.yaml": WORKLOAD})
    grown = a.replace("  rules:\n", "  # two more lines\n\n  rules:\n")
    new = write(tmp_path / "new", {"p.yaml": "---\n".join([grown, b, c]), "w.yaml": WORKLOAD})
    assert_same_mesh(old, new)
    shrunk = a.replace("metadata:\n  name: a\n", "metadata: {name: a}\n")
    new = write(tmp_path / "new2", {"p.yaml": "---\n".join([shrunk, b, c]), "w.yaml": WORKLOAD})
    assert_same_mesh(old, new)


def test_an_invalid_document(tmp_path: Path) -> None:
    """Findings of a reused invalid document, and of one that became invalid,
    at NEW's lines."""
    bad = policy("bad", methods="1").replace("paths: [", "paths: [3, ")
    old = write(tmp_path / "old", {"p.yaml": "---\n".join([policy("a"), bad, policy("c")])})
    new = write(
        tmp_path / "new",
        {"p.yaml": "---\n".join(["# a comment\n" + policy("a"), bad, policy("c", "DENY", "")])},
    )
    reused = assert_same(old, new)
    assert {f.location.file for f in reused.errors} == {str(new[0] / "p.yaml")}
    assert len(reused.errors) >= 2
    with pytest.raises(InvalidInput) as fresh:
        load_mesh(new)
    record = LoadRecord()
    with pytest.raises(InvalidInput):
        load_mesh(old, record=record)
    with pytest.raises(InvalidInput) as again:
        load_mesh(new, record=record)
    assert again.value.findings == fresh.value.findings
    # a file that does not parse: the same error, read afresh
    broken = write(tmp_path / "broken", {"p.yaml": policy("a") + "---\n" + bad + "  x: [\n"})
    assert_same(old, broken)


def test_a_document_moved_to_another_file(tmp_path: Path) -> None:
    a, b, c = policy("a"), policy("b"), policy("c", "DENY", '"DELETE"')
    old = write(tmp_path / "old", {"p.yaml": "---\n".join([a, b, c]), "w.yaml": WORKLOAD})
    new = write(
        tmp_path / "new",
        {"p.yaml": "---\n".join([a, c]), "q.yaml": "---\n".join([WORKLOAD, b])},
    )
    reused = assert_same(old, new)
    moved = next(p for p in reused.manifests.authorization_policies if p.name == "b")
    assert moved.file == str(tmp_path / "new" / "q.yaml")
    assert_same_mesh(old, new)


def test_the_same_text_in_another_namespace(tmp_path: Path) -> None:
    """-n puts a document's objects elsewhere: what the loader made of it
    without -n is not reused, its parsing is."""
    a = policy("a")
    old = write(tmp_path / "old", {"p.yaml": a, "w.yaml": WORKLOAD})
    new = write(tmp_path / "new", {"p.yaml": a, "w.yaml": WORKLOAD})
    reused = assert_same(old, new, namespace="prod", old_options={})
    assert {p.namespace for p in reused.manifests.authorization_policies} == {"prod"}
    assert_same(old, new, namespace="prod")
    assert_same(old, new, old_options={"namespace": "prod"})
    # one naming another namespace than -n: the finding at NEW's line
    other = a.replace("  name: a\n", "  name: a\n  namespace: dev\n")
    mismatch = write(tmp_path / "mismatch", {"p.yaml": "# moved\n" + other})
    assert_same(write(tmp_path / "o2", {"p.yaml": other}), mismatch, namespace="prod")


def test_twice_the_same_document_and_a_mesh_config(tmp_path: Path) -> None:
    """What depends on more than one document is made afresh: objects defined
    twice, the one mesh config ConfigMap."""
    a = policy("a")
    config = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\n"
        "data:\n  mesh: |\n    trustDomain: example.org\n"
    )
    old = write(tmp_path / "old", {"p.yaml": "---\n".join([a, config])})
    new = write(tmp_path / "new", {"p.yaml": "---\n".join([a, a, config]), "q.yaml": a})
    reused = assert_same(old, new)
    assert sum(f.code == "duplicate-object" for f in reused.errors) == 2
    assert reused.manifests.mesh_config.trust_domain == "example.org"
    twice = write(tmp_path / "twice", {"p.yaml": "---\n".join([config, a, config])})
    with pytest.raises(InputError) as fresh:
        read_manifests(twice)
    record = LoadRecord()
    read_manifests(old, record=record)
    with pytest.raises(InputError) as again:
        read_manifests(twice, record=record)
    assert str(again.value) == str(fresh.value)


# --- reading in chunks: the same documents as reading the stream whole ---------

PIECES = [
    "a: 1\n",
    "# a comment\n",
    "\n",
    "---\n",
    "--- # a comment\n",
    "---\t\n",
    "--- |\n  text\n",
    "--- >-\n  folded\n",
    "--- !!map\nk: v\n",
    "--- {a: 1}\n",
    "---x: 1\n",
    "----\n",
    "b: |\n  ---\n  block\n",
    "c: |\n  x\n",
    "d: 'quoted\n",
    'e: "multi\n  line"\n',
    "f: [1,\n",
    "  2]\n",
    "g: plain\n  continued\n",
    "...\n",
    "%YAML 1.1\n",
    "h: x\r\n",
    "r: 1\rs: 2\n",
    "t: 'a\u2028b'\n",
    "\ufeffi: 1\n",
    "j: &x {a: 1}\nk: *x\n",
    "l: *x\n",
    "m: 1\nm: 2\n",
    "n:\n- 1\n- - 2\n",
    "o: !!int x\n",
    "p",
    "---",
]


def _whole(text: str) -> Any:
    try:
        return [shape(d) for d in parse_documents(text, "f.yaml")]
    except InputError as e:
        return str(e), e.location, e.field


@settings(max_examples=400, deadline=None)
@example([], ["t: 'a\u2028b'\n", "---\n", "a: 1\n"])  # a line break of YAML's, not "\n"
@example(["a: 1\n", "---\n", "b: 2\n"], ["# moved\n", "---\n", "b: 2\n", "---\n", "a: 1\n"])
@given(st.lists(st.sampled_from(PIECES), max_size=8), st.lists(st.sampled_from(PIECES), max_size=8))
def test_chunks_read_as_the_whole_stream(first: list[str], second: list[str]) -> None:
    """Any stream read in chunks (with chunks of another stream already read)
    gives the documents reading it whole gives, or declines (then it is read
    whole)."""
    chunks: dict[str, Any] = {}
    for pieces in (first, second):
        text = "".join(pieces)
        chunked = read_chunked(text, "f.yaml", chunks)
        if chunked is not None:
            assert [shape(d) for d, _ in chunked] == _whole(text), text
