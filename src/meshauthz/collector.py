"""The one policy for Python's cyclic garbage collector, used by every layer
that builds large, long-lived inputs.

meshauthz reads a mesh once and keeps it, with what it builds from it, until
the command exits. A collection walks every tracked object alive, so while a
large input is read, or a batch decided, the collector is paused; once a
command has read its mesh, what was read is frozen and full collections stay
off."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while a large input is read or a batch
    decided: every node, value and answer is a new tracked object that lives
    on, so the collector would walk them again and again for nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def starting() -> Iterator[None]:
    """Around a command's imports: no cyclic collection meanwhile, and what they
    made frozen after. Their classes, functions and constants live until the
    command exits; collected as they come, they cost 45 collections, a tenth
    of ``check``'s start-up on the seed, and left unfrozen, the first young
    collection after them walks every one."""
    with paused_gc():
        yield
        gc.freeze()


# The collector's third threshold: how many collections of the middle
# generation come before a full one; never reached, so no full collection.
_NO_FULL_COLLECTION = 1 << 30


def settle() -> None:
    """After a command has read its mesh. The mesh lives until the command
    exits, and so does most of what the command builds from it (each
    workload's filters and chains, the answers): what was read is frozen
    (``gc.freeze``), and the collector's full collections, each of which walks
    every object alive, are left off; the young generations, where short-lived
    cycles die, are collected as usual. Without this, building every workload
    of a 10,000-policy mesh spent a third of its time in full collections."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, _NO_FULL_COLLECTION)


__all__ = ["paused_gc", "settle", "starting"]
