"""The request as Envoy's HTTP/1.1 codec passes it on, through ``check``'s
path (``Decider`` and ``request_view``), against a real Envoy 1.40's answers
(``codec_corpus.jsonl``, recorded by codec_probe.py): the status of every
request the codec refuses, and the headers the filters see of every other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec.structs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshauthz.decide.cause import MtlsRequired, Stage
from meshauthz.decide.engine import Decider, Prepared
from meshauthz.decide.request import Request, resolve
from meshauthz.decide.request_spec import request_from_data
from meshauthz.decide.view import request_view
from meshauthz.envoy import codec as codec_module
from meshauthz.envoy.codec import ENVOY_DEFAULT_LIMITS, CodecRefusal, Http1Request, http1_request
from meshauthz.mesh.loading import load_mesh
from tests.adversarial.codec_probe import load_corpus

ROWS = load_corpus()

WORKLOADS = """\
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: ns, labels: {app: api}}
spec: {serviceAccountName: api, containers: [{name: c, ports: [{containerPort: 80}]}]}
"""


def _deny(rule: str) -> str:
    """A DENY AuthorizationPolicy on ``api`` with the one rule ``rule`` (YAML flow)."""
    return f"""\
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny, namespace: ns}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  action: DENY
  rules: [{rule}]
"""


def _deny_hosts(host: str) -> str:
    return _deny(f'{{to: [{{operation: {{hosts: ["{host}"]}}}}]}}')


def _mesh(tmp_path: Path, policy: str = "") -> tuple[Decider, Request]:
    (tmp_path / "m.yaml").write_text(WORKLOADS + policy)
    snap = load_mesh([str(tmp_path / "m.yaml")]).snapshot
    req = resolve(request_from_data({"to": "ns/api:80", "from": {"plaintext": True}}), snap)
    return Decider(snap), req


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> tuple[Prepared, Request]:
    d, req = _mesh(tmp_path_factory.mktemp("codec"))
    return d.prepare(req.destination, req.port, "http"), req


def _as_sent(base: Request, row: dict[str, Any]) -> Request:
    return msgspec.structs.replace(
        base,
        method=row["method"],
        path=row["path"],
        host=row["host"],
        headers=tuple((n, v) for n, v in row["headers"]),
    )


def _outcome(p: Prepared, r: Request) -> tuple[int | None, dict[str, list[str]] | None]:
    view = request_view(p, r)
    if view.rejected is not None:
        assert not isinstance(view.rejected, MtlsRequired)  # a plaintext caller, PERMISSIVE
        return view.rejected.status, None
    seen: dict[str, list[str]] = {}
    for name, value in view.headers or ():
        if name != "x-request-id":
            seen.setdefault(name, []).append(value)
    return None, seen


def test_corpus_covers_refusals_and_joins() -> None:
    assert {r["status"] for r in ROWS} == {None, 400, 404, 431, 501}
    assert len(ROWS) > 1300


@pytest.mark.parametrize("case", sorted({r["case"] for r in ROWS}))
def test_codec_as_envoy(sidecar: tuple[Prepared, Request], case: str) -> None:
    p, base = sidecar
    wrong = [
        (r["host"], r["headers"][:3], r["status"], r["seen"], got)
        for r in ROWS
        if r["case"] == case and (got := _outcome(p, _as_sent(base, r))) != (r["status"], r["seen"])
    ]
    assert not wrong, f"{len(wrong)} rows differ from Envoy, e.g. {str(wrong[:3])[:3000]}"


def _verdict(tmp_path: Path, policy: str, **request: Any) -> str:
    d, base = _mesh(tmp_path, policy)
    return d.decide(msgspec.structs.replace(base, **request)).verdict


def test_whitespace_does_not_escape_a_deny(tmp_path: Path) -> None:
    # the review's wrong ALLOWs: Envoy trims the value and the Host, then the DENY matches
    user = _deny('{when: [{key: "request.headers[x-user]", values: ["mallory"]}]}')
    assert _verdict(tmp_path, user, headers=(("x-user", " mallory "),)) == "DENY"
    assert _verdict(tmp_path, user, headers=(("x-user", "\tmallory\t"),)) == "DENY"
    hosts = _deny_hosts("admin.example.com")
    assert _verdict(tmp_path, hosts, host="admin.example.com ") == "DENY"
    assert _verdict(tmp_path, hosts, headers=(("host", " admin.example.com"),)) == "DENY"


def test_two_hosts_are_joined_as_envoy_joins_them(tmp_path: Path) -> None:
    # Envoy sees ":authority: good.example.com,admin.example.com": a DENY on the
    # second Host alone no longer matches, one on the joined value does
    two = (("host", "good.example.com"), ("host", "admin.example.com"))
    assert _verdict(tmp_path, _deny_hosts("good.example.com"), headers=two) == "ALLOW"
    joined = _deny_hosts("good.example.com,admin.example.com")
    assert _verdict(tmp_path, joined, headers=two) == "DENY"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ((("content-length", "-1"),), 400),
        ((("transfer-encoding", "chunked"), ("content-length", "0")), 400),
        ((("x y", "1"),), 400),
        ((("x-user", "a\x00b"),), 400),
        ((("x-user", "a\nb"),), 400),
        ((("transfer-encoding", "gzip"),), 501),
        (tuple((f"x-h{i}", "1") for i in range(100)), 431),
    ],
)
def test_a_refused_request_is_denied_with_envoys_status(
    tmp_path: Path, headers: tuple[tuple[str, str], ...], status: int
) -> None:
    d, base = _mesh(tmp_path)
    decision = d.decide(msgspec.structs.replace(base, headers=headers))
    assert (decision.verdict, decision.status) == ("DENY", status)
    assert "codec refuses the request" in decision.reason


# --- the memo of header blocks is the line-by-line check ------------------------------------

_BLOCKS = [
    (),
    (("x-user", "alice"),),
    (("x-user", "a" * 30_000), ("x-other", "b" * 31_000)),  # near the 60 KiB limit alone
    (("bad name", "x"),),  # refused whatever the request line
    (("content-length", "1"), ("transfer-encoding", "chunked")),
]


@given(
    block=st.sampled_from(_BLOCKS),
    path_length=st.integers(min_value=1, max_value=62_000),
    host=st.sampled_from(["api", "api:80", "bad host"]),
)
@settings(max_examples=300, deadline=None)
def test_memoized_block_verdicts_are_the_line_by_line_ones(
    block: tuple[tuple[str, str], ...], path_length: int, host: str
) -> None:
    # the request line counts towards the block's size: a block accepted alone
    # is refused (431) behind a long enough path, with the first refusal's reason
    path = "/" + "p" * (path_length - 1)
    expected = codec_module._checked(len("GET") + len(path) + 14, host, block, ENVOY_DEFAULT_LIMITS)
    assert http1_request("GET", path, host, block) == expected


def test_a_path_pushes_an_accepted_block_over_the_limit() -> None:
    block = (("x-user", "a" * 1000),)
    size = codec_module._block("api", block, ENVOY_DEFAULT_LIMITS)[1]
    room = 60 * 1024 - size - len("GET") - 14  # the path that fills the limit exactly
    assert isinstance(http1_request("GET", "/" * room, "api", block), Http1Request)
    over = http1_request("GET", "/" * (room + 1), "api", block)
    assert over == CodecRefusal(431, "request line and headers over 60 KiB")
    # the same block behind a short path, after: still accepted
    assert isinstance(http1_request("GET", "/", "api", block), Http1Request)


def test_an_absolute_url_sets_the_authority_a_hosts_rule_sees(tmp_path: Path) -> None:
    # Envoy takes :authority from the URL (the codec corpus's "absolute target"
    # rows): a DENY on its host matches, one on the Host header sent beside it not
    url = "http://other.example/x"
    assert _verdict(tmp_path, _deny_hosts("other.example"), path=url, host="h") == "DENY"
    assert _verdict(tmp_path, _deny_hosts("h"), path=url, host="h") == "ALLOW"
    # before: refused with 400 as "not an absolute path", no filter ran
    d, base = _mesh(tmp_path)
    decision = d.decide(msgspec.structs.replace(base, method="OPTIONS", path="*"))
    assert (decision.verdict, decision.status) == ("DENY", 404)


def test_a_trace_says_where_an_absolute_urls_authority_came_from(tmp_path: Path) -> None:
    d, base = _mesh(tmp_path, _deny_hosts("h"))
    r = msgspec.structs.replace(base, path="http://other.example/a/../x", host="h")
    decision = d.decide(r, trace=True)
    assert decision.verdict == "ALLOW"  # the DENY names the Host sent, which Envoy drops
    steps = [s.message for s in decision.trace if s.stage is Stage.NORMALIZATION]
    assert steps == [
        "absolute URL 'http://other.example/a/../x': Envoy takes :authority 'other.example' "
        "from it, in place of the Host header, and :path '/x' (BASE normalization)"
    ]
