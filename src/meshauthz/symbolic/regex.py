"""RE2 patterns as z3 regular expressions, or the reason they cannot be.

Envoy fully matches ``safe_regex`` patterns with RE2. The pattern is parsed
with Python's regular expression parser, whose syntax agrees with RE2's on
the constructs accepted here (literals, classes, ``.``, alternation, groups,
greedy and lazy repetition, ``^``/``$`` at the ends); RE2's own meaning is
then given to each: ``\\d``, ``\\w``, ``\\s`` are ASCII classes (RE2 is not
Unicode-aware there), ``.`` is any character but a line feed. Anything else
(flags, POSIX classes ``[[:alpha:]]``, ``\\p`` classes, ``\\b``, anchors in
the middle, back references) raises ``Unencodable``: the question is then
answered "unknown", never guessed.
"""

from __future__ import annotations

import re
import re._parser as sre  # the parser behind Python's re, with its token names
from typing import Any

import z3

_ALL = z3.AllChar(z3.ReSort(z3.StringSort()))


class Unencodable(Exception):
    """A configuration the encoding cannot express exactly; the message says what."""


# RE2's Perl classes (ASCII only).
_DIGIT = [("0", "9")]
_WORD = [("0", "9"), ("A", "Z"), ("a", "z"), ("_", "_")]
_SPACE = [("\t", "\n"), ("\f", "\r"), (" ", " ")]
_CATEGORIES: dict[Any, tuple[list[tuple[str, str]], bool]] = {
    sre.CATEGORY_DIGIT: (_DIGIT, False),
    sre.CATEGORY_NOT_DIGIT: (_DIGIT, True),
    sre.CATEGORY_WORD: (_WORD, False),
    sre.CATEGORY_NOT_WORD: (_WORD, True),
    sre.CATEGORY_SPACE: (_SPACE, False),
    sre.CATEGORY_NOT_SPACE: (_SPACE, True),
}
_RE2_ONLY = ("[:", "\\p", "\\P", "\\Q", "\\C", "\\z", "(?i", "(?s", "(?m", "(?U")


def _ranges(pairs: list[tuple[str, str]]) -> z3.ReRef:
    return z3.Union(*[z3.Range(a, b) for a, b in pairs]) if len(pairs) > 1 else z3.Range(*pairs[0])


def _negate(r: z3.ReRef) -> z3.ReRef:
    return z3.Intersect(_ALL, z3.Complement(r))


def _char(code: int) -> z3.ReRef:
    return z3.Re(z3.StringVal(chr(code)))


def _seq(items: list[z3.ReRef]) -> z3.ReRef:
    if not items:
        return z3.Re(z3.StringVal(""))
    return items[0] if len(items) == 1 else z3.Concat(*items)


def _alt(items: list[z3.ReRef]) -> z3.ReRef:
    return items[0] if len(items) == 1 else z3.Union(*items)


def _class(items: list[tuple[Any, Any]]) -> z3.ReRef:
    negate = False
    parts: list[z3.ReRef] = []
    for op, av in items:
        if op is sre.NEGATE:
            negate = True
        elif op is sre.LITERAL:
            parts.append(_char(av))
        elif op is sre.RANGE:
            parts.append(z3.Range(chr(av[0]), chr(av[1])))
        elif op is sre.CATEGORY and av in _CATEGORIES:
            pairs, neg = _CATEGORIES[av]
            parts.append(_negate(_ranges(pairs)) if neg else _ranges(pairs))
        else:
            raise Unencodable(f"the class item {op} {av}")
    if not parts:
        raise Unencodable("an empty class")
    r = _alt(parts)
    return _negate(r) if negate else r


def _translate(tokens: Any, at_start: bool, at_end: bool) -> z3.ReRef:
    out: list[z3.ReRef] = []
    items = list(tokens)
    for i, (op, av) in enumerate(items):
        first, last = at_start and i == 0, at_end and i == len(items) - 1
        if op is sre.LITERAL:
            out.append(_char(av))
        elif op is sre.NOT_LITERAL:
            out.append(_negate(_char(av)))
        elif op is sre.ANY:
            out.append(_negate(_char(ord("\n"))))
        elif op is sre.IN:
            out.append(_class(av))
        elif op is sre.BRANCH:
            out.append(_alt([_translate(b, first, last) for b in av[1]]))
        elif op is sre.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            if add_flags & ~re.UNICODE or del_flags:
                raise Unencodable("flags inside the pattern")
            out.append(_translate(sub, first, last))
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
            lo, hi, sub = av
            body = _translate(sub, False, False)
            if hi is sre.MAXREPEAT:
                out.append(z3.Concat(z3.Loop(body, lo, lo), z3.Star(body)) if lo else z3.Star(body))
            elif hi == 0:
                out.append(z3.Re(z3.StringVal("")))
            else:
                out.append(z3.Loop(body, lo, hi))
        elif op is sre.AT:
            # a full match: ^ and $ hold at the pattern's ends and nowhere else
            if (av is sre.AT_BEGINNING and first) or (av is sre.AT_END and last):
                continue
            raise Unencodable(f"the anchor {av} inside the pattern")
        else:
            raise Unencodable(f"the construct {op}")
    return _seq(out)


_cache: dict[str, z3.ReRef] = {}


def re2_to_z3(pattern: str) -> z3.ReRef:
    """The language RE2 fully matches for ``pattern``; raises ``Unencodable``."""
    hit = _cache.get(pattern)
    if hit is not None:
        return hit
    if any(s in pattern for s in _RE2_ONLY):
        raise Unencodable(f"the regex {pattern!r} uses RE2 syntax not encoded")
    try:
        parsed = sre.parse(pattern)
    except (re.error, OverflowError, RecursionError) as e:
        raise Unencodable(f"the regex {pattern!r} could not be read ({e})") from None
    if parsed.state.flags & ~re.UNICODE:
        raise Unencodable(f"the regex {pattern!r} sets flags")
    try:
        r = _translate(parsed, True, True)
    except Unencodable as e:
        raise Unencodable(f"the regex {pattern!r}: {e} is not encoded") from None
    _cache[pattern] = r
    return r


__all__ = ["Unencodable", "re2_to_z3"]
