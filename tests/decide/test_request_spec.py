"""The request format: friendly fields, clear errors with file and line."""

from __future__ import annotations

import json

import pytest

from meshauthz.decide.request_spec import load_request_file, request_from_data
from meshauthz.errors import InputError


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
            "protocol": "TCP",
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
