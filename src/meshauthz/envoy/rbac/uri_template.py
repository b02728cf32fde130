"""Envoy's uri_template path matcher (envoy.path.match.uri_template).

A template such as ``/v1/{bucket}/**.m3u8`` is validated with Envoy's rules
and turned into an RE2 pattern fully matched against the path without its
query and fragment:

- ``*`` (and a bare ``{name}``) matches one non-empty path segment;
- ``**`` matches zero or more characters across segments (``/`` included),
  and no glob may follow it;
- ``{name=...}`` captures a sequence of literals and globs;
- literals are RFC 3986 pchars without ``*`` and ``=``; a literal suffix may
  follow the last segment's glob (``/**.m3u8``);
- the globs match every pchar, ``*`` and ``=`` included (a DENY on ``/admin/*``
  denies ``/admin/x=y``; pinned byte by byte against Envoy 1.40 in
  tests/adversarial/uri_template_corpus.jsonl);
- at most 5 variables, names ``[a-zA-Z][a-zA-Z0-9_]*`` of 1..16 chars, unique.
"""

from __future__ import annotations

import functools
from typing import Any

from .regex import compile_regex

_PCHARS = "a-zA-Z0-9-._~%!$&'()+,;:@"
# a template's literals may not hold "*" and "=" (they are its syntax); paths may
_GLOB_CHARS = _PCHARS + "*="
_PATH_GLOB = f"[{_GLOB_CHARS}]+"
_TEXT_GLOB = f"[{_GLOB_CHARS}/]*"
_LITERAL = f"[{_PCHARS}]+"
_VAR_NAME = "[a-zA-Z][a-zA-Z0-9_]*"
_PRINTABLE = "/[[:graph:]]*"
_MAX_VARS = 5
_MAX_VAR_NAME = 16


class UriTemplateError(ValueError):
    pass


def _escape(literal: str) -> str:
    # Envoy escapes only these; the other pchars have no meaning in RE2.
    for ch in "$()+.":
        literal = literal.replace(ch, "\\" + ch)
    return literal


def _literal(text: str) -> tuple[str, str]:
    lit = text.split("/", 1)[0]
    if not compile_regex(_LITERAL).fullmatch(lit):
        raise UriTemplateError(f"invalid literal {lit!r}")
    return lit, text[len(lit) :]


def _operator(text: str) -> tuple[str, str]:
    if text.startswith("**"):
        return "**", text[2:]
    if text.startswith("*"):
        return "*", text[1:]
    raise UriTemplateError("invalid operator")


def _variable(text: str) -> tuple[tuple[str, list[str]], str]:
    if len(text) < 2 or text[0] != "{":
        raise UriTemplateError("invalid variable")
    if "}" not in text[1:]:
        raise UriTemplateError("unmatched variable bracket")
    body, rest = text[1:].split("}", 1)
    name, eq, pattern = body.partition("=")
    if not compile_regex(_VAR_NAME).fullmatch(name):
        raise UriTemplateError(f"invalid variable name {name!r}")
    parts: list[str] = []
    if eq:
        if not pattern:
            raise UriTemplateError("empty variable match")
        while pattern:
            part, pattern = _operator(pattern) if pattern[0] == "*" else _literal(pattern)
            parts.append(part)
            if pattern:
                if pattern[0] != "/" or len(pattern) == 1:
                    raise UriTemplateError("invalid variable match")
                pattern = pattern[1:]
    return (name, parts), rest


Segment = Any  # "*" | "**" | ("lit", str) | (name, [parts])


def _parse(template: str) -> tuple[list[Segment], str]:
    if not compile_regex(_PRINTABLE).fullmatch(template):
        raise UriTemplateError(f"invalid pattern {template!r}")
    rest = template[1:]
    segments: list[Segment] = []
    suffix = ""
    while rest:
        seg: Segment
        if rest[0] == "*":
            seg, rest = _operator(rest)
        elif rest[0] == "{":
            seg, rest = _variable(rest)
        else:
            lit, rest = _literal(rest)
            seg = ("lit", lit)
        segments.append(seg)
        if rest:
            if rest == "/":
                segments.append(("lit", ""))
                break
            if rest[0] == "/":
                rest = rest[1:]
            else:
                suffix, rest = _literal(rest)
                if rest:
                    raise UriTemplateError("prefix match not supported")
                break
    return segments, suffix


def _validate(segments: list[Segment]) -> None:
    names: set[str] = set()
    seen_text_glob = False
    for seg in segments:
        if isinstance(seg, str):
            if seen_text_glob:
                raise UriTemplateError("glob after text glob")
            seen_text_glob = seg == "**"
        elif seg[0] != "lit":
            name, parts = seg
            if len(names) >= _MAX_VARS:
                raise UriTemplateError("exceeded variable count limit")
            if not 1 <= len(name) <= _MAX_VAR_NAME:
                raise UriTemplateError("invalid variable length")
            if name in names:
                raise UriTemplateError(f"repeated variable name {name!r}")
            names.add(name)
            if not parts and seen_text_glob:
                raise UriTemplateError("implicit variable path glob after text glob")
            for part in parts:
                if part in ("*", "**"):
                    if seen_text_glob:
                        raise UriTemplateError("glob after text glob")
                    seen_text_glob = part == "**"


def _glob(op: str) -> str:
    return _PATH_GLOB if op == "*" else _TEXT_GLOB


def _regex(seg: Segment) -> str:
    if isinstance(seg, str):
        return _glob(seg)
    if seg[0] == "lit":
        return _escape(seg[1])
    name, parts = seg
    inner = "/".join(_glob(p) if p in ("*", "**") else _escape(p) for p in parts) or _PATH_GLOB
    return f"(?P<{name}>{inner})"


@functools.lru_cache(maxsize=4096)
def compile_uri_template(template: str) -> Any:
    """The compiled RE2 regex for a template; raises UriTemplateError if Envoy would."""
    segments, suffix = _parse(template)
    _validate(segments)
    return compile_regex("/" + "/".join(_regex(s) for s in segments) + _escape(suffix))


def template_set(templates: list[str]) -> Any:
    """``fn(path)``: whether one of the templates fully matches ``path``. A template
    whose first segment is a literal can only match paths whose first segment is
    that literal (a literal segment ends at "/" or at the end), so templates are
    indexed by it and a path tries only its own segment's few."""
    by_first: dict[str, list[Any]] = {}
    always: list[Any] = []
    for t in dict.fromkeys(templates):
        full = compile_uri_template(t).fullmatch
        segments, _ = _parse(t)
        if segments and not isinstance(segments[0], str) and segments[0][0] == "lit":
            by_first.setdefault(segments[0][1], []).append(full)
        else:
            always.append(full)
    index = {k: (*always, *v) for k, v in by_first.items()}
    rest = tuple(always)

    def match(path: str) -> bool:
        for full in index.get(path[1:].split("/", 1)[0], rest):  # noqa: SIM110
            if full(path) is not None:
                return True
        return False

    return match


def strip_query_and_fragment(path: str) -> str:
    """Envoy's PathUtil::removeQueryAndFragment: cut at the first '?' or '#'."""
    if "?" not in path and "#" not in path:  # most paths: two scans, no new string
        return path
    return path.partition("?")[0].partition("#")[0]


def uri_template_matches(template: str, path: str) -> bool:
    return compile_uri_template(template).fullmatch(strip_query_and_fragment(path)) is not None
