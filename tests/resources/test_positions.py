"""Where each value of a document is written: ``Document.positions`` and
``Document.location`` name the line and column a reader would look at, for every
value of every document, however the YAML is written (block or flow, anchors and
aliases, merge keys, several documents), and a path that is not in the document
falls back to its closest parent."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
import yaml

from meshauthz.errors import InputError
from meshauthz.resources.yamlload import Document, Path, Positions, parse_documents


def _expected(node: yaml.Node, path: Path, mark: Any, out: dict[Path, tuple[int, int]]) -> None:
    """What each value's position means, read off PyYAML's own nodes: a mapping's
    value is where its key is written; a list's item and the document itself,
    where the item begins. (No merge keys here: see the tests of those.)"""
    out[path] = (mark.line + 1, mark.column + 1)
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _expected(item, (*path, i), item.start_mark, out)
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _expected(value, (*path, str(key.value)), key.start_mark, out)


CASES = [
    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  labels: {app: a, tier: b}\n",
    "a:\n- x: 1\n  y: [1, 2, {z: 3}]\n- - nested\n  - [deep, [deeper]]\n- {}\n- []\n",
    "--- {a: 1, b: [x, y, {c: d}]}\n--- [1, [2, [3]], {e: f}]\n---\n- a\n- - b\n  - c\n",
    "a: &x {b: 1, c: [1, {d: 2}]}\ne: *x\ng:\n  h: *x\n",
    "k: !!binary aGk=\nt: 2024-01-01\nn: null\nq: 'quoted'\nlong: |\n  text\n  more\nz: 1\n",
    '{"a": {"b": [1, 2, {"c": "d"}]}, "e": null, "f": [[], {}]}',
    "plain scalar\n",
    "spec:\n  rules:\n"
    + "".join(f"  - from:\n    - source:\n        principals: [p{i}a, p{i}b]\n" for i in range(40)),
    # columns past 4095: the positions do not fit the 32-bit packing
    "a: {" + ", ".join(f"k{i}: [v{i}]" for i in range(700)) + "}\n",
]


@pytest.mark.parametrize("text", CASES)
def test_every_value_is_where_it_is_written(text: str) -> None:
    docs = parse_documents(text, "f.yaml")
    nodes = [n for n in yaml.compose_all(text, Loader=yaml.SafeLoader) if n is not None]
    assert len(docs) == len(nodes)
    for doc, node in zip(docs, nodes, strict=True):
        want: dict[Path, tuple[int, int]] = {}
        _expected(node, (), node.start_mark, want)
        assert isinstance(doc.positions, Positions)
        assert dict(doc.positions) == want
        assert len(doc.positions) == len(want)
        line_at = doc.line_finder()
        for path, (line, column) in want.items():
            assert doc.location(path) == doc.location(list(path))
            loc = doc.location(path)
            assert (loc.file, loc.line, loc.column) == ("f.yaml", line, column)
            assert line_at(path) == line


def test_a_path_not_in_the_document_falls_back_to_its_closest_parent() -> None:
    (doc,) = parse_documents("a:\n  b: [x, y]\n  s: text\nc: 1\n", "f.yaml")
    assert doc.location(("a", "missing", 3)) == doc.location(("a",))
    assert doc.location(("a", "b", 7)) == doc.location(("a", "b"))
    # negative indexes, an index into a string, a key of the wrong type: not values
    for odd in [("a", "b", -1), ("a", "s", 0), ("a", 0), ("c", "x"), ("a", "b", "0")]:
        assert doc.location(odd) == doc.location(odd[:-1]), odd
        assert odd not in doc.positions
    assert doc.location(("zzz",)) == doc.location(())
    assert (doc.location().line, doc.location(("a", "b", 1)).column) == (1, 10)


def test_merge_keys_take_the_position_of_the_key_merged() -> None:
    text = "base: &b\n  x: 1\n  y: [a, b]\nm:\n  <<: *b\n  x: 9\n"
    (doc,) = parse_documents(text, "f.yaml")
    assert doc.data["m"] == {"x": 9, "y": ["a", "b"]}
    assert doc.positions[("m", "x")] == (6, 3)  # written here: wins over the merged one
    assert doc.positions[("m", "y")] == (3, 3)  # merged: where the anchor's key is
    assert doc.positions[("m", "y", 1)] == (3, 10)
    assert list(doc.positions) == [
        (),
        ("base",),
        ("base", "x"),
        ("base", "y"),
        ("base", "y", 0),
        ("base", "y", 1),
        ("m",),
        ("m", "x"),
        ("m", "y"),
        ("m", "y", 0),
        ("m", "y", 1),
    ]


@pytest.mark.parametrize(
    ("text", "where", "field"),
    [
        ("a:\n  b:\n    c: 1\n    c: 2\n", "f.yaml:4:5", "a.b.c"),
        ("a:\n- x: 1\n- y: 2\n  y: 3\n", "f.yaml:4:3", "a[1].y"),
        ("a: &x {b: 1}\nc:\n  <<: *x\n  b: 2\n  b: 3\n", "f.yaml:5:3", "c.b"),
    ],
)
def test_a_duplicate_key_names_its_field_and_both_lines(text: str, where: str, field: str) -> None:
    with pytest.raises(InputError) as e:
        parse_documents(text, "f.yaml")
    assert (str(e.value.location), e.value.field) == (where, field)
    assert "first defined at line" in e.value.message


def test_shared_paths_hashes_fall_back_to_a_plain_mapping() -> None:
    data = {"a": [1, 2]}
    marks = [(1 << 32) | 1, (1 << 32) | 1, (2 << 32) | 3, (2 << 32) | 6]
    # as if all four paths had one hash: told apart by a plain mapping
    positions = Positions.of(data, [7, 7, 7, 7], marks)
    assert positions == {(): (1, 1), ("a",): (1, 1), ("a", 0): (2, 3), ("a", 1): (2, 6)}
    doc = Document("f.yaml", 0, 1, data, positions)
    assert doc.location(("a", 1, "x")).column == 6


def test_positions_survive_pickling_and_shifting() -> None:
    (doc,) = parse_documents("a:\n  b: [x, y]\n", "f.yaml")
    assert isinstance(doc.positions, Positions)
    plain = dict(doc.positions)
    assert pickle.loads(pickle.dumps(doc.positions)) == plain
    shifted = doc.positions.shifted(10)
    assert dict(shifted) == {p: (line + 10, col) for p, (line, col) in plain.items()}


def test_positions_take_the_narrowest_packing_that_holds_them() -> None:
    (doc,) = parse_documents("a:\n  b: [x, y]\n", "f.yaml")
    assert isinstance(doc.positions, Positions)
    assert (doc.positions._keys.typecode, doc.positions._marks.typecode) == ("I", "I")
    (wide,) = parse_documents(CASES[-1], "f.yaml")
    assert isinstance(wide.positions, Positions)
    assert wide.positions._marks.typecode == "Q"
    assert wide.location(("a", "k699", 0)).column > 4096


def test_paths_whose_hashes_share_their_low_bits_keep_the_whole_hash() -> None:
    data = {"a": [1, 2]}
    paths: list[Path] = [(), ("a",), ("a", 0), ("a", 1)]
    keys = [hash(p) for p in paths]
    marks = [(1 << 32) | 1, (1 << 32) | 1, (2 << 32) | 3, (2 << 32) | 6]
    # a fifth value whose hash has the low 32 bits of ("a", 1)'s: told apart by
    # the full hash
    data["b"] = 3
    paths.append(("b",))
    keys.append((keys[3] & 0xFFFFFFFF) | ((~keys[3] >> 32) << 32))
    marks.append((3 << 32) | 1)
    positions = Positions.of(data, keys, marks)
    assert isinstance(positions, Positions)
    assert positions._keys.typecode == "q"
    assert positions[("a", 1)] == (2, 6)
    assert positions.nearest(("a", 0, "x")) == (2, 3)
