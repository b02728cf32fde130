"""YAML and JSON documents as plain data, with the line of every field.

Kubernetes turns YAML into JSON before anything reads it, so a document here
becomes plain dicts, lists, strings, numbers, booleans and None. Alongside,
``Document.positions`` maps each path (a tuple of keys and list indexes) to the
line and column where it is written, so later errors can point at it.
"""

from __future__ import annotations

import base64
import datetime
import re
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from functools import reduce
from operator import getitem, or_
from typing import Any, TypeVar

import yaml
from msgspec import Struct, field

from meshauthz.collector import paused_gc
from meshauthz.errors import InputError, Location

_BaseLoader: type[yaml.SafeLoader] | type[yaml.CSafeLoader]
try:  # the C parser is much faster; the pure one is a fallback
    _BaseLoader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _BaseLoader = yaml.SafeLoader


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """The safe loader without the per-node cost of path resolvers, which the
    safe loader never registers: the parser calls these hooks for every node."""

    _implicit = _BaseLoader.yaml_implicit_resolvers

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: Any) -> str:
        # BaseResolver.resolve with no path resolvers and no wildcard resolvers.
        if kind is yaml.ScalarNode:
            if implicit[0]:
                resolvers = self._implicit.get(value[:1])
                if resolvers is not None:
                    for tag, regexp in resolvers:
                        if regexp.match(value):
                            return str(tag)
            return _STR_TAG
        if kind is yaml.SequenceNode:
            return _SEQUENCE_TAG
        return _MAPPING_TAG


assert not _BaseLoader.yaml_path_resolvers and None not in _BaseLoader.yaml_implicit_resolvers


Path = tuple[str | int, ...]

MAX_FILE_BYTES = 32 * 1024 * 1024
# Bounds alias expansion ("billion laughs"): without aliases a document cannot
# have more values than its text has characters.
BASE_NODE_ALLOWANCE = 100_000
MAX_DEPTH = 200
_UNBOUNDED = 1 << 62

_MERGE_TAG = "tag:yaml.org,2002:merge"
_CORE = "tag:yaml.org,2002:"
# The tags a Kubernetes API server reads (JSON's types, plus timestamps and binary
# that become strings); any other tag (!!python/tuple, !!set, a local !foo) is refused.
_SCALAR_TAGS = frozenset(
    _CORE + t for t in ("str", "int", "float", "bool", "null", "timestamp", "binary", "merge")
)
_SEQUENCE_TAG = _CORE + "seq"
_MAPPING_TAG = _CORE + "map"
_STR_TAG = _CORE + "str"


_MISSING: Any = object()

# Positions' packing: a key is a path's hash or its low 32 bits; a mark is
# line << 32 | column, or line << 12 | column in 32 bits when every line and
# column of the document fits (lines below 2**20, columns below 2**12).
_NARROW_KEY = 0xFFFFFFFF
_WIDE_SHIFT = 32
_WIDE_COLUMN = 0xFFFFFFFF
_NARROW_SHIFT = 12
_NARROW_COLUMN = (1 << _NARROW_SHIFT) - 1


class Positions(Mapping[Path, tuple[int, int]]):
    """Where each value of a document is written (line, column; 1-based), as two
    arrays rather than a tuple and a record per value: a large input then costs
    the collector nothing and 8 bytes per value (16 in a document whose paths'
    hashes need 64 bits to be told apart, or whose lines or columns are long). A
    value is found by its path's hash (its key: sorted, so found by bisection)
    once the path is known to lead to a value of the data.

    Two values of one document whose paths have one hash (a chance of about one
    in 2**64 per pair) make it keep a plain mapping instead (``Positions.of``); a
    path that leads nowhere is never taken for a value (one that reads as if it
    did, through a negative index or into a string, needs the same chance again).
    The positions of a document that keeps only its text (``Document.release``)
    do not hold its data: their keys are then always the paths' 64-bit hashes,
    and a path that leads nowhere is taken for a value only if its hash is a
    value's (that chance again). A mapping's value is where its key is written;
    a list's item and the document itself, where the item begins."""

    __slots__ = ("_data", "_key_mask", "_keys", "_line_shift", "_marks", "_offset")

    def __init__(
        self,
        data: Any,
        keys: array[int],
        marks: array[int],
        offset: int = 0,
        line_shift: int = _WIDE_SHIFT,
    ) -> None:
        self._data = data  # or the document's text (_Text): then not checked
        self._keys = keys
        # 32-bit keys are a hash's low bits
        self._key_mask = _NARROW_KEY if keys.typecode == "I" else -1
        self._marks = marks  # line << line_shift | column
        self._line_shift = line_shift
        self._offset = offset  # added to every line (a document inside a string)

    @staticmethod
    def of(
        data: Any,
        keys: list[int],
        marks: list[int],
        source: _Text | None = None,
        arrays: dict[int, array[int]] | None = None,
    ) -> Positions | dict[Path, tuple[int, int]]:
        """``keys`` (each path's hash) and ``marks`` (``line << 32 | column``) in
        the order the values were read (depth first, a mapping's keys in order, as
        ``data`` holds them). ``source``: the document's text, when the positions
        are to hold it rather than the data (see ``Document.release``).
        ``arrays``: the arrays of documents read before, shared when equal."""
        # the hashes' low 32 bits when they tell the paths apart (as they do in
        # all but large documents) and the data is kept to check a path, else all 64
        at = (
            {}
            if source is not None
            else dict(zip([k & _NARROW_KEY for k in keys], marks, strict=True))
        )
        key_type = "I"
        if len(at) != len(keys):
            at = dict(zip(keys, marks, strict=True))
            key_type = "q"
        if len(at) != len(keys):
            return {
                path: (mark >> _WIDE_SHIFT, mark & _WIDE_COLUMN)
                for path, mark in zip(_paths(data, ()), marks, strict=True)
            }
        ordered = sorted(at)
        ms = list(map(at.__getitem__, ordered))
        held = data if source is None else source
        bits = reduce(or_, ms, 0)  # the widest line and column, or-ed
        if (
            bits >> _WIDE_SHIFT < 1 << (32 - _NARROW_SHIFT)
            and bits & _WIDE_COLUMN < 1 << _NARROW_SHIFT
        ):
            narrow = array(
                "I", [m >> (_WIDE_SHIFT - _NARROW_SHIFT) | m & _NARROW_COLUMN for m in ms]
            )
            return Positions(
                held,
                _shared(array(key_type, ordered), arrays),
                _shared(narrow, arrays),
                0,
                _NARROW_SHIFT,
            )
        return Positions(
            held, _shared(array(key_type, ordered), arrays), _shared(array("Q", ms), arrays)
        )

    def shifted(self, lines: int) -> Positions:
        """The same positions ``lines`` further down (a document read from a string
        value that starts there)."""
        return Positions(
            self._data, self._keys, self._marks, self._offset + lines, self._line_shift
        )

    def _mark(self, i: int) -> tuple[int, int]:
        mark = self._marks[i]
        shift = self._line_shift
        return (mark >> shift) + self._offset, mark & ((1 << shift) - 1)

    def _find(self, path: Path) -> int:
        """The index of the value ``path`` (a tuple) leads to, or -1."""
        keys = self._keys
        key = hash(path) & self._key_mask
        i = bisect_left(keys, key)
        if i == len(keys) or keys[i] != key:
            return -1
        if type(self._data) is _Text:
            return i
        try:  # the path leads somewhere in the data
            reduce(getitem, path, self._data)
        except (KeyError, IndexError, TypeError):
            return -1
        return i

    def _nearest(self, path: Path) -> int:
        i = self._find(path)
        while i < 0:
            path = path[:-1]  # the root is always found
            i = self._find(path)
        return i

    def nearest(self, path: Path) -> tuple[int, int]:
        """The position of ``path`` (a tuple), or of its closest parent that exists."""
        return self._mark(self._nearest(path))

    def line(self, path: Path) -> int:
        """``nearest(path)``'s line."""
        return (self._marks[self._nearest(path)] >> self._line_shift) + self._offset

    def __getitem__(self, path: Path) -> tuple[int, int]:
        i = self._find(tuple(path))
        if i < 0:
            raise KeyError(path)
        return self._mark(i)

    def __iter__(self) -> Iterator[Path]:
        data = self._data
        return _paths(data.read() if type(data) is _Text else data, ())

    def __len__(self) -> int:
        return len(self._keys)

    def __reduce__(self) -> tuple[Any, ...]:
        # the keys hold str hashes, which differ from one process to another
        return (dict, (dict(self),))


def _shared(values: array[int], arrays: dict[int, array[int]] | None) -> array[int]:
    """``values``, or an equal array of a document read before: documents of
    one shape (a chart's Deployments, a generator's policies) have the same
    paths, so the same keys, and often the same marks. Arrays are never
    changed once made."""
    if arrays is None:
        return values
    found = arrays.setdefault(hash(values.tobytes()), values)
    return found if found.typecode == values.typecode and found == values else values


def _paths(data: Any, path: Path) -> Iterator[Path]:
    """Every value's path, in reading order."""
    yield path
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, (*path, k))
    elif isinstance(data, list):
        for n, v in enumerate(data):
            yield from _paths(v, (*path, n))


class _Text:
    """A document's own text: its chunk of a stream (``text[start:end]``, which
    reads alone as it reads in the stream: see ``read_chunked``), read again
    for its data. The stream's text is held once, by all its documents."""

    __slots__ = ("end", "start", "text")

    def __init__(self, text: str, start: int, end: int) -> None:
        self.text = text
        self.start = start
        self.end = end

    def own(self) -> None:
        """Hold the chunk alone rather than the stream's whole text."""
        self.text = self.text[self.start : self.end]
        self.start, self.end = 0, len(self.text)

    def read(self) -> Any:
        # unbounded: the text was read once within the bounds of its file
        chunk = self.text[self.start : self.end]
        (doc,) = _parse_documents(chunk, "", record=False, max_nodes=_UNBOUNDED)
        return doc.value


class Document(Struct):
    """One YAML document of a file."""

    file: str
    index: int  # 0-based position in the file's stream
    line: int  # 1-based line where the document's content starts
    value: Any  # its data (``data``), or once released its text (``_Text``)
    # Each path's (line, column): ``Positions`` from the reader, or any mapping
    # (a document built in memory; empty when positions are unknown).
    positions: Mapping[Path, tuple[int, int]] = field(default_factory=dict)
    # The document's own text, when it can be read again (see release).
    source: _Text | None = None

    @property
    def data(self) -> Any:
        """The document's values: plain dicts, lists, strings, numbers."""
        value = self.value
        return value.read() if type(value) is _Text else value

    def release(self) -> None:
        """Keep the text only, once what is read of the document when it is loaded
        has been read (its objects typed and validated): the parsed data of a
        large mesh takes several times its text, and the few readers after that
        (ambient's waypoints: a Gateway's listeners and status) read it again.
        A document without its own text keeps its data."""
        if self.source is not None:
            self.value = self.source

    def text_size(self) -> int:
        """The length of the document's own text (0 without one)."""
        source = self.source
        return 0 if source is None else source.end - source.start

    def own_text(self) -> None:
        """Hold its chunk alone rather than its stream's whole text: for a
        document kept from a stream whose other documents are not."""
        if self.source is not None:
            self.source.own()

    def location(self, path: Path = ()) -> Location:
        """The nearest known position of ``path`` (or of its closest parent)."""
        positions = self.positions
        if type(positions) is Positions:  # not isinstance: an ABC's check is slow
            line, column = positions.nearest(tuple(path))
            return Location(self.file, line, column)
        p = tuple(path)
        while True:
            pos = positions.get(p)
            if pos is not None:
                return Location(self.file, pos[0], pos[1])
            if not p:
                return Location(self.file, self.line)
            p = p[:-1]

    def line_finder(self) -> Callable[[Path], int | None]:
        """``location(path).line`` as a function of the path (a tuple), without
        making the Location, looked up once for the many notes a large mesh's
        filters carry: a document read from a file answers from its
        ``Positions`` without a call in between."""
        positions = self.positions
        if type(positions) is Positions:
            return positions.line
        return lambda path: self.location(path).line


def read_source(path: str, what: str = "a manifest", too_large: str = "") -> tuple[str, str]:
    """Read a file (or stdin for ``-``) as text; returns (display name, text).
    ``what``: what the file holds, and ``too_large``: what to do about one over
    the size limit, for its message."""
    import sys

    display = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with open(path, "rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise InputError("no such file or directory", location=Location(display)) from None
    except IsADirectoryError:
        raise InputError("is a directory", location=Location(display)) from None
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}", location=Location(display)) from None
    if len(raw) > MAX_FILE_BYTES:
        raise InputError(
            f"file is larger than the {MAX_FILE_BYTES // (1024 * 1024)} MiB limit for {what}"
            + (f": {too_large}" if too_large else ""),
            location=Location(display),
        )
    return display, decode_text(raw, display)


def decode_text(raw: bytes, display: str) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
        if b"\x00" in raw:
            offset = raw.index(b"\x00")
            raise InputError(
                f"not a text file (NUL byte at offset {offset})",
                location=Location(display, raw.count(b"\n", 0, offset) + 1),
            )
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise InputError(
            f"not a UTF-8 text file (invalid byte 0x{raw[e.start]:02x} at offset {e.start})",
            location=Location(display, line),
        ) from None


def parse_documents(text: str, file: str) -> list[Document]:
    """Parse a multi-document YAML (or JSON) stream. Empty documents are dropped."""
    with paused_gc():
        return _parse_documents(text, file)


class ReadChunk(Struct, frozen=True):
    """What reading one chunk of a stream alone made (see ``read_chunked``)."""

    streamed: int  # documents of the stream it holds (an empty one counts): 0 or 1
    nodes: int  # values its document expands to (bounded by the file's length)
    doc: Document | None  # file "", lines counted from the chunk's first; None: empty


# A document starts at a line that begins with "---" then a blank or the end:
# libyaml's document indicator, which nothing can hold at column 0 (a block
# scalar is indented by at least 1, a plain one ends there, a quoted one or a
# flow collection is an error there). Each chunk between two holds at most one
# document, and only its own text decides what that document is ...
_DOCUMENT_START = re.compile(r"\n---(?=[ \t\n]|\Z)")  # "\n" rather than "^": 10 times faster
# ... unless the stream has directives (which apply to the next document), an
# end marker (kept out for good measure), a byte order mark, or line breaks
# other than "\n" (which would count lines otherwise): such a stream is read whole.
_MARKER = re.compile(r"\n(?:%|\.\.\.(?:[ \t\n]|\Z))")
_NOT_CHUNKED = ("\r", "\x85", "\u2028", "\u2029", "\ufeff")


def _chunk_starts(text: str) -> list[int] | None:
    """Where each chunk of ``text`` starts, or None if it is read whole."""
    head = "\n" + text[:4]  # the first line, as the patterns see the others
    if any(c in text for c in _NOT_CHUNKED) or _MARKER.search(text) or _MARKER.match(head):
        return None
    return [0, *(m.start() + 1 for m in _DOCUMENT_START.finditer(text))]


def read_chunked(
    text: str, file: str, chunks: MutableMapping[str, ReadChunk]
) -> list[tuple[Document, str]] | None:
    """``parse_documents(text, file)``, each document with its chunk: its exact
    text, from its ``---`` line to the next (the first one: from the start).
    A chunk in ``chunks`` is not read again (its document is moved to its line
    and file: the same data and positions); a chunk read is added to it. None
    when the stream cannot be read in chunks alike (see ``_chunk_starts``) or a
    chunk is not valid alone: then ``parse_documents`` reads it, and says what
    is wrong, as it would have anyway."""
    starts = _chunk_starts(text)
    if starts is None:
        return None
    allowance = BASE_NODE_ALLOWANCE + len(text)
    strings: dict[str, str] = {}

    def read(start: int, end: int) -> tuple[ReadChunk | None, str]:
        chunk = text[start:end]
        found = chunks.get(chunk)
        if found is None:
            found = _read_chunk(chunk, allowance, strings)
            if found is not None:
                chunks[chunk] = found
        return found, chunk

    with paused_gc():
        try:
            return list(_chunked(text, file, starts, read))
        except NotInChunks:
            return None


def _read_chunk(
    chunk: str | _Text,
    allowance: int,
    strings: dict[str, str],
    arrays: dict[int, array[int]] | None = None,
) -> ReadChunk | None:
    """One chunk read alone, or None if it is not valid alone. A chunk given as
    its place in its stream's text (``_Text``) is kept by its document, to be
    released (``Document.release``); ``arrays``: see ``Positions.of``."""
    streamed = nodes = 0
    doc: Document | None = None
    if isinstance(chunk, _Text):
        source: _Text | None = chunk
        pieces = _Chunks(chunk.text, chunk.start, chunk.end)
    else:
        source, pieces = None, _Chunks(chunk)
    try:
        for node in _compose_all(pieces):
            streamed += 1
            if node is None:
                continue
            builder = _Builder("", allowance, True, strings)
            data = builder.build(node, 0)
            nodes = max(nodes, builder.nodes)
            if data is not None:
                positions = Positions.of(data, builder.keys, builder.marks, source, arrays)
                doc = Document("", 0, node.start_mark.line + 1, data, positions, source)
    except (InputError, _DuplicateKey, yaml.YAMLError, RecursionError):
        return None
    if streamed > 1:  # pragma: no cover - a chunk holds one document at most
        return None
    return ReadChunk(streamed, nodes, doc)


class NotInChunks(Exception):
    """A chunk of the stream is not valid alone (see ``iter_chunked``)."""


def iter_chunked(text: str, file: str) -> Iterator[Document] | None:
    """``parse_documents(text, file)`` one document at a time, each keeping its
    chunk (its own text: ``Document.release`` can then drop its data), so that
    a large file's data need not be held all at once. None when the stream
    cannot be read in chunks alike (see ``_chunk_starts``); the iteration raises
    ``NotInChunks`` at a chunk not valid alone (then ``parse_documents`` reads
    the file, and says what is wrong, as it would have anyway)."""
    starts = _chunk_starts(text)
    if starts is None:
        return None
    allowance = BASE_NODE_ALLOWANCE + len(text)
    strings: dict[str, str] = {}
    arrays: dict[int, array[int]] = {}

    def read(start: int, end: int) -> tuple[ReadChunk | None, None]:
        with paused_gc():
            return _read_chunk(_Text(text, start, end), allowance, strings, arrays), None

    return (doc for doc, _ in _chunked(text, file, starts, read))


_Piece = TypeVar("_Piece")


def _chunked(
    text: str,
    file: str,
    starts: list[int],
    read: Callable[[int, int], tuple[ReadChunk | None, _Piece]],
) -> Iterator[tuple[Document, _Piece]]:
    """Each document of ``text``, its chunk (``text[start:end]``) read alone by
    ``read``, which also gives what goes with the document. Raises
    ``NotInChunks`` at a chunk not valid alone."""
    allowance = BASE_NODE_ALLOWANCE + len(text)
    index = line = 0  # documents of the stream, lines of the text, before the chunk
    for start, end in zip(starts, [*starts[1:], len(text)], strict=True):
        found, piece = read(start, end)
        if found is None or found.nodes > allowance:
            raise NotInChunks
        doc = found.doc
        if doc is not None:
            positions = _shifted(doc.positions, line)
            yield Document(file, index, doc.line + line, doc.value, positions, doc.source), piece
        index += found.streamed
        line += text.count("\n", start, end)


def _shifted(
    positions: Mapping[Path, tuple[int, int]], lines: int
) -> Mapping[Path, tuple[int, int]]:
    if type(positions) is Positions:
        return positions.shifted(lines)
    return {p: (ln + lines, col) for p, (ln, col) in positions.items()}


def _parse_documents(
    text: str, file: str, *, record: bool = True, max_nodes: int | None = None
) -> list[Document]:
    docs: list[Document] = []
    strings: dict[str, str] = {}
    if max_nodes is None:
        max_nodes = BASE_NODE_ALLOWANCE + len(text)
    try:
        for index, node in enumerate(_compose_all(text)):
            if node is None:
                continue
            builder = _Builder(file, max_nodes, record, strings)
            data = builder.build(node, 0)
            if data is None:
                continue
            positions = builder.positions(data) if record else {}
            docs.append(Document(file, index, node.start_mark.line + 1, data, positions))
    except _DuplicateKey as e:
        path = tuple(reversed(e.path))
        raise InputError(e.message, location=e.location, field=_dotted(path)) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or "invalid YAML"
        context = f" ({e.context})" if e.context else ""
        loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        if file.endswith(".json"):
            return _parse_json_fallback(text, file, f"YAML syntax error: {problem}{context}", loc)
        raise InputError(f"YAML syntax error: {problem}{context}", location=loc) from None
    except yaml.YAMLError as e:
        raise InputError(f"YAML error: {e}", location=Location(file)) from None
    except RecursionError:
        raise InputError("document is nested too deeply", location=Location(file)) from None
    return docs


def parse_plain(text: str, file: str) -> list[Document]:
    """``parse_documents``'s data without the positions (``Document.positions``
    empty): for large inputs read for their data, e.g. a file of many requests. A
    caller that finds an error in the data parses again with ``parse_documents``
    to say where. JSON text is read by ``json`` when it means what the YAML reader
    would make of it; anything else goes through the same builder as
    ``parse_documents``, recording nothing."""
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        data = _plain_json(text)
        if data is not _NOT_JSON:
            return [Document(file, 0, 1, data, {})] if data is not None else []
    with paused_gc():
        return _parse_documents(text, file, record=False)


_NOT_JSON = object()


class _Unlike(Exception):
    """JSON whose meaning the YAML reader would not share."""


def _yaml_float(literal: str) -> float:
    # YAML 1.1 reads 1e5 (no dot) as a string, JSON as a number
    if "." not in literal:
        raise _Unlike
    return float(literal)


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):  # YAML refuses a duplicate key: let it say where
        raise _Unlike
    return out


def _not_yaml(literal: str) -> Any:
    raise _Unlike


def _plain_json(text: str) -> Any:
    if "\\ud" in text.lower():
        return _NOT_JSON  # escaped surrogates: the readers differ
    import json  # here, not at the top: manifests are read as YAML (start-up)

    try:
        return json.loads(
            text,
            object_pairs_hook=_unique,
            parse_float=_yaml_float,
            parse_constant=_not_yaml,
        )
    except (_Unlike, ValueError, RecursionError):
        return _NOT_JSON


class _Chunks:
    """``text`` read piece by piece: the C parser then encodes each piece, not a
    whole copy of a large file at once (a copy freed after parsing, often left
    behind as a hole in the heap, which the process keeps)."""

    __slots__ = ("_at", "_end", "_text")

    def __init__(self, text: str, start: int = 0, end: int | None = None) -> None:
        self._text = text
        self._at = start
        self._end = len(text) if end is None else end  # read text[start:end] only

    def read(self, size: int) -> str:
        at = self._at
        self._at = min(at + size, self._end)
        return self._text[at : self._at]


def _compose_all(text: str | _Chunks) -> Iterator[yaml.Node | None]:
    loader = _Loader(_Chunks(text) if isinstance(text, str) else text)
    try:
        while loader.check_node():
            yield loader.get_node()
    finally:
        loader.dispose()


def _parse_json_fallback(text: str, file: str, yaml_message: str, loc: Location) -> list[Document]:
    """JSON that YAML cannot read (tabs in odd places); lines are then unknown."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise InputError(f"duplicate key {k!r}", location=Location(file))
            out[k] = v
        return out

    import json  # start-up, as in _plain_json

    try:
        data = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise InputError(
            f"JSON syntax error: {e.msg}", location=Location(file, e.lineno, e.colno)
        ) from None
    except RecursionError:
        raise InputError("document is nested too deeply", location=Location(file)) from None
    del yaml_message, loc
    return [Document(file, 0, 1, data, {})] if data is not None else []


_constructor = yaml.constructor.SafeConstructor()


class _DuplicateKey(Exception):
    """A key written twice in one mapping; ``path`` is filled in (innermost first)
    as the reading unwinds, so that no path is kept for the values read fine."""

    def __init__(self, message: str, location: Location, key: str) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.path: list[str | int] = [key]


class _Builder:
    """Turns a composed node tree into plain data and records positions."""

    def __init__(
        self,
        file: str,
        max_nodes: int,
        record: bool = True,
        strings: dict[str, str] | None = None,
    ) -> None:
        self.file = file
        self.max_nodes = max_nodes
        self.record = record  # False: positions are not kept (parse_plain)
        self.nodes = 0
        # Each value's key and position, in reading order (see Positions).
        self.keys: list[int] = []
        self.marks: list[int] = []
        # Equal strings read once: keys and values repeat across a file's objects.
        self.strings: dict[str, str] = {} if strings is None else strings

    def positions(self, data: Any) -> Positions | dict[Path, tuple[int, int]]:
        return Positions.of(data, self.keys, self.marks)

    def _loc(self, node: yaml.Node) -> Location:
        return Location(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: yaml.Node, depth: int, path: Path = (), mark: Any = None) -> Any:
        """The data of ``node``; ``path``: where it is in the document; ``mark``:
        where it is written if not where it begins (a mapping's value: its key)."""
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise InputError(
                "document expands to too many values (aliases nested too deeply?)",
                location=self._loc(node),
            )
        if depth > MAX_DEPTH:
            raise InputError("document is nested too deeply", location=self._loc(node))
        if self.record:
            if mark is None:
                mark = node.start_mark
            self.keys.append(hash(path))
            self.marks.append((mark.line + 1) << _WIDE_SHIFT | (mark.column + 1))
        # type(), not isinstance: the composer makes these three classes, never subclasses
        if type(node) is yaml.ScalarNode:
            if node.tag == _STR_TAG:
                value = node.value
                return self.strings.setdefault(value, value)
            return self._scalar(node)
        if type(node) is yaml.SequenceNode:
            if node.tag != _SEQUENCE_TAG:
                self._check_tag(node, _SEQUENCE_TAG, "a list")
            out: Any = []
            for n, item in enumerate(node.value):
                try:
                    out.append(self.build(item, depth + 1, (*path, n)))
                except _DuplicateKey as e:
                    e.path.append(n)
                    raise
            # a copy is allocated to its length: appending leaves room for more
            return out.copy() if out else out
        if type(node) is yaml.MappingNode:
            if node.tag != _MAPPING_TAG:
                self._check_tag(node, _MAPPING_TAG, "a mapping")
            return self._mapping(node, depth, path)
        raise InputError("unsupported YAML node", location=self._loc(node))  # pragma: no cover

    def _check_tag(self, node: yaml.Node, expected: str, what: str) -> None:
        if node.tag != expected:
            raise InputError(
                f"unsupported YAML tag {_short_tag(node.tag)} on {what}", location=self._loc(node)
            )

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag == _STR_TAG:  # most values: the text as written, nothing to construct
            return node.value
        if node.tag not in _SCALAR_TAGS:
            what = "a value" if node.tag.startswith(_CORE) else "a value (not a Kubernetes type)"
            raise InputError(
                f"unsupported YAML tag {_short_tag(node.tag)} on {what}", location=self._loc(node)
            )
        try:
            value = _constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as e:
            raise InputError(
                f"cannot read value: {e.problem or e}", location=self._loc(node)
            ) from None
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            # an explicit tag on text that is not of its type (!!int x, !!bool maybe)
            raise InputError(
                f"cannot read value: {node.value!r} is not a valid {_short_tag(node.tag)}",
                location=self._loc(node),
            ) from None
        finally:
            _constructor.constructed_objects.clear()
        # Kubernetes reads YAML as JSON: dates stay strings, bytes become base64.
        if isinstance(value, datetime.date | datetime.datetime):
            return node.value
        if isinstance(value, bytes):
            return base64.b64encode(value).decode("ascii")
        return value

    def _key(self, node: yaml.Node) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise InputError("a mapping key must be a plain value", location=self._loc(node))
        value = self._scalar(node)
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str) else node.value

    def _key_of(self, node: yaml.Node) -> str:
        if node.tag == _STR_TAG and isinstance(node, yaml.ScalarNode):
            key: str = node.value
        else:
            key = self._key(node)
        return self.strings.setdefault(key, key)

    def _mapping(self, node: yaml.MappingNode, depth: int, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merged: list[yaml.MappingNode] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(self._merge_sources(value_node))
                continue
            if key_node.tag == _STR_TAG and type(key_node) is yaml.ScalarNode:
                key = key_node.value
                key = self.strings.setdefault(key, key)
            else:
                key = self._key_of(key_node)
            if key in out:
                first = next(
                    k.start_mark.line + 1
                    for k, _ in node.value
                    if k.tag != _MERGE_TAG and self._key_of(k) == key
                )
                raise _DuplicateKey(
                    f"duplicate key {key!r} (first defined at line {first})",
                    self._loc(key_node),
                    key,
                )
            # A field's position is where its key is written.
            try:
                out[key] = self.build(value_node, depth + 1, (*path, key), key_node.start_mark)
            except _DuplicateKey as e:
                e.path.append(key)
                raise
        for source in merged:  # explicit keys win over merged ones
            for key_node, value_node in source.value:
                key = self._key_of(key_node)
                if key not in out:
                    try:
                        out[key] = self.build(
                            value_node, depth + 1, (*path, key), key_node.start_mark
                        )
                    except _DuplicateKey as e:
                        e.path.append(key)
                        raise
        return out

    def _merge_sources(self, node: yaml.Node) -> list[yaml.MappingNode]:
        if isinstance(node, yaml.MappingNode):
            return [node]
        if isinstance(node, yaml.SequenceNode) and all(
            isinstance(n, yaml.MappingNode) for n in node.value
        ):
            return list(node.value)
        raise InputError(
            "a merge key (<<) needs a mapping or a list of mappings", location=self._loc(node)
        )


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


def _dotted(path: Path) -> str:
    """spec.rules[0].to: the way Kubernetes names a field in its errors."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else p
    return out


dotted = _dotted
