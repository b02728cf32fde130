"""``parse_plain`` (large inputs read for their data) gives ``parse_documents``'s
data, and leaves to it the inputs whose JSON and YAML readings differ."""

from __future__ import annotations

import json

import pytest

from meshauthz.resources.yamlload import parse_documents, parse_plain

CASES = [
    '[{"from": "default/frontend", "to": "default/backend", "port": 80, "path": "/a"}]',
    '{"a": 1.5, "b": 1e5, "c": [true, null, "yes"]}',  # 1e5 is a string to YAML 1.1
    '{"a": 1, "a": 2}',  # a duplicate key: refused, with its line
    '{"s": "\\ud83d\\ude00"}',
    "- from: default/frontend\n  to: default/backend\n  when: 2024-01-01\n- {to: x, n: !!binary aGk=}\n",
    "a: &x {b: 1}\nc:\n  <<: *x\n  d: 2\n",
    "---\n{x: 1}\n---\n[1, 2]\n",
    "",
]


@pytest.mark.parametrize("text", CASES)
def test_plain_data_is_the_positioned_readers_data(text: str) -> None:
    try:
        want = [d.data for d in parse_documents(text, "r.yaml")]
    except Exception as e:  # the positioned reader refuses: so does the plain one
        with pytest.raises(type(e)):
            parse_plain(text, "r.yaml")
        return
    got = parse_plain(text, "r.yaml")
    assert [d.data for d in got] == want
    assert all(not d.positions for d in got)


def test_json_numbers_are_read_as_yaml_reads_them() -> None:
    (doc,) = parse_plain(json.dumps({"port": 80, "x": 0.5}), "r.json")
    assert doc.data == {"port": 80, "x": 0.5}
    (doc,) = parse_plain('{"y": 1E3}', "r.json")
    assert doc.data == {"y": "1E3"}
