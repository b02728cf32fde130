"""JSON as Envoy's JWT code reads it: a token's header and payload, and a JWKS.

Envoy parses each with protobuf's JSON parser into a ``google.protobuf.Struct``
(``source/common/jwt/jwt.cc``, ``jwks.cc``), whose rules are neither RFC 8259's
nor Python's ``json``. Observed with Envoy 1.40 (each case is pinned in
``tests/envoy_filters/test_jwt_authn.py``, ``test_token_json_through_a_real_envoy``):

* refused where ``json`` accepts: a key twice in one object (compared after
  unescaping, at any depth), more than 100 nested objects and arrays,
  ``NaN``/``Infinity``/``-Infinity``, a number that overflows a double, an
  escaped lone surrogate (``\\ud800``, or a high one not followed by a ``\\u``
  low one);
* accepted where ``json`` refuses (the parser's legacy syntax): single-quoted
  strings, raw control characters inside strings, the escapes ``\\'`` and
  ``\\U``, unquoted keys (letters, digits and ``_``, not starting with a digit,
  not ``null``/``true``/``false``), one trailing comma in an object or array;
* a top-level ``null`` is an empty object; any other non-object is refused;
* strings must be valid UTF-8; whitespace is space, tab, CR and LF only;
* every number is a double (``9007199254740993`` reads as ``9007199254740992``,
  ``18446744073709551615`` as 2**64); written without fraction or exponent it
  is kept as an ``int`` of that double.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

MAX_DEPTH = 100  # protobuf's JSON ParseOptions::kDefaultDepth

_WS = b" \t\r\n"
_NUMBER = rb"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"
_BAREWORD = rb"[A-Za-z0-9_]+"
_SIMPLE_ESCAPES = {
    ord('"'): '"',
    ord("\\"): "\\",
    ord("/"): "/",
    ord("b"): "\b",
    ord("f"): "\f",
    ord("n"): "\n",
    ord("r"): "\r",
    ord("t"): "\t",
    ord("'"): "'",
}
_HEX = frozenset(b"0123456789abcdefABCDEF")
_STRING_STOP = {ord('"'): rb'["\\]', ord("'"): rb"['\\]"}


@functools.cache  # compiled on first use, not at import: most commands read no token (start-up)
def _patterns() -> tuple[re.Pattern[bytes], re.Pattern[bytes], dict[int, re.Pattern[bytes]]]:
    stops = {quote: re.compile(p) for quote, p in _STRING_STOP.items()}
    return re.compile(_NUMBER), re.compile(_BAREWORD), stops


class TokenJsonError(ValueError):
    """Text that Envoy's JSON parser refuses; the message says where and why."""


def parse_struct(data: bytes) -> dict[str, Any]:
    """``data`` as the ``Struct`` Envoy reads from it; TokenJsonError if refused."""
    p = _Parser(data)
    p.skip_ws()
    if data.startswith(b"null", p.pos):
        p.pos += 4
        value: dict[str, Any] = {}
    elif p.peek() == ord("{"):
        value = p.object(0)
    else:
        raise p.error("expected an object")
    p.skip_ws()
    if p.pos != len(data):
        raise p.error("unexpected text after the object")
    return value


class _Parser:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.number_re, self.bareword_re, self.string_stop = _patterns()

    def error(self, why: str) -> TokenJsonError:
        return TokenJsonError(f"{why} at byte {self.pos}")

    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None

    def skip_ws(self) -> None:
        while self.pos < len(self.data) and self.data[self.pos] in _WS:
            self.pos += 1

    def take(self, literal: bytes) -> bool:
        self.skip_ws()
        if self.data.startswith(literal, self.pos):
            self.pos += len(literal)
            return True
        return False

    def value(self, depth: int) -> Any:
        self.skip_ws()
        c = self.peek()
        if c == ord("{"):
            return self.object(depth)
        if c == ord("["):
            return self.array(depth)
        if c in (ord('"'), ord("'")):
            return self.string()
        for literal, v in ((b"true", True), (b"false", False), (b"null", None)):
            if self.take(literal):
                return v
        if c is not None and (c == ord("-") or ord("0") <= c <= ord("9")):
            return self.number()
        raise self.error("unexpected character")

    def _enter(self, depth: int, opening: bytes) -> int:
        if depth >= MAX_DEPTH:
            raise self.error(f"nested deeper than {MAX_DEPTH}")
        if not self.take(opening):
            raise self.error(f"expected {opening.decode()!r}")
        return depth + 1

    def _after_member(self, closing: bytes) -> bool:
        """True at the container's end (one trailing comma allowed), False for more."""
        comma = self.take(b",")
        if self.take(closing):
            return True
        if not comma:
            raise self.error("expected ','")
        return False

    def object(self, depth: int) -> dict[str, Any]:
        depth = self._enter(depth, b"{")
        out: dict[str, Any] = {}
        if self.take(b"}"):
            return out
        while True:
            self.skip_ws()
            key = self.string() if self.peek() in (ord('"'), ord("'")) else self.bareword()
            if key in out:
                raise self.error(f"duplicate key {key!r}")
            if not self.take(b":"):
                raise self.error("expected ':'")
            out[key] = self.value(depth)
            if self._after_member(b"}"):
                return out

    def array(self, depth: int) -> list[Any]:
        depth = self._enter(depth, b"[")
        out: list[Any] = []
        if self.take(b"]"):
            return out
        while True:
            out.append(self.value(depth))
            if self._after_member(b"]"):
                return out

    def bareword(self) -> str:
        m = self.bareword_re.match(self.data, self.pos)
        word = m.group() if m else b""
        if not word or word[:1].isdigit() or word in (b"null", b"true", b"false"):
            raise self.error("expected a key")
        self.pos += len(word)
        return word.decode("ascii")

    def number(self) -> int | float:
        m = self.number_re.match(self.data, self.pos)
        if m is None:
            raise self.error("expected a number")
        d = float(m.group())
        if not math.isfinite(d):
            raise self.error("number out of range")
        self.pos = m.end()
        # Anything but a delimiter right after the number is caught by the caller.
        return d if m.group(1) or m.group(2) else int(d)

    def _hex4(self) -> int:
        digits = self.data[self.pos : self.pos + 4]
        if len(digits) != 4 or not set(digits) <= _HEX:
            raise self.error("invalid Unicode escape")
        self.pos += 4
        return int(digits, 16)

    def _unicode_escape(self) -> str:
        rune = self._hex4()
        if 0xD800 <= rune <= 0xDBFF:
            if not self.data.startswith(b"\\u", self.pos):
                raise self.error("high surrogate without a low one")
            self.pos += 2
            low = self._hex4()
            if not 0xDC00 <= low <= 0xDFFF:
                raise self.error("invalid low surrogate")
            rune = 0x10000 + ((rune & 0x3FF) << 10) + (low & 0x3FF)
        elif 0xDC00 <= rune <= 0xDFFF:
            raise self.error("unpaired low surrogate")
        return chr(rune)

    def string(self) -> str:
        quote = self.data[self.pos]
        self.pos += 1
        stop = self.string_stop[quote]
        parts: list[str] = []
        while True:
            m = stop.search(self.data, self.pos)
            if m is None:
                raise self.error("end of input inside a string")
            try:
                parts.append(self.data[self.pos : m.start()].decode("utf-8"))
            except UnicodeDecodeError as e:
                raise self.error("invalid UTF-8 in a string") from e
            self.pos = m.end()
            if self.data[m.start()] == quote:
                return "".join(parts)
            esc = self.data[self.pos] if self.pos < len(self.data) else None
            self.pos += 1
            if esc in (ord("u"), ord("U")):
                parts.append(self._unicode_escape())
            elif esc is not None and esc in _SIMPLE_ESCAPES:
                parts.append(_SIMPLE_ESCAPES[esc])
            else:
                raise self.error("invalid escape")
