"""Records (meshauthz.records): the fields a class names as provenance are its
last ones, and take no part in equality, hashing or repr."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import meshauthz
from meshauthz.envoy.rbac.model import IdAuthenticated, Note, PermUriTemplate, StringMatcher
from meshauthz.records import Record


def _record_classes() -> list[type[Record]]:
    for info in pkgutil.walk_packages(meshauthz.__path__, "meshauthz."):
        importlib.import_module(info.name)
    found: list[type[Record]] = []
    todo = list(Record.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


RECORDS = [c for c in _record_classes() if c.__struct_fields__]  # bases have none


def test_records_are_found() -> None:
    names = {c.__name__ for c in RECORDS}
    assert {"IdAuthenticated", "RequestSpec", "MeshConfig", "JwtOutcome"} <= names


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_provenance_fields_are_the_last_ones(cls: type[Record]) -> None:
    fields = cls.__struct_fields__
    n = len(cls.provenance)
    assert fields[len(fields) - n :] == cls.provenance
    assert cls._compared == (-n or None)


def test_provenance_takes_no_part_in_equality_hashing_or_repr() -> None:
    name = StringMatcher("exact", "spiffe://cluster.local/ns/a/sa/b")
    a = IdAuthenticated(name, note=Note(policy="ns/a", rule=0))
    b = IdAuthenticated(name, note=Note(policy="ns/b", rule=3))
    assert a == b and hash(a) == hash(b) and {a: 1}[b] == 1
    assert a != IdAuthenticated(StringMatcher("prefix", "spiffe://"), note=a.note)
    assert a.note != b.note  # kept, only not compared
    assert repr(a) == f"IdAuthenticated(principal_name={name!r})"
    t1, t2 = PermUriTemplate("/a/{x}", name="one"), PermUriTemplate("/a/{x}", name="two")
    assert (
        t1 == t2 and hash(t1) == hash(t2) and repr(t1) == "PermUriTemplate(path_template='/a/{x}')"
    )
    assert t1 != PermUriTemplate("/b/{x}")
    assert a != t1 and a.__eq__(t1) is NotImplemented
