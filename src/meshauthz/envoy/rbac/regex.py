"""RE2, as Envoy's regex matchers and path templates use it: loaded when a
pattern is first compiled (most meshes have none, and a command starts 3-4 ms
faster without it), each pattern compiled once."""

from __future__ import annotations

import functools
from typing import Any

_compiled: dict[str, Any] = {}


@functools.cache
def re2_module() -> Any:
    import re2

    return re2


def compile_regex(pattern: str) -> Any:
    """``pattern`` compiled by RE2; raises ``re2_module().error`` when RE2 rejects it."""
    r = _compiled.get(pattern)
    if r is None:
        r = _compiled[pattern] = re2_module().compile(pattern)
    return r
