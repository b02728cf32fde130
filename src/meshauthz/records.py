"""The base of values whose last fields record where a value came from, not
what it is.

The project's value classes are msgspec Structs: a Struct class is made in
microseconds, while a dataclass has its methods compiled from source when its
module is imported (0.4-1 ms each, most of a command's start-up with some 240
of them). A Struct compares and hashes all its fields; a ``Record`` leaves
out the fields it names in ``provenance`` (which must be its last ones:
tests/test_records.py checks every Record class) from equality, hashing and
its repr.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from msgspec import Struct
from msgspec.structs import astuple


def repr_of(value: Struct, names: Iterable[str]) -> str:
    """``Name(field=value, ...)`` over the fields ``names``: a Struct's repr
    without the fields a reader does not need."""
    shown = ", ".join(f"{n}={getattr(value, n)!r}" for n in names)
    return f"{type(value).__name__}({shown})"


class Record(Struct, frozen=True):
    provenance: ClassVar[tuple[str, ...]] = ()
    # the slice end that leaves the provenance fields out of astuple()
    _compared: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._compared = -len(cls.provenance) or None

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        end = self._compared
        return astuple(self)[:end] == astuple(other)[:end]

    def __hash__(self) -> int:
        return hash(astuple(self)[: self._compared])

    def __repr__(self) -> str:
        return repr_of(self, self.__struct_fields__[: self._compared])
