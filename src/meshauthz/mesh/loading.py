"""The one loader: read manifests, validate them as Istio does, build the snapshot.

Every front end (the commands, the test runner, the local mesh's control
plane, the Python API, the benchmarks and the tests' helpers) loads a mesh
through ``load_mesh``, so all of them share one error policy: objects Istio
would reject (the API server's schema or Istio's validating webhook) make the
input unusable, because a cluster would never hold them and no answer about
them would be true. That is ``InvalidInput``, an ``InputError`` (exit 2) that
carries the findings. Warnings never reject; they come back with the mesh.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import msgspec
from msgspec import Struct
from msgspec.structs import replace

from meshauthz.collector import paused_gc
from meshauthz.errors import InputError, Location
from meshauthz.mesh.snapshot import MeshSnapshot, build_snapshot
from meshauthz.resources.findings import Finding
from meshauthz.resources.loader import LoadResult, load, load_documents
from meshauthz.resources.meshconfig import MeshConfig
from meshauthz.resources.objects import Manifests, Skipped
from meshauthz.resources.reuse import LoadRecord
from meshauthz.resources.validation import validate
from meshauthz.resources.yamlload import Document

PathArg = str | os.PathLike[str]
MeshConfigArg = PathArg | MeshConfig | None


class JwksText(Struct, frozen=True):
    """Keys given as JWKS text (a test suite's inline ``jwks:``), not as a file."""

    text: str


JwksSource = PathArg | JwksText
# How many errors InvalidInput's text lists: a generated input can have thousands
# (validate lists every one).
SHOWN_ERRORS = 20


class InvalidInput(InputError):
    """Objects Istio would reject: ``findings`` holds every finding of the input,
    ``errors`` the ones that reject. ``str()`` lists the first ``SHOWN_ERRORS``
    errors, then how many more, then a summary."""

    def __init__(self, findings: Iterable[Finding]) -> None:
        self.findings: tuple[Finding, ...] = tuple(findings)
        self.errors: tuple[Finding, ...] = tuple(f for f in self.findings if f.severity == "error")
        super().__init__(
            f"{len(self.errors)} object error(s): the cluster would reject these objects "
            "(Istio or the API server); fix them first (meshauthz validate shows every finding)",
            code="rejected",
        )

    def error_lines(self) -> list[str]:
        """The first ``SHOWN_ERRORS`` errors as text, then how many more."""
        shown = [f.to_text() for f in self.errors[:SHOWN_ERRORS]]
        hidden = len(self.errors) - len(shown)
        if hidden > 0:
            shown.append(f"... and {hidden} more error(s)")
        return shown

    def __str__(self) -> str:
        return "\n".join([*self.error_lines(), self.message])


class UnreadableInput(InputError):
    """Files that could not be read or parsed (``problems``, one per file); the
    other files were read, and ``validate`` reports on them all the same."""

    def __init__(self, problems: Iterable[InputError]) -> None:
        self.problems: tuple[InputError, ...] = tuple(problems)
        first = self.problems[0]
        more = len(self.problems) - 1
        super().__init__(
            first.message + (f" (and {more} more unreadable file(s))" if more else ""),
            location=first.location,
            field=first.field,
        )

    def error_lines(self) -> list[str]:
        return [f"{p}" for p in self.problems]


class CheckedManifests(Struct, frozen=True):
    """Manifests as read, with every finding (the loader's, then Istio's validation's)."""

    manifests: Manifests
    findings: tuple[Finding, ...]
    unreadable: tuple[InputError, ...] = ()  # files that could not be read or parsed

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")


class LoadedMesh(Struct, frozen=True):
    """A usable mesh: its snapshot, the manifests it was built from, the findings
    that did not reject anything (warnings) and the objects of kinds not read."""

    snapshot: MeshSnapshot
    manifests: Manifests
    findings: tuple[Finding, ...]

    @property
    def skipped(self) -> tuple[Skipped, ...]:
        return tuple(self.manifests.skipped)


def read_manifests(
    paths: PathArg | Iterable[PathArg],
    *,
    mesh_config: MeshConfigArg = None,
    namespace: str | None = None,
    exclude: Sequence[str] = (),
    record: LoadRecord | None = None,
) -> CheckedManifests:
    """Read and validate, without judging: ``meshauthz validate`` reports on this.

    ``mesh_config``: a MeshConfig file (or the ``istio`` ConfigMap), or a
    MeshConfig that takes the place of any ``istio`` ConfigMap among the inputs.
    ``namespace``: ``kubectl apply -n``, the namespace of objects that name none
    (an object naming another is an error). ``exclude``: globs leaving out what
    a directory holds (``resources.loader.excluded``). ``record``: what loads
    before this one made of the same documents, reused and added to
    (``resources.reuse``: the answer is the same without it). Raises InputError
    for input that cannot be used at all (a missing path, nothing found, a bad
    mesh config); a file that cannot be parsed is in ``unreadable``."""
    names = [os.fspath(paths)] if isinstance(paths, str | os.PathLike) else list(paths)
    config_file = (
        None if mesh_config is None or isinstance(mesh_config, MeshConfig) else mesh_config
    )
    with paused_gc():
        result = load(
            [os.fspath(p) for p in names],
            mesh_config_file=None if config_file is None else os.fspath(config_file),
            namespace=namespace,
            exclude=exclude,
            record=record,
        )
        return _checked(result, mesh_config, record)


def load_mesh(
    paths: PathArg | Iterable[PathArg],
    *,
    mesh_config: MeshConfigArg = None,
    jwks: Mapping[str, JwksSource] | None = None,
    namespace: str | None = None,
    exclude: Sequence[str] = (),
    record: LoadRecord | None = None,
) -> LoadedMesh:
    """Read, validate and build the snapshot. Raises InvalidInput when Istio would
    reject an object, UnreadableInput when a file cannot be parsed, InputError
    when the input cannot be used. ``namespace``, ``exclude`` and ``record`` as
    for ``read_manifests``.

    ``jwks``: local JWKS files (or ``JwksText``) by ``jwksUri``; a JWT rule naming one of those URIs
    without inline keys gets the file's keys inline, as istiod's JWKS resolver
    inlines the keys it fetched."""
    with paused_gc():
        checked = read_manifests(
            paths, mesh_config=mesh_config, namespace=namespace, exclude=exclude, record=record
        )
        return _snapshot(checked, jwks)


def load_mesh_documents(
    docs: Iterable[Document], *, mesh_config: MeshConfig | None = None
) -> LoadedMesh:
    """``load_mesh`` for documents already parsed (objects built in memory)."""
    with paused_gc():
        return _snapshot(_checked(load_documents(docs), mesh_config), None)


def _checked(
    result: LoadResult, mesh_config: MeshConfigArg, record: LoadRecord | None = None
) -> CheckedManifests:
    if isinstance(mesh_config, MeshConfig):
        result.manifests.mesh_config = mesh_config
    return CheckedManifests(
        result.manifests,
        (*result.findings, *validate(result.manifests, record, result.validated)),
        tuple(result.unreadable),
    )


def _snapshot(checked: CheckedManifests, jwks: Mapping[str, JwksSource] | None) -> LoadedMesh:
    if checked.unreadable:  # an answer about part of the input would not be true
        raise UnreadableInput(checked.unreadable)
    if checked.errors:
        raise InvalidInput(checked.findings)
    manifests = checked.manifests
    if jwks:
        _inline_jwks(manifests, jwks)
    return LoadedMesh(build_snapshot(manifests), manifests, checked.findings)


def _inline_jwks(manifests: Manifests, jwks: Mapping[str, JwksSource]) -> None:
    # a changed object is a new one: the one read may be in a LoadRecord
    for i, ra in enumerate(manifests.request_authentications):
        rules = []
        changed = False
        for r in ra.spec.jwt_rules:
            if not r.jwks and r.jwks_url and r.jwks_url in jwks:
                r = msgspec.structs.replace(r, jwks=_jwks_text(r.jwks_url, jwks[r.jwks_url]))
                changed = True
            rules.append(r)
        if changed:
            spec = msgspec.structs.replace(ra.spec, jwt_rules=tuple(rules))
            manifests.request_authentications[i] = replace(ra, spec=spec)


def _jwks_text(uri: str, src: JwksSource) -> str:
    if isinstance(src, JwksText):
        return src.text
    from pathlib import Path  # start-up: only --jwks files are read this way

    try:
        return Path(src).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else "not UTF-8 text"
        raise InputError(
            f"cannot read the keys for jwksUri {uri}: {why}", location=Location(os.fspath(src))
        ) from None


__all__ = [
    "CheckedManifests",
    "InvalidInput",
    "JwksText",
    "LoadRecord",
    "LoadedMesh",
    "UnreadableInput",
    "load_mesh",
    "load_mesh_documents",
    "read_manifests",
]
