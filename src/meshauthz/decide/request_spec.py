"""The request format of ``check --request`` and of test suites.

A request file holds one request or a list. Fields are friendly: ``from`` may
name a workload, ``to`` a workload or Service. They are resolved against the
mesh (``resolve.py``) into the Request that the filters see. The JSON schema
is ``meshauthz/schemas/request.schema.json``.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from msgspec import Struct

from meshauthz.errors import InputError, Location
from meshauthz.records import Record
from meshauthz.resources.yamlload import (
    Document,
    Path,
    dotted,
    parse_documents,
    parse_plain,
    read_source,
)

_FIELDS = {
    "from",
    "remoteIP",
    "to",
    "port",
    "protocol",
    "method",
    "path",
    "host",
    "headers",
    "jwt",
    "jwtLocation",
    "token",
    "sni",
    "name",
}
_FROM_FIELDS = {"principal", "namespace", "ip", "plaintext", "workload"}


class SourceSpec(Struct, frozen=True):
    workload: str | None = None  # "namespace/name" of a workload in the manifests
    principal: str | None = None  # "td/ns/x/sa/y" (a leading spiffe:// is accepted)
    namespace: str | None = None
    ip: str | None = None
    plaintext: bool = False


class JwtLocation(Struct, frozen=True):
    header: str | None = None
    prefix: str = ""
    param: str | None = None


class RequestSpec(Record, frozen=True):
    source: SourceSpec
    to: str  # "namespace/name" of a workload or Service, or a Service hostname
    to_port: int | None = None  # the ":port" written after "to" (a Service port)
    port: int | None = None  # the port the workload receives on
    protocol: str | None = None  # "http" | "tcp"; None: from the Service port
    remote_ip: str | None = None
    method: str = "GET"
    path: str = "/"
    host: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    jwt: dict[str, Any] | None = None
    jwt_location: JwtLocation | None = None
    token: str | None = None
    sni: str | None = None
    name: str | None = None
    location: Location | None = None
    # Where each field is written, when read with positions: an error about a
    # value (a name the mesh does not hold) names its field's line.
    fields: tuple[tuple[str, Location], ...] = ()

    provenance = ("location", "fields")

    def at(self, field: str) -> Location | None:
        """Where ``field`` is written, else where the request is."""
        for name, where in self.fields:
            if name == field:
                return where
        return self.location


def read_request_file(path: str) -> tuple[str, str]:
    """A request file's display name and text (``-``: standard input), read
    once: standard input and a pipe (``--request <(...)``) cannot be read again."""
    return read_source(
        path,
        "a request file",
        "split its requests into several files and check each",
    )


def load_request_file(path: str, *, positions: bool = True) -> list[RequestSpec]:
    """Read a YAML or JSON file holding one request or a list of requests."""
    display, text = read_request_file(path)
    return requests_from_text(text, display, positions=positions)


def requests_from_text(text: str, display: str, *, positions: bool = True) -> list[RequestSpec]:
    """The requests of a request file's text (``read_request_file``).

    ``positions=False`` reads the data alone (fast, for large files): a request
    then has no line (its location is the file); an error found while reading
    is reported after reading again with positions, so it names its line. A
    caller that finds an error later reads the text again with positions."""
    if not positions:
        try:
            return _requests(parse_plain(text, display), display)
        except InputError:
            pass  # again with positions, to say where
    return _requests(parse_documents(text, display), display)


def _requests(docs: list[Document], display: str) -> list[RequestSpec]:
    out: list[RequestSpec] = []
    for doc in docs:
        if isinstance(doc.data, list):
            if not doc.positions:  # read without positions: every request is at the document
                where = doc.location()
                for i, item in enumerate(doc.data):
                    out.append(_plain_request(item, where) or parse_request(doc, (i,)))
                continue
            out.extend(parse_request(doc, (i,)) for i in range(len(doc.data)))
        else:
            out.append(parse_request(doc, ()))
    if not out:  # nothing, null, comments, or an empty list: a run that checks nothing
        where = docs[0].location() if docs else Location(display, 1)
        raise InputError("the request file is empty: it holds no requests", location=where)
    return out


def request_from_data(data: Any, file: str = "<request>") -> RequestSpec:
    """Parse a request given as plain data (positions unknown)."""
    location = Location(file, 1)
    fast = _plain_request(data, location)
    if fast is not None:
        return fast
    return parse_request(Document(file, 0, 1, data, {}), ())


# The fields ``_plain_request`` reads; a request with any other is parsed by ``_Parser``.
_PLAIN_FIELDS = frozenset({"from", "to", "port", "method", "path", "host", "headers", "name"})
_PLAIN_FROM_FIELDS = frozenset({"principal", "namespace", "workload"})


def _plain_request(data: Any, location: Location) -> RequestSpec | None:
    """A well-formed request of the common fields (strings, a port number, single
    header values), parsed without ``_Parser``'s per-field bookkeeping: the same
    RequestSpec as ``_Parser.request``. None for anything else, which the parser
    reads (and reports, naming the field)."""
    if type(data) is not dict or not data.keys() <= _PLAIN_FIELDS or None in data.values():
        return None
    to = data.get("to")
    src = data.get("from")
    if type(to) is not str or ":" in to or to.count("/") != 1 or "" in to.split("/"):
        return None
    if type(src) is str:
        if src.count("/") != 1 or "" in src.split("/"):
            return None
        source = SourceSpec(workload=src)
    elif type(src) is dict and src and src.keys() <= _PLAIN_FROM_FIELDS:
        if not all(type(v) is str and v for v in src.values()):
            return None
        source = SourceSpec(
            workload=src.get("workload"),
            principal=src.get("principal"),
            namespace=src.get("namespace"),
        )
    else:
        return None
    port = data.get("port")
    if port is not None and (type(port) is not int or not 0 < port < 65536):
        return None
    method = data.get("method", "GET")
    path = data.get("path", "/")
    host = data.get("host")
    name = data.get("name")
    for v in (method, path, host, name):
        if v is not None and (type(v) is not str or not v):
            return None
    if method is None or path is None:
        return None
    headers: tuple[tuple[str, str], ...] = ()
    hs = data.get("headers")
    if hs is not None:
        if type(hs) is not dict or not all(type(n) is type(v) is str for n, v in hs.items()):
            return None
        headers = tuple((n.lower(), v) for n, v in hs.items())
    return RequestSpec(
        source=source,
        to=to,
        port=port,
        method=method,
        path=path,
        host=host,
        headers=headers,
        name=name,
        location=location,
    )


def parse_request(doc: Document, base: Path) -> RequestSpec:
    data: Any = doc.data
    for p in base:
        data = data[p]
    return _Parser(doc, base).request(data)


class _Parser:
    def __init__(self, doc: Document, base: Path) -> None:
        self.doc = doc
        self.base = base

    def fail(self, path: Path, message: str) -> InputError:
        return InputError(
            message, location=self.doc.location(self.base + path), field=dotted(path) or None
        )

    def string(self, value: Any, path: Path, *, empty_ok: bool = False) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {_kind(value)}")
        if not value and not empty_ok:
            raise self.fail(path, "must not be empty")
        return value

    def ip(self, value: Any, path: Path) -> str:
        s = self.string(value, path)
        try:
            return str(ipaddress.ip_address(s))
        except ValueError:
            raise self.fail(path, f"not an IP address: {s!r}") from None

    def request(self, data: Any) -> RequestSpec:
        if not isinstance(data, dict):
            raise self.fail((), f"a request must be a mapping, got {_kind(data)}")
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise self.fail(
                (unknown[0],),
                f'unknown field "{unknown[0]}"; known fields: {", ".join(sorted(_FIELDS))}',
            )
        self.no_nulls(data, ())
        if "from" not in data:
            raise self.fail(
                (),
                'a request needs "from" (a workload "namespace/name", or {principal, namespace, ip}, or {plaintext: true, ip})',
            )
        if "to" not in data:
            raise self.fail(
                (),
                'a request needs "to" (a workload or Service "namespace/name", optionally ":port")',
            )
        to = self.string(data["to"], ("to",))
        target, colon, written_port = to.partition(":")
        is_host = "/" not in target and "." in target  # <svc>.<ns>.svc.cluster.local
        if ":" in written_port or (
            not is_host and (target.count("/") != 1 or not all(target.split("/")))
        ):
            raise self.fail(
                ("to",),
                f'expected "namespace/name" or a Service hostname, optionally with ":port", got {to!r}',
            )
        to_port = self.port_text(written_port, ("to",)) if colon else None
        port = self.port(data["port"], ("port",)) if data.get("port") is not None else None
        protocol = None
        if data.get("protocol") is not None:
            protocol = self.string(data["protocol"], ("protocol",))
            if protocol not in ("http", "tcp"):
                raise self.fail(("protocol",), f'expected "http" or "tcp", got {protocol!r}')
        method = self.string(data.get("method", "GET"), ("method",))
        path = self.string(data.get("path", "/"), ("path",))
        host = self.string(data["host"], ("host",)) if data.get("host") is not None else None
        sni = (
            self.string(data["sni"], ("sni",), empty_ok=True)
            if data.get("sni") is not None
            else None
        )
        remote_ip = (
            self.ip(data["remoteIP"], ("remoteIP",)) if data.get("remoteIP") is not None else None
        )
        jwt = None
        if data.get("jwt") is not None:
            if not isinstance(data["jwt"], dict):
                raise self.fail(("jwt",), f"expected a mapping of claims, got {_kind(data['jwt'])}")
            jwt = data["jwt"]
        token = self.string(data["token"], ("token",)) if data.get("token") is not None else None
        if jwt is not None and token is not None:
            raise self.fail(
                ("token",), 'give either "jwt" (claims) or "token" (a raw JWT), not both'
            )
        name = self.string(data["name"], ("name",)) if data.get("name") is not None else None
        return RequestSpec(
            source=self.source(data["from"]),
            to=target,
            to_port=to_port,
            port=port,
            protocol=protocol,
            remote_ip=remote_ip,
            method=method,
            path=path,
            host=host,
            headers=self.headers(data.get("headers")),
            jwt=jwt,
            jwt_location=self.jwt_location(data.get("jwtLocation")),
            token=token,
            sni=sni,
            name=name,
            location=self.doc.location(self.base),
            fields=tuple((k, self.doc.location((*self.base, k))) for k in data)
            if self.doc.positions
            else (),
        )

    def no_nulls(self, data: dict[str, Any], path: Path) -> None:
        """A field written without a value (``host:`` in YAML, ``null``): the
        schema has no null values; a field not meant is left out."""
        for key, value in data.items():
            if value is None:
                raise self.fail((*path, key), "no value (null): give one, or leave the field out")

    def port(self, value: Any, path: Path) -> int:
        """A port number, written as a number (as the schema says: not "9080";
        80.0 is the number 80 to JSON Schema, so it is here)."""
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
            raise self.fail(path, f"expected a port number 1-65535, got {_kind(value)}")
        return value

    def port_text(self, text: str, path: Path) -> int:
        """The port written after ``to``'s ``:``: digits without a leading zero."""
        if not text.isascii() or not text.isdigit() or text.startswith("0"):
            raise self.fail(path, f"expected a port number 1-65535 after ':', got {text!r}")
        return self.port(int(text), path)

    def source(self, value: Any) -> SourceSpec:
        if isinstance(value, str):
            if value.count("/") != 1 or not all(value.split("/")):
                raise self.fail(("from",), f'expected a workload "namespace/name", got {value!r}')
            return SourceSpec(workload=value)
        if not isinstance(value, dict):
            raise self.fail(("from",), f"expected a workload name or a mapping, got {_kind(value)}")
        unknown = sorted(set(value) - _FROM_FIELDS)
        if unknown:
            raise self.fail(
                ("from", unknown[0]),
                f'unknown field "{unknown[0]}"; known fields: {", ".join(sorted(_FROM_FIELDS))}',
            )
        self.no_nulls(value, ("from",))
        plaintext = value.get("plaintext", False)
        if not isinstance(plaintext, bool):
            raise self.fail(("from", "plaintext"), f"expected true or false, got {plaintext!r}")
        ip = self.ip(value["ip"], ("from", "ip")) if value.get("ip") is not None else None
        principal = value.get("principal")
        if principal is not None:
            principal = self.string(principal, ("from", "principal"))
            if plaintext:
                raise self.fail(
                    ("from", "principal"),
                    "a plaintext caller has no principal (no client certificate)",
                )
        namespace = (
            self.string(value["namespace"], ("from", "namespace"))
            if value.get("namespace") is not None
            else None
        )
        workload = value.get("workload")
        if workload is not None:
            workload = self.string(workload, ("from", "workload"))
            if workload.count("/") != 1 or not all(workload.split("/")):
                raise self.fail(
                    ("from", "workload"), f'expected a workload "namespace/name", got {workload!r}'
                )
        return SourceSpec(
            workload=workload, principal=principal, namespace=namespace, ip=ip, plaintext=plaintext
        )

    def headers(self, value: Any) -> tuple[tuple[str, str], ...]:
        if value is None:
            return ()
        if not isinstance(value, dict):
            raise self.fail(
                ("headers",), f"expected a mapping of header names to values, got {_kind(value)}"
            )
        out: list[tuple[str, str]] = []
        for name, v in value.items():
            items = v if isinstance(v, list) else [v]
            for i, item in enumerate(items):
                p: Path = ("headers", name, i) if isinstance(v, list) else ("headers", name)
                out.append((name.lower(), self.string(item, p, empty_ok=True)))
        return tuple(out)

    def jwt_location(self, value: Any) -> JwtLocation | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(("jwtLocation",), f"expected a mapping, got {_kind(value)}")
        unknown = sorted(set(value) - {"header", "prefix", "param"})
        if unknown:
            raise self.fail(
                ("jwtLocation", unknown[0]),
                f'unknown field "{unknown[0]}"; use header (with prefix) or param',
            )
        self.no_nulls(value, ("jwtLocation",))
        header = value.get("header")
        param = value.get("param")
        if (header is None) == (param is None):
            raise self.fail(("jwtLocation",), 'give exactly one of "header" or "param"')
        if header is not None:
            prefix = value.get("prefix", "")
            return JwtLocation(
                header=self.string(header, ("jwtLocation", "header")).lower(),
                prefix=self.string(prefix, ("jwtLocation", "prefix"), empty_ok=True),
            )
        if "prefix" in value:
            raise self.fail(
                ("jwtLocation", "prefix"), "a prefix applies to a header, not a query parameter"
            )
        return JwtLocation(param=self.string(param, ("jwtLocation", "param")))


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f'a string ("{value}")'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "null" if value is None else type(value).__name__
