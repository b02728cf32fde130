"""Label matching. Source: pkg/config/labels/instance_test.go TestInstance
(left = selector, right = labels; expected (SubsetOf, Match))."""

from __future__ import annotations

import pytest

from meshauthz.mesh.labels import match, subset_of

CASES = [
    (None, {"app": "a"}, (True, False)),
    ({}, {"app": "a"}, (True, False)),
    ({"app": "a"}, None, (False, False)),
    ({"app": "a"}, {"app": "a", "prod": "env"}, (True, True)),
    ({"app": "a", "prod": "env"}, {"app": "a"}, (False, False)),
    ({"app": "a"}, {"app": "b", "prod": "env"}, (False, False)),
    ({"foo": ""}, {"app": "a"}, (False, False)),
    ({"foo": ""}, {"app": "a", "foo": ""}, (True, True)),
    ({"app": "a", "foo": ""}, {"foo": ""}, (False, False)),
]


@pytest.mark.parametrize("left,right,expected", CASES)
def test_instance(left, right, expected):
    assert (subset_of(left, right), match(left, right)) == expected
