"""What Envoy's HTTP connection manager does to a request before the filters see it.

The HTTP filters run inside an HttpConnectionManager (HCM); by the time they
look at a request, the codec has checked the request line and the HCM has
rewritten ``:path`` and derived the "remote address". This module models the
HCM options that decide those steps (``PathOptions``, ``XffSettings``, read
from and written to the HCM's JSON by ``HcmOptions``) and reproduces the
steps for Envoy 1.40, so that an evaluator matches paths and ``remote_ip``
exactly as the proxy would. (Istio's ``meshConfig.pathNormalization`` modes
and the XFF settings istiod picks live in ``meshauthz.translate.hcm``.)

Path (`normalize_path`)
    The options modelled are ``normalize_path``, ``merge_slashes`` and
    ``path_with_escaped_slashes_action``, in the four combinations checked
    against a real Envoy (``tests/decide/path_corpus.jsonl``): nothing; normalize;
    normalize and merge slashes; normalize, merge slashes and
    ``UNESCAPE_AND_FORWARD``. ``IMPLEMENTATION_SPECIFIC_DEFAULT`` is
    ``KEEP_UNCHANGED`` in Envoy 1.40. Envoy works on the request target of an
    HTTP/1.1 request line, in this order:

    1. the codec refuses a target that does not start with ``/`` or holds a
       byte outside ``!``..``~`` (space, controls, DEL, any non-ASCII byte): 400;
       a line feed ends the request line early, which leaves a request line
       without a version, answered 426;
    2. a ``#`` anywhere (even with no option set): 400 with Envoy's default
       runtime; with ``http_reject_path_with_fragment`` off (as istiod sets it,
       ``meshauthz.envoy.runtime``) everything from the first ``#`` is dropped
       and the rest goes on;
    3. (without ``normalize_path`` this is all: the path is forwarded as sent);
    4. everything from the first ``?`` is the query and is never touched;
    5. ``UNESCAPE_AND_FORWARD``: ``%2F``/``%2f`` become ``/`` and ``%5C``/``%5c``
       become ``\\`` in the path part;
    6. a segment that is literally ``.`` or ``..`` followed by ``;`` loses the
       ``;`` and the rest of the segment up to the next ``/`` (Envoy's
       path-parameter fix, CVE-2026-73551; only literal dots, ``%2e;`` is kept);
    7. the Chromium URL path canonicalizer: ``\\`` is a slash; ``.``/``..``
       segments (also spelled ``%2e``, any case) are resolved, never above the
       root; escapes of unreserved characters (``A-Z a-z 0-9 - _ ~``, any hex
       case) are decoded; other escapes are kept byte for byte; ``"<>`^{|}``
       are escaped (uppercase hex); ``%00`` makes the request fail with 400; an
       invalid ``%`` that would form a valid escape once a following escape is
       decoded becomes ``%25`` (``/%%30%30`` is ``/%2500``);
    8. ``merge_slashes``: runs of ``/`` in the path
       part collapse to one, keeping one leading and one trailing slash (so
       ``//`` and ``///`` both become ``//``).

    A request line over the HCM header limit (``max_request_headers_kb``, 60
    KiB with everything else in the header block) is answered 431; that depends
    on the other headers, so ``meshauthz.envoy.codec`` checks it.

Remote address (`remote_address`)
    RBAC's ``remote_ip`` (Istio ``remoteIpBlocks``) is the address the HCM
    settles on; ``direct_remote_ip`` (``ipBlocks``) is always the socket peer.
    The HCM joins every ``X-Forwarded-For`` header with ``,`` (empty ones
    dropped), then, in ``ConnectionManagerUtility::mutateRequestHeaders``:

    * ``use_remote_address: false``: skip ``xff_num_trusted_hops`` entries from
      the right and take the next one; if there are not enough entries or the
      entry is not a plain IPv4/IPv6 literal, the socket peer;
    * ``use_remote_address: true``: with N > 0 trusted hops, skip N - 1 entries
      and take the next one (same fallback); with N = 0, the socket peer.


Expectations for every rule above come from a real Envoy 1.40 (the corpora in
``tests/decide/`` and the script that regenerates them) and from Envoy's own
``test/common/http/path_utility_test.cc``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from msgspec import Struct

from meshauthz.envoy.proto_json import as_int, get
from meshauthz.envoy.runtime import VANILLA, EnvoyRuntime

HCM_NAME = "envoy.filters.network.http_connection_manager"
HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)

EscapedSlashesAction = Literal[
    "IMPLEMENTATION_SPECIFIC_DEFAULT",
    "KEEP_UNCHANGED",
    "REJECT_REQUEST",
    "UNESCAPE_AND_REDIRECT",
    "UNESCAPE_AND_FORWARD",
]
_ESCAPED_SLASHES_ACTIONS: tuple[EscapedSlashesAction, ...] = (
    "IMPLEMENTATION_SPECIFIC_DEFAULT",
    "KEEP_UNCHANGED",
    "REJECT_REQUEST",
    "UNESCAPE_AND_REDIRECT",
    "UNESCAPE_AND_FORWARD",
)


class HcmConfigError(ValueError):
    """HCM options the model cannot hold or does not evaluate."""


class PathOptions(Struct, frozen=True):
    """The HCM fields that decide the ``:path`` the filters see."""

    normalize_path: bool = False
    merge_slashes: bool = False
    path_with_escaped_slashes_action: EscapedSlashesAction = "IMPLEMENTATION_SPECIFIC_DEFAULT"

    @property
    def unescapes_slashes(self) -> bool:
        return self.path_with_escaped_slashes_action == "UNESCAPE_AND_FORWARD"

    @property
    def keeps_escaped_slashes(self) -> bool:
        # Envoy 1.40's implementation-specific default keeps them.
        return self.path_with_escaped_slashes_action in (
            "IMPLEMENTATION_SPECIFIC_DEFAULT",
            "KEEP_UNCHANGED",
        )

    def unmodelled(self) -> str | None:
        """Why ``normalize_path`` cannot evaluate these options (None: it can).

        Only the combinations the real-Envoy path corpus covers are evaluated;
        the steps interact (slashes are unescaped before normalization, merged
        after), so another combination is not assumed to compose them."""
        modelled = (
            (not self.normalize_path and not self.merge_slashes and self.keeps_escaped_slashes)
            or (self.normalize_path and self.keeps_escaped_slashes)
            or (self.normalize_path and self.merge_slashes and self.unescapes_slashes)
        )
        if modelled:
            return None
        return (
            f"the HTTP connection manager's path options (normalize_path={self.normalize_path}, "
            f"merge_slashes={self.merge_slashes}, path_with_escaped_slashes_action="
            f"{self.path_with_escaped_slashes_action}) are a combination meshauthz has not "
            "checked against Envoy"
        )


class NormalizedPath(Struct, frozen=True):
    """The ``:path`` the filters see, or Envoy's refusal.

    Exactly one of ``path`` and ``rejected_status`` is set. ``reason`` says in
    a few words why Envoy refused the request.
    """

    path: str | None
    rejected_status: int | None = None
    reason: str | None = None

    @property
    def rejected(self) -> bool:
        return self.path is None

    @staticmethod
    def reject(status: int, reason: str) -> NormalizedPath:
        return NormalizedPath(None, status, reason)


class XffSettings(Struct, frozen=True):
    """The two HCM fields that decide the remote address."""

    use_remote_address: bool = False
    xff_num_trusted_hops: int = 0

    @classmethod
    def from_hcm(cls, hcm: Any) -> XffSettings:
        """The two fields of an HttpConnectionManager's JSON, in either spelling."""
        return cls(
            use_remote_address=bool(get(hcm, "use_remote_address", False)),
            xff_num_trusted_hops=as_int(get(hcm, "xff_num_trusted_hops", 0)) or 0,
        )


class HcmOptions(Struct, frozen=True):
    """What meshauthz models of an HttpConnectionManager's own options."""

    path: PathOptions = PathOptions()
    xff: XffSettings = XffSettings()

    @classmethod
    def from_json(cls, hcm: Mapping[str, Any]) -> HcmOptions:
        """From an HCM typed config (snake_case or camelCase)."""
        action = get(hcm, "path_with_escaped_slashes_action", "IMPLEMENTATION_SPECIFIC_DEFAULT")
        if isinstance(action, int) and 0 <= action < len(_ESCAPED_SLASHES_ACTIONS):
            action = _ESCAPED_SLASHES_ACTIONS[action]
        if action not in _ESCAPED_SLASHES_ACTIONS:
            raise HcmConfigError(f"unknown path_with_escaped_slashes_action {action!r}")
        return cls(
            path=PathOptions(
                normalize_path=bool(get(hcm, "normalize_path", False)),
                merge_slashes=bool(get(hcm, "merge_slashes", False)),
                path_with_escaped_slashes_action=action,
            ),
            xff=XffSettings.from_hcm(hcm),
        )

    def to_json(self) -> dict[str, Any]:
        """The HCM fields (snake_case), to merge into an HCM typed config."""
        out: dict[str, Any] = {
            "normalize_path": self.path.normalize_path,
            "merge_slashes": self.path.merge_slashes,
            "path_with_escaped_slashes_action": self.path.path_with_escaped_slashes_action,
            "use_remote_address": self.xff.use_remote_address,
        }
        if self.xff.xff_num_trusted_hops:
            out["xff_num_trusted_hops"] = self.xff.xff_num_trusted_hops
        return out


# ---------------------------------------------------------------------------
# Path normalization

_HEX = frozenset("0123456789abcdefABCDEF")
# Characters whose escapes the canonicalizer decodes (RFC 3986 unreserved minus '.').
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~")
# Printable characters the canonicalizer writes as %XX.
_ESCAPED = frozenset('"<>`^{|}')
# A part without dots, escapes, backslashes or characters to escape: canonical as it is.
_CANONICAL = re.compile(r"[^.%\\" + re.escape("".join(sorted(_ESCAPED))) + "]*")


# Request methods Envoy 1.40's HTTP/1.1 codec accepts (checked against the
# binary by tests/envoy): any other token, including lowercase spellings,
# M-SEARCH and PRI, is refused with 400 before any filter runs. CONNECT only
# with an authority target (meshauthz.envoy.request_target).
HTTP1_METHODS = frozenset(
    [
        "CONNECT",
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "DELETE",
        "OPTIONS",
        "TRACE",
        "PATCH",
        "COPY",
        "LOCK",
        "MKCOL",
        "MOVE",
        "PROPFIND",
        "PROPPATCH",
        "SEARCH",
        "UNLOCK",
        "BIND",
        "REBIND",
        "UNBIND",
        "ACL",
        "REPORT",
        "MKACTIVITY",
        "CHECKOUT",
        "MERGE",
        "NOTIFY",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "PURGE",
        "MKCALENDAR",
        "LINK",
        "UNLINK",
        "SOURCE",
        "QUERY",
    ]
)


def check_method(method: str, headers: Iterable[tuple[str, str]] = ()) -> NormalizedPath | None:
    """The HTTP/1.1 codec's verdict on a request's method: None if the request
    reaches the filters, else Envoy's refusal. QUERY needs a Content-Type
    header; CONNECT's target is checked with the others
    (``meshauthz.envoy.request_target``)."""
    if method not in HTTP1_METHODS:
        return NormalizedPath.reject(
            400, f"the HTTP/1.1 codec does not accept the method {method!r}"
        )
    if method == "QUERY" and not any(n.lower() == "content-type" for n, _ in headers):
        return NormalizedPath.reject(400, "a QUERY request needs a Content-Type header")
    return None


def normalize_path(
    path: str, options: PathOptions, runtime: EnvoyRuntime = VANILLA
) -> NormalizedPath:
    """The ``:path`` Envoy 1.40 hands to the filters for the HTTP/1.1 target ``path``,
    on a proxy whose runtime flags are ``runtime``.

    The result is what RBAC matches against and what is forwarded upstream.
    Options ``PathOptions.unmodelled`` names, and a runtime that keeps
    fragments, raise ``HcmConfigError``.
    """
    why = options.unmodelled()
    if why is not None:
        raise HcmConfigError(why)
    refused = _check_request_target(path)
    if refused is not None:
        return refused
    cut = path.find("#")
    if cut >= 0:
        action = runtime.fragment
        if action == "reject":
            return NormalizedPath.reject(400, "fragment in path")
        if action == "keep":
            raise HcmConfigError("a runtime that keeps #fragments in :path is not modelled")
        path = path[:cut]
    if not options.normalize_path:
        return NormalizedPath(path)

    cut = path.find("?")
    part, query = (path, "") if cut < 0 else (path[:cut], path[cut:])
    if options.unescapes_slashes:
        part = _unescape_slashes(part)
    part = _strip_dot_segment_parameters(part)
    canonical = _canonicalize(part)
    if canonical is None:
        return NormalizedPath.reject(400, "invalid escape %00 in path")
    if options.merge_slashes:
        canonical = _merge_slashes(canonical)
    return NormalizedPath(canonical + query)


def _check_request_target(path: str) -> NormalizedPath | None:
    """The HTTP/1.1 codec's verdict on an origin-form request target, None if accepted."""
    refused = target_characters(path)
    if refused is not None:
        return refused
    return None if path.startswith("/") else NOT_A_TARGET


def target_characters(target: str) -> NormalizedPath | None:
    """The codec's verdict on the request target's characters (all of "!".."~"),
    None if accepted."""
    if target.isascii() and target.isprintable() and " " not in target:
        return None
    for i, ch in enumerate(target):
        if "!" <= ch <= "~":
            continue
        if ch == "\n" or (ch == "\r" and target[i + 1 : i + 2] == "\n"):
            return NormalizedPath.reject(426, "line break ends the request line (no HTTP version)")
        return NormalizedPath.reject(400, f"invalid character {ch!r} in request target")
    return None


# A target in none of the forms the codec reads (``meshauthz.envoy.request_target``).
NOT_A_TARGET = NormalizedPath.reject(400, "request target is neither a path nor an http(s) URL")


def _unescape_slashes(part: str) -> str:
    if "%" not in part:
        return part
    out: list[str] = []
    i = 0
    while i < len(part):
        esc = part[i : i + 3]
        if esc in ("%2F", "%2f"):
            out.append("/")
            i += 3
        elif esc in ("%5C", "%5c"):
            out.append("\\")
            i += 3
        else:
            out.append(part[i])
            i += 1
    return "".join(out)


def _strip_dot_segment_parameters(part: str) -> str:
    if ";" not in part:
        return part
    segments = part.split("/")
    for n, seg in enumerate(segments):
        if n == 0:
            continue
        for dots in ("..;", ".;"):
            if seg.startswith(dots):
                segments[n] = dots[:-1]
                break
    return "/".join(segments)


def _dot_length(s: str, i: int) -> int:
    """Length of a dot at ``s[i]``: 1 for ``.``, 3 for ``%2e``/``%2E``, else 0."""
    if s[i] == ".":
        return 1
    if s[i] == "%" and s[i + 1 : i + 3] in ("2e", "2E"):
        return 3
    return 0


def _is_slash(ch: str) -> bool:
    return ch in ("/", "\\")


def _after_dot(s: str, j: int) -> tuple[str, int]:
    """Classify what follows a dot that starts a segment, as Chromium does.

    Returns ``("cur" | "up" | "none", characters consumed after the first dot)``.
    """
    end = len(s)
    if j == end:
        return "cur", 0
    if _is_slash(s[j]):
        return "cur", 1
    second = _dot_length(s, j)
    if second:
        k = j + second
        if k == end:
            return "up", second
        if _is_slash(s[k]):
            return "up", second + 1
    return "none", 0


def _back_up(out: list[str]) -> None:
    """Drop the last segment of ``out`` (which ends with '/'), never the first slash."""
    if len(out) == 1:
        return
    i = len(out) - 2
    while i > 0 and out[i] != "/":
        i -= 1
    del out[i + 1 :]


def _hex_pair_after(s: str | list[str], i: int) -> bool:
    """Whether ``s[i + 1]`` and ``s[i + 2]`` exist and are hex digits (``s[i]`` unchecked)."""
    return i + 3 <= len(s) and s[i + 1] in _HEX and s[i + 2] in _HEX


def _decode_escape(s: str, i: int) -> int | None:
    """The byte of a valid ``%XX`` at ``s[i]``, else None."""
    if s[i] == "%" and _hex_pair_after(s, i):
        return int(s[i + 1 : i + 3], 16)
    return None


def _canonicalize(part: str) -> str | None:
    """Chromium's path canonicalization of ``part`` (starts with '/'); None on failure."""
    if part[:1] == "/" and _CANONICAL.fullmatch(part):  # nothing below would change it
        return part
    out: list[str] = []
    end = len(part)
    last_bad_percent = -(10**9)
    ok = True
    i = 0
    if not _is_slash(part[0]):
        out.append("/")
    while i < end:
        ch = part[i]
        dot = _dot_length(part, i)
        if dot:
            if out and out[-1] == "/":
                kind, used = _after_dot(part, i + dot)
                if kind == "none":
                    out.append(".")
                elif kind == "up":
                    _back_up(out)
                i += dot + used
            else:
                out.append(".")
                i += dot
            continue
        if ch == "\\":
            out.append("/")
        elif ch == "%":
            value = _decode_escape(part, i)
            if value is None:
                last_bad_percent = len(out)
                out.append("%")
            elif chr(value) in _UNRESERVED:
                out.append(chr(value))
                if last_bad_percent >= len(out) - 3:
                    _fix_nested_escape(part, i + 3, last_bad_percent, out)
                i += 3
                continue
            else:
                out.extend(part[i : i + 3])
                if value == 0:
                    ok = False
                i += 3
                continue
        elif ch in _ESCAPED:
            out.extend(f"%{ord(ch):02X}")
        else:
            out.append(ch)
        i += 1
    return "".join(out) if ok else None


def _fix_nested_escape(part: str, next_i: int, bad: int, out: list[str]) -> None:
    """Write an earlier invalid '%' as %25 when decoding made it a valid escape."""
    # Envoy 1.40 (googleurl) only repairs a '%' that is still in the output: once a
    # ``..`` has cut it away, whatever now sits at that index is left alone.
    if bad >= len(out) or out[bad] != "%":
        return
    length = len(out)
    last = out[-1]
    borrow = bad == length - 2
    if borrow:
        if next_i >= len(part):
            return
        out.append(part[next_i])
    if _hex_pair_after(out, bad):
        if not borrow:
            out.append(out[bad + 1])
        out[bad + 1] = "2"
        out[bad + 2] = "5"
        out.append(last)
    elif borrow:
        del out[length:]


def _merge_slashes(part: str) -> str:
    if "//" not in part:
        return part
    lead = "/" if part.startswith("/") else ""
    trail = "/" if part.endswith("/") else ""
    return lead + "/".join(s for s in part.split("/") if s) + trail


# ---------------------------------------------------------------------------
# Remote address

_TRIM = " \t\f\v\n\r"


def join_header_values(values: list[str]) -> str | None:
    """One header's values as Envoy's header matchers see them, None if absent.

    ``values`` are the header's values as sent, in arrival order. The HTTP/1
    codec trims spaces and tabs around each value; Envoy's
    ``HeaderUtility::getAllOfHeaderAsString`` (used by the RBAC header matcher,
    and by Lua's ``headers():get``) then joins repeated headers with ``,`` and
    no space. Empty values are kept (``["a", ""]`` is ``"a,"``), unlike in
    X-Forwarded-For, which the codec appends to in place and skips empties.
    """
    if not values:
        return None
    return ",".join(v.strip(" \t") for v in values)


def _forwarded_for(xff: Iterable[str] | None) -> str | None:
    """The single X-Forwarded-For value the HCM holds after the codec."""
    if xff is None:
        return None
    vals = [v.strip(" \t") for v in xff]
    vals = [v for v in vals if v]
    return ",".join(vals) if vals else None


def _parse_ip(text: str) -> str | None:
    """Envoy's text form of an IP literal, None if ``text`` is not one."""
    import socket  # here: only an X-Forwarded-For needs it, and it costs a command 5 ms

    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text))
    except OSError:
        pass
    addr, pct, zone = text.partition("%")
    try:
        packed = socket.inet_pton(socket.AF_INET6, addr)
    except OSError:
        return None
    formatted = socket.inet_ntop(socket.AF_INET6, packed)
    if not pct:
        return formatted
    if zone.isdigit():
        return f"{formatted}%{int(zone)}"
    try:
        return f"{formatted}%{socket.if_nametoindex(zone)}"
    except OSError:
        return None


def _xff_entry(value: str | None, skip: int) -> str | None:
    """Envoy's ``getLastAddressFromXFF``: the entry after skipping ``skip`` from the right."""
    if value is None:
        return None
    s = value
    for _ in range(skip):
        cut = s.rfind(",")
        if cut < 0:
            return None
        s = s[:cut]
    cut = s.rfind(",")
    if cut >= 0 and cut + 1 < len(s):
        s = s[cut + 1 :]
    return _parse_ip(s.strip(_TRIM))


def remote_address(
    direct_ip: str,
    xff: list[str] | None,
    num_trusted_hops: int,
    use_remote_address: bool,
) -> str:
    """The downstream remote address (RBAC ``remote_ip``) Envoy derives.

    ``direct_ip`` is the socket peer, ``xff`` the X-Forwarded-For header values
    in arrival order (None or [] when absent). Returns an IP in Envoy's text
    form (IPv6 compressed and lower case, as ``inet_ntop`` writes it).
    """
    if num_trusted_hops < 0:
        raise ValueError("xff_num_trusted_hops cannot be negative")
    if not xff:  # most requests: the socket's peer, whatever the settings
        return direct_ip
    value = _forwarded_for(xff)
    if use_remote_address:
        found = _xff_entry(value, num_trusted_hops - 1) if num_trusted_hops > 0 else None
    else:
        found = _xff_entry(value, num_trusted_hops)
    return found if found is not None else direct_ip
