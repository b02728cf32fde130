"""A record of what loading manifests made, for a later load of nearly the same
input: ``diff``'s NEW after its OLD, where all but a few documents are the same
text.

The record is keyed by each document's exact text (its chunk of a stream, see
``yamlload.read_chunked``), wherever it is written. A document read before is
not read again: its data and positions are moved to its new file and line; the
objects the loader made of it are copied onto the new document, with its
findings and skipped entries moved alike; the validation findings of those
objects are moved too. A load with a record gives what a load without one
gives (``tests/resources/test_reuse.py``): only the work is saved. What
depends on more than one document (objects defined twice, the mesh config, a
file that cannot be read in chunks) is made afresh each time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from msgspec import Struct
from msgspec.structs import replace

from meshauthz.errors import Location
from meshauthz.resources.findings import Finding
from meshauthz.resources.objects import OBJECT_LISTS, Resource, Skipped
from meshauthz.resources.yamlload import Document, ReadChunk, parse_documents, read_chunked

if TYPE_CHECKING:
    from meshauthz.resources.loader import _Loader


class _Typed(Struct, frozen=True):
    """What the loader made of one document (``doc``)."""

    doc: Document
    objects: int  # Kubernetes objects seen, read or not
    added: tuple[tuple[Resource, ...], ...]  # per list of ``OBJECT_LISTS``
    skipped: tuple[Skipped, ...]
    findings: tuple[Finding, ...]


class LoadRecord:
    """Given to each load (``resources.loader.load``'s ``record``): the first
    fills it, the next ones reuse it and add what they read anew."""

    __slots__ = ("_chunks", "_origins", "_typed", "_validated")

    def __init__(self) -> None:
        self._chunks: dict[str, ReadChunk] = {}
        # (chunk, default namespace, -n given) -> what the loader made of it
        self._typed: dict[tuple[str, str, bool], _Typed] = {}
        # an object copied from the record -> the object it was copied from
        self._origins: dict[Resource, Resource] = {}
        self._validated: dict[Resource, tuple[Finding, ...]] = {}

    def parse(self, text: str, file: str) -> list[tuple[Document, str | None]]:
        """``parse_documents(text, file)``, each document with its chunk (None
        when the file is read whole)."""
        chunked = read_chunked(text, file, self._chunks)
        if chunked is not None:
            return list(chunked)
        return [(doc, None) for doc in parse_documents(text, file)]

    def document(self, loader: _Loader, doc: Document, chunk: str | None) -> None:
        """``loader.document(doc)``: from the record when ``chunk`` was loaded before."""
        key = None if chunk is None else (chunk, loader.default_namespace, loader.enforce_namespace)
        typed = None if key is None else self._typed.get(key)
        if typed is not None:
            self._copy(loader, typed, doc)
            return
        mark = loader.mark()
        loader.document(doc)
        if key is None or loader._mesh_config_seen is not mark.mesh_config_seen:
            return  # the mesh config: one per input, checked across documents
        typed = _Typed(
            doc,
            loader.objects - mark.objects,
            tuple(map(tuple, loader.added(mark))),
            tuple(loader.manifests.skipped[mark.skipped :]),
            tuple(loader.findings[mark.findings :]),
        )
        places = [s.location for s in typed.skipped] + [f.location for f in typed.findings]
        if all(p.file == doc.file for p in places):
            self._typed[key] = typed

    def _copy(self, loader: _Loader, typed: _Typed, doc: Document) -> None:
        move = _mover(typed.doc, doc)
        m = loader.manifests
        for kind, objects in zip(OBJECT_LISTS, typed.added, strict=True):
            if objects:
                target: list[Any] = getattr(m, kind)
                for obj in objects:
                    copy = replace(obj, doc=doc)
                    self._origins[copy] = self._origins.get(obj, obj)
                    target.append(copy)
        m.skipped.extend(replace(s, location=move(s.location)) for s in typed.skipped)
        loader.findings.extend(replace(f, location=move(f.location)) for f in typed.findings)
        loader.objects += typed.objects

    def validated(
        self, resource: Resource, validate: Callable[[Resource], list[Finding]]
    ) -> list[Finding]:
        """``validate(resource)``, moved from the object it was copied from when
        that one was validated before."""
        origin = self._origins.get(resource, resource)
        found = self._validated.get(origin)
        if found is None or any(f.location.file != origin.doc.file for f in found):
            findings = validate(resource)
            self._validated[resource] = tuple(findings)
            return findings
        move = _mover(origin.doc, resource.doc)
        return [replace(f, location=move(f.location)) for f in found]


def _mover(old: Document, new: Document) -> Callable[[Location], Location]:
    """A place in ``old`` as the same place in ``new`` (the same text elsewhere)."""
    lines = new.line - old.line
    file = new.file

    def move(at: Location) -> Location:
        return Location(file, None if at.line is None else at.line + lines, at.column)

    return move


__all__ = ["LoadRecord"]
