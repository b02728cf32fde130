"""The request format: friendly fields, clear errors with file and line."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshauthz.decide.request_spec import (
    RequestSpec,
    _plain_request,
    load_request_file,
    parse_request,
    request_from_data,
)
from meshauthz.errors import InputError, Location
from meshauthz.resources.yamlload import Document


def test_a_full_request(write):
    path = write(
        "r.yaml",
        """\
from: default/frontend
to: default/backend:80
method: POST
path: /api/v1/data?x=1
host: backend.default.svc.cluster.local
headers:
  X-Trace: abc
  x-multi: [a, b]
jwt: {iss: https://issuer, sub: alice, aud: [x, y], nested: {k: [1, 2]}}
jwtLocation: {header: x-token, prefix: "Bearer "}
remoteIP: 1.2.3.4
sni: backend.default
""",
    )
    (r,) = load_request_file(path)
    assert r.source.workload == "default/frontend" and (r.to, r.to_port, r.port) == (
        "default/backend",
        80,
        None,
    )
    assert (r.method, r.path, r.remote_ip, r.sni) == (
        "POST",
        "/api/v1/data?x=1",
        "1.2.3.4",
        "backend.default",
    )
    assert r.headers == (("x-trace", "abc"), ("x-multi", "a"), ("x-multi", "b"))
    assert r.jwt["nested"] == {"k": [1, 2]} and r.jwt_location.header == "x-token"
    assert r.location.line == 1


def test_defaults_and_peer_forms():
    r = request_from_data(
        {"from": {"principal": "cluster.local/ns/a/sa/b", "namespace": "a"}, "to": "ns/w"}
    )
    assert (r.method, r.path, r.port, r.protocol) == ("GET", "/", None, None)
    p = request_from_data(
        {
            "from": {"plaintext": True, "ip": "10.0.0.1"},
            "to": "ns/w",
            "port": 8080,
            "protocol": "tcp",
        }
    )
    assert (
        p.source.plaintext and p.source.ip == "10.0.0.1" and p.protocol == "tcp" and p.port == 8080
    )


def test_a_list_of_requests_in_json(write):
    path = write(
        "r.json",
        json.dumps([{"from": "a/b", "to": "c/d"}, {"from": "a/b", "to": "c/d", "method": "PUT"}]),
    )
    assert [r.method for r in load_request_file(path)] == ["GET", "PUT"]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("to: a/b\n", 1, 'needs "from"'),
        ("from: a/b\nto: nowhere\n", 2, 'expected "namespace/name"'),
        ("from: a/b\nto: a/b\nmethods: GET\n", 3, 'unknown field "methods"'),
        ("from: a/b\nto: a/b\nport: 70000\n", 3, "port number"),
        ("from: a/b\nto: a/b\nremoteIP: 1.2.3\n", 3, "not an IP address"),
        (
            "from: {plaintext: true, principal: x}\nto: a/b\n",
            1,
            "plaintext caller has no principal",
        ),
        ("from: a/b\nto: a/b\njwt: {sub: x}\ntoken: abc\n", 4, "not both"),
        ("from: a/b\nto: a/b\nheaders: {x: 1}\n", 3, "expected a string"),
        (
            "from: a/b\nto: a/b\njwtLocation: {param: t, prefix: B}\n",
            3,
            "prefix applies to a header",
        ),
    ],
)
def test_errors_name_file_line_and_field(write, text, line, message):
    path = write("r.yaml", text)
    with pytest.raises(InputError) as e:
        load_request_file(path)
    assert e.value.location.file == path and e.value.location.line == line
    assert message in str(e.value)


def test_schema_file_is_valid_json():
    from importlib.resources import files

    schema = json.loads(files("meshauthz").joinpath("schemas/request.schema.json").read_text())
    assert set(schema["$defs"]["request"]["properties"]) >= {
        "from",
        "to",
        "jwt",
        "jwtLocation",
        "token",
        "sni",
    }


# --- the plain-data fast path is the parser ------------------------------------------------

_NAMES = st.sampled_from(["default/frontend", "ns/w", "a/", "/b", "a/b/c", "ab", "", "x.y.svc"])
_STRINGS = st.sampled_from(["GET", "get", "/", "/api?x=1", "", " ", "spiffe://td/ns/a/sa/b"])
_ODD = st.one_of(st.none(), st.booleans(), st.integers(-1, 70000), st.lists(_STRINGS, max_size=2))
_VALUES = st.one_of(_STRINGS, _NAMES, _ODD)


_GOOD = {
    "to": st.sampled_from(
        ["ns/w", "default/backend", "default/backend:80", "b.ns.svc.cluster.local"]
    ),
    "port": st.sampled_from([80, 8080, 65535, 1]),
    "method": st.sampled_from(["GET", "POST", "get"]),
    "path": st.sampled_from(["/", "/api?x=1", "/a/../b", "x"]),
    "host": st.sampled_from(["a.example", "b:80", " "]),
    "name": st.sampled_from(["case 1", "n"]),
    "protocol": st.sampled_from(["http", "tcp"]),
    "sni": st.sampled_from(["", "x"]),
    "headers": st.dictionaries(
        st.sampled_from(["X-A", "x-a", "Host", "x-forwarded-for"]), _STRINGS, max_size=3
    ),
}
_GOOD_FROM = st.one_of(
    st.sampled_from(["default/frontend", "ns/w"]),
    st.fixed_dictionaries(
        {},
        optional={
            "principal": st.sampled_from(["td/ns/a/sa/b", "spiffe://td/ns/a/sa/b"]),
            "namespace": st.sampled_from(["a", "b"]),
            "workload": st.sampled_from(["default/frontend", "a/b"]),
        },
    ),
)


@st.composite
def _request_data(draw: Any) -> Any:
    """Request dicts near the fast path's edge: mostly well-formed, and each way to miss it."""

    def value(good: Any, bad: Any) -> Any:
        return draw(good) if draw(st.integers(0, 9)) else draw(bad)

    source = value(
        _GOOD_FROM,
        st.one_of(
            st.dictionaries(
                st.sampled_from(["principal", "namespace", "workload", "ip", "plaintext", "x"]),
                _VALUES,
                max_size=3,
            ),
            _NAMES,
            _ODD,
        ),
    )
    data: dict[str, Any] = {"from": source, "to": value(_GOOD["to"], st.one_of(_NAMES, _ODD))}
    fields = [*_GOOD, "bogus"]
    for f in draw(st.lists(st.sampled_from(fields), unique=True, max_size=6)):
        if f == "headers":
            bad = st.one_of(
                st.dictionaries(
                    st.sampled_from(["X-A", "Host"]),
                    st.one_of(st.lists(_STRINGS, max_size=2), st.none(), _ODD),
                    min_size=1,
                    max_size=2,
                ),
                _ODD,
            )
        elif f == "port":
            bad = st.one_of(st.integers(-1, 65536), st.sampled_from(["80", 80.0]), _ODD)
        else:
            bad = _VALUES
        data[f] = value(_GOOD.get(f, _VALUES), bad)
    if draw(st.integers(0, 19)) == 0:
        del data[draw(st.sampled_from(["from", "to"]))]
    return data


def _parsed(data: Any) -> RequestSpec | InputError:
    try:
        return parse_request(Document("<request>", 0, 1, data, {}), ())
    except InputError as e:
        return e


PLAIN_TALLY: list[Any] = []


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(data=_request_data())
def test_plain_data_parses_as_the_parser_does(data: Any) -> None:
    """request_from_data, whichever way it reads the dict, gives the parser's
    RequestSpec (with its location) or the parser's error (message, field, line)."""
    want = _parsed(data)
    if _plain_request(data, Location("<request>", 1)) is not None:
        PLAIN_TALLY.append(data)
    try:
        got: RequestSpec | InputError = request_from_data(data)
    except InputError as e:
        got = e
    if isinstance(want, InputError):
        assert isinstance(got, InputError), (data, got)
        assert (str(got), got.field, got.location) == (str(want), want.field, want.location)
    else:
        assert got == want and got.location == want.location, data


def test_the_plain_corpus_reached_the_fast_path() -> None:
    if not PLAIN_TALLY:
        pytest.skip("the corpus did not run")
    assert len(PLAIN_TALLY) > 100


def test_the_fast_path_is_taken_for_the_common_requests() -> None:
    """The benchmark's and the README's request shapes do not fall back to the parser."""
    loc = Location("<request>", 1)
    for data in (
        {"from": {"principal": "td/ns/a/sa/b"}, "to": "ns1/svc1", "port": 8080, "method": "GET",
         "path": "/x"},
        {"from": "default/frontend", "to": "default/backend", "path": "/api/v1/data"},
        {"from": {"workload": "a/b", "namespace": "a"}, "to": "a/c", "headers": {"X-A": "1"},
         "host": "c.a.svc.cluster.local", "name": "n"},
    ):  # fmt: skip
        fast = _plain_request(data, loc)
        assert fast is not None and fast == _parsed(data)


def test_a_request_file_read_without_positions_parses_as_with_them(write: Any) -> None:
    reqs = [
        {"from": "default/frontend", "to": "default/backend", "port": 80, "path": "/a"},
        {"from": {"principal": "td/ns/a/sa/b"}, "to": "default/backend:80", "sni": "x"},
        {"from": {"plaintext": True, "ip": "10.0.0.1"}, "to": "ns/w", "headers": {"A": ["1"]}},
    ]
    path = write("r.json", json.dumps(reqs))
    fast = load_request_file(path, positions=False)
    assert fast == load_request_file(path)
    assert all(r.location == Location(path, 1) for r in fast)
