"""meshauthz.envoy.hcm against Envoy 1.40.

Expectations come from two places only:

* the corpora ``path_corpus.jsonl`` and ``header_corpus.jsonl``, recorded from a
  real Envoy 1.40 by ``envoy_probe.py`` (see its docstring to regenerate them);
* Envoy's own unit tests, ``test/common/http/path_utility_test.cc``
  (``NormalizeValidPaths``, ``NormalizeCasePath``, ``InvalidPaths``,
  ``MergeSlashes``, ``PathTransformerTest.UnescapeSlashes``).

The ``live`` tests start Envoy again (127.0.0.1 only, bounded waits, always
stopped) and compare a sample of rows plus a seeded random batch of paths.
"""

from __future__ import annotations

import random
import time
from functools import cache
from typing import Any

import pytest

from meshauthz.envoy import hcm as http
from meshauthz.envoy.hcm import (
    HcmConfigError,
    HcmOptions,
    NormalizedPath,
    PathOptions,
    XffSettings,
    join_header_values,
    normalize_path,
    remote_address,
)
from meshauthz.envoy.runtime import VANILLA
from meshauthz.translate.bootstrap import ISTIO_RUNTIME
from tests.decide import envoy_probe as probe
from tests.envoy_process import require_envoy

PATH_ROWS = probe.read_jsonl(probe.CORPUS)
HEADER_ROWS = probe.read_jsonl(probe.HEADER_CORPUS)
XFF_ROWS = [r for r in HEADER_ROWS if r["kind"] == "xff"]
JOIN_ROWS = [r for r in HEADER_ROWS if r["kind"] == "join"]
DIRECT = "127.0.0.1"  # the socket peer in every recorded run


@cache
def opts(mode: str) -> PathOptions:
    """The path options of the corpus's Envoy for one of its modes, read from
    the HCM JSON it was started with."""
    return HcmOptions.from_json(probe.mode_options(mode)).path


def _row_id(row: dict[str, Any]) -> str:
    shown = row["path"] if len(row["path"]) <= 40 else row["path"][:37] + "..."
    return f"{row['mode']}:{shown!r}"


# ---------------------------------------------------------------------------
# Recorded corpora


def test_corpus_is_complete() -> None:
    assert len(PATH_ROWS) == len(probe.PATH_INPUTS) * len(probe.MODES)
    assert {r["mode"] for r in PATH_ROWS} == set(probe.MODES)
    assert len(XFF_ROWS) == len(probe.XFF_INPUTS) * len(probe.XFF_SETTINGS)
    assert len(JOIN_ROWS) == len(probe.JOIN_INPUTS)


@pytest.mark.parametrize("row", PATH_ROWS, ids=_row_id)
def test_normalize_path_matches_envoy(row: dict[str, Any]) -> None:
    # the corpus is recorded from an Envoy running istiod's runtime flags
    got = normalize_path(row["path"], opts(row["mode"]), ISTIO_RUNTIME)
    assert got.path == row["normalized"]
    assert got.rejected_status == row["status"]
    assert got.rejected == (row["status"] is not None)


@pytest.mark.parametrize(
    "row",
    XFF_ROWS,
    ids=lambda r: f"{r['xff']!r}-ura={r['use_remote_address']}-hops={r['xff_num_trusted_hops']}",
)
def test_remote_address_matches_envoy(row: dict[str, Any]) -> None:
    got = remote_address(DIRECT, row["xff"], row["xff_num_trusted_hops"], row["use_remote_address"])
    assert got == row["remote"]
    assert row["direct"] == DIRECT


@pytest.mark.parametrize("row", JOIN_ROWS, ids=lambda r: repr(r["values"]))
def test_join_header_values_matches_envoy(row: dict[str, Any]) -> None:
    assert join_header_values(row["values"]) == row["joined"]


def test_join_absent_header() -> None:
    assert join_header_values([]) is None


# ---------------------------------------------------------------------------
# Envoy's own unit-test vectors (test/common/http/path_utility_test.cc)

# NormalizeValidPaths and NormalizeCasePath, through PathUtil::canonicalPath.
CANONICAL_PAIRS = [
    ("/a/b/../c", "/a/c"),
    ("/a/b/./c", "/a/b/c"),
    ("a/b/../c", "/a/c"),
    ("/a/b/../../../../c", "/c"),
    ("/a/..\\c", "/c"),
    ("/%c0%af", "/%c0%af"),
    ("/%5c%25", "/%5c%25"),
    ("/a/b/%2E%2E/c", "/a/c"),
    ("/a/b/%2E./c", "/a/c"),
    ("/a/b/%2E/c", "/a/b/c"),
    ("..", "/"),
    ("/../a/b", "/a/b"),
    ("/./a/b", "/a/b"),
    ("/A/B/C", "/A/B/C"),
    ("/a/b/%2e%2e/c", "/a/c"),
    ("/a/%2F%2f/c", "/a/%2F%2f/c"),
    ("/xyz", "/xyz"),
    ("/x/y/z", "/x/y/z"),
]


@pytest.mark.parametrize(("raw", "expected"), CANONICAL_PAIRS)
def test_envoy_canonical_path_vectors(raw: str, expected: str) -> None:
    assert http._canonicalize(raw) == expected
    if raw.startswith("/"):
        assert normalize_path(raw, opts("BASE")) == NormalizedPath(expected)


@pytest.mark.parametrize("raw", ["/xyz/.%00../abc", "/xyz/%00.%00./abc", "/xyz/AAAAA%%0000/abc"])
def test_envoy_invalid_path_vectors(raw: str) -> None:
    assert http._canonicalize(raw) is None
    got = normalize_path(raw, opts("BASE"))
    assert got.rejected and got.rejected_status == 400


MERGE_PAIRS = [
    ("", ""),
    ("a//b/c", "a/b/c"),
    ("/a//b/c/", "/a/b/c/"),
    ("a//b/c/", "a/b/c/"),
    ("/a", "/a"),
    ("//a/b/c", "/a/b/c"),
    ("/a//b/c", "/a/b/c"),
    ("/a/b/c//", "/a/b/c/"),
    ("/a///b/c", "/a/b/c"),
    ("/a////b/c", "/a/b/c"),
]


@pytest.mark.parametrize(("raw", "expected"), MERGE_PAIRS)
def test_envoy_merge_slashes_vectors(raw: str, expected: str) -> None:
    assert http._merge_slashes(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("/a//b?a=///c", "/a/b?a=///c"), ("/a//b?", "/a/b?"), ("//a/?b", "/a/?b")],
)
def test_envoy_merge_slashes_query_vectors(raw: str, expected: str) -> None:
    assert normalize_path(raw, opts("MERGE_SLASHES")) == NormalizedPath(expected)


UNESCAPE_PAIRS = [
    ("", ""),
    ("%2f%2F", "//"),
    ("/a%2Fb%2fc/", "/a/b/c/"),
    ("%2b", "%2b"),
    ("/a/b/c", "/a/b/c"),
    ("%2", "%2"),
    ("%", "%"),
    ("/abc%2", "/abc%2"),
    ("foo%", "foo%"),
    ("/a%2F", "/a/"),
    ("%2fa/", "/a/"),
    ("%%2fa/", "%/a/"),
    ("%2%2fa/", "%2/a/"),
    ("%5c%5C", "\\\\"),
    ("/a%5Cb%5cc/", "/a\\b\\c/"),
    ("/a%5C", "/a\\"),
]


@pytest.mark.parametrize(("raw", "expected"), UNESCAPE_PAIRS)
def test_envoy_unescape_slashes_vectors(raw: str, expected: str) -> None:
    assert http._unescape_slashes(raw) == expected


# ---------------------------------------------------------------------------
# API details


def test_rejection_has_reason() -> None:
    got = normalize_path("/a#frag", opts("NONE"), VANILLA)
    assert got.path is None and got.rejected_status == 400 and got.reason


def test_negative_trusted_hops() -> None:
    with pytest.raises(ValueError):
        remote_address(DIRECT, None, -1, False)


def test_option_combinations_outside_the_corpus_are_not_evaluated() -> None:
    covered = {opts(m) for m in probe.MODES}
    for o in covered:
        assert o.unmodelled() is None
    for o in (
        PathOptions(False, True, "KEEP_UNCHANGED"),
        PathOptions(True, False, "UNESCAPE_AND_FORWARD"),
        PathOptions(True, True, "REJECT_REQUEST"),
        PathOptions(False, False, "UNESCAPE_AND_REDIRECT"),
    ):
        assert o.unmodelled() is not None
        with pytest.raises(HcmConfigError, match="has not checked"):
            normalize_path("/", o)
    # Envoy 1.40's implementation-specific default keeps escaped slashes.
    assert normalize_path("/a%2Fb", PathOptions(True, False)) == normalize_path(
        "/a%2Fb", opts("BASE")
    )


def test_hcm_options_json_round_trip() -> None:
    for mode in probe.MODES:
        for xff in (XffSettings(), XffSettings(True, 2)):
            o = HcmOptions(opts(mode), xff)
            assert HcmOptions.from_json(o.to_json()) == o
    camel = {
        "normalizePath": True,
        "mergeSlashes": True,
        "pathWithEscapedSlashesAction": 4,
        "useRemoteAddress": True,
        "xffNumTrustedHops": {"value": 3},
    }
    assert HcmOptions.from_json(camel) == HcmOptions(
        PathOptions(True, True, "UNESCAPE_AND_FORWARD"), XffSettings(True, 3)
    )
    with pytest.raises(HcmConfigError):
        HcmOptions.from_json({"path_with_escaped_slashes_action": "SOMETIMES"})


# ---------------------------------------------------------------------------
# Live Envoy

LIVE_BUDGET_S = 120.0
FUZZ_TOKENS = [
    "/", "//", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "\\", ";", ";x",
    "a", "%41", "%", "%%", "%4", "%30", "%00", "?", "?x=/../", "%25", "~", '"', "^",
    "|", "%3B", "%7e", "0", "4", "=", "..;",
]  # fmt: skip


def _envoy_or_skip() -> str:
    return require_envoy("live path-normalization check")


def test_live_envoy_agrees() -> None:
    exe = _envoy_or_skip()
    deadline = time.monotonic() + LIVE_BUDGET_S
    rnd = random.Random(20240601)
    path_sample = PATH_ROWS[::7]
    fuzz = [
        "/" + "".join(rnd.choice(FUZZ_TOKENS) for _ in range(rnd.randint(1, 12)))
        for _ in range(150)
    ]
    xff_sample = XFF_ROWS[::3]
    mismatches: list[str] = []
    with probe.running_envoy(exe, timeout=30.0) as envoy:
        for row in path_sample:
            assert time.monotonic() < deadline, "live Envoy comparison ran out of time"
            live = probe.probe_path(envoy, row["path"], row["mode"])
            if live != row:
                mismatches.append(f"corpus row changed: {row!r} -> {live!r}")
        for path in fuzz:
            assert time.monotonic() < deadline, "live Envoy comparison ran out of time"
            for mode in probe.MODES:
                live = probe.probe_path(envoy, path, mode)
                ours = normalize_path(path, opts(mode), ISTIO_RUNTIME)
                if (ours.path, ours.rejected_status) != (live["normalized"], live["status"]):
                    mismatches.append(f"{path!r} {mode}: envoy {live!r}, ours {ours!r}")
        for row in xff_sample:
            assert time.monotonic() < deadline, "live Envoy comparison ran out of time"
            remote, direct = probe.probe_xff(
                envoy, row["xff"], row["use_remote_address"], row["xff_num_trusted_hops"]
            )
            ours = remote_address(
                direct, row["xff"], row["xff_num_trusted_hops"], row["use_remote_address"]
            )
            if remote != ours or remote != row["remote"]:
                mismatches.append(f"xff {row!r}: envoy {remote}, ours {ours}")
        for row in JOIN_ROWS:
            live_joined = probe.probe_join(envoy, row["values"])
            if live_joined != join_header_values(row["values"]):
                mismatches.append(f"join {row!r}: envoy {live_joined!r}")
    assert not mismatches, "\n".join(mismatches[:20])


def test_check_method_matches_envoy_1_40_http1_codec():
    # Recorded with tests/envoy's harness against Envoy 1.40 (HTTP/1.1).
    from meshauthz.envoy.hcm import check_method

    # (CONNECT's verdict is its target's: tests/adversarial/codec_corpus.jsonl)
    for m in ("GET", "HEAD", "PATCH", "PROPFIND", "SOURCE", "UNLINK", "CONNECT"):
        assert check_method(m) is None
    for m in ("FOO", "get", "Get", "M-SEARCH", "PRI", "QUERY"):
        refused = check_method(m)
        assert refused is not None and refused.rejected_status == 400
    assert check_method("QUERY", [("Content-Type", "text/plain")]) is None
