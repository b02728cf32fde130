"""The request headers Envoy's HTTP connection manager adds, rewrites or drops
before the first HTTP filter runs.

RBAC header matchers read the request after the HCM's
``ConnectionManagerUtility::mutateRequestHeaders``; `request_headers` gives
that view for Envoy 1.40 from the HCM options that matter
(`HeaderSettings`), the downstream connection (`Downstream`) and the headers
the client sent. In order:

1. ``keep-alive``, ``proxy-connection`` (`HOP_BY_HOP`) and the internal-only
   ``x-envoy-*`` headers (`INTERNAL_ONLY`) are dropped: with no
   ``internal_address_config`` (Envoy 1.40's default) no request is internal. An *edge* request
   (``use_remote_address: true``) also loses `EDGE_ONLY` and gets
   ``x-envoy-external-address`` set to the remote address; it and a request
   through an HCM with tracing lose ``x-envoy-decorator-operation``.
2. ``x-forwarded-proto``: with ``use_remote_address`` and no trusted hops the
   client's value is replaced; otherwise it is kept as sent (repeats joined
   with ``,``; an empty value counts as sent). When absent it is ``https``
   over TLS and ``http`` otherwise.
3. ``:scheme`` is ``x-forwarded-proto`` lowercased when that is ``http`` or
   ``https`` in any case, else ``https`` over TLS and ``http`` otherwise (an
   HTTP/1.1 client cannot send ``:scheme``).
4. ``x-request-id`` (``generate_request_id``): generated when absent or empty,
   and on an edge request unless ``preserve_external_request_id``; a client's
   value is kept otherwise (repeats joined with ``,``). With tracing on and
   the UUID extension's ``use_request_id_for_trace_sampling``, an id of 36
   characters whose first 8 are hex digits carries the trace decision in its
   15th character: ``a`` (forced), ``b`` (client), ``9`` (sampled) are kept;
   any other character becomes ``b`` if ``x-client-trace-id`` is present
   (client sampling) or ``9`` if the first 8 digits as a number, modulo 10000,
   fall under the random sampling rate (``1%`` is below 100); otherwise the id
   is left as it is. On an edge request whose id is kept
   (``preserve_external_request_id``) the 15th character of a 36-character id
   is first reset to ``4``: the client's trace decision is not trusted.
5. ``x-forwarded-client-cert`` (``forward_client_cert_details``): without a
   client certificate it is removed (except ALWAYS_FORWARD_ONLY); with one,
   APPEND_FORWARD appends ``,`` and this hop's element to the client's value,
   SANITIZE_SET replaces it, FORWARD_ONLY keeps it, SANITIZE removes it. The
   element is ``By=<local URI SAN>`` (one per local URI SAN), ``Hash=<SHA-256
   of the peer certificate>``, then as ``set_current_client_cert_details``
   says, in this order: ``Cert="<URL-encoded PEM>"``, ``Subject="<subject>"``
   (even when empty), ``URI=<peer URI SAN>`` each (``URI=`` when there is
   none), ``DNS=<peer DNS SAN>`` each; joined with ``;``.

Values that cannot be known offline get deterministic, well-formed stand-ins,
derived from the request and the connection: a generated ``x-request-id`` is a
version-4 UUID (then subject to the trace rule above, as Envoy's own would
be); ``Hash=`` is 64 lowercase hex digits; ``Cert=`` is a URL-encoded PEM
block. Matchers on presence, on prefixes and suffixes made of the known parts
(``By=``, ``URI=``, ``DNS=``, ``Subject=``), and on client-sent values decide
as Envoy does; an exact match on a stand-in does not.

6. ``x-forwarded-for`` on an edge request: the client's lines joined with
   ``,``, then the peer's address (`appended_peer`: Envoy's own address when
   the peer is 127.0.0.1 or ::1), one header where the client's first was;
   the remote address is derived from the client's entries alone
   (``envoy.hcm.remote_address``). Otherwise it is left as sent.

Not modelled: ``internal_address_config`` (internal requests),
``Connection``/``Upgrade``/``TE`` handling,
``set_current_client_cert_details.chain``, HTTP/2 requests (which carry a
``:scheme`` of their own): requests are HTTP/1.1, as meshauthz's request
model is.

Every rule above was observed with Envoy 1.40 (tests/envoy/test_added_headers.py,
tests/envoy/test_gateway_forwarded_for.py); the ::1 case of rule 6 is from
Envoy's source (``Network::Utility::isLoopbackAddress``).
"""

from __future__ import annotations

import base64
import functools
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

from msgspec import Struct

from meshauthz.digests import blake2b, sha256
from meshauthz.envoy.hcm import XffSettings, remote_address
from meshauthz.envoy.proto_json import get
from meshauthz.envoy.rbac.evaluate import PeerCertificate

ForwardClientCert = Literal[
    "SANITIZE", "FORWARD_ONLY", "APPEND_FORWARD", "SANITIZE_SET", "ALWAYS_FORWARD_ONLY"
]

REQUEST_ID = "x-request-id"
FORWARDED_PROTO = "x-forwarded-proto"
FORWARDED_FOR = "x-forwarded-for"
CLIENT_CERT = "x-forwarded-client-cert"
CLIENT_TRACE_ID = "x-client-trace-id"
EXTERNAL_ADDRESS = "x-envoy-external-address"

#: Dropped from every request.
HOP_BY_HOP = frozenset(["keep-alive", "proxy-connection"])
#: Dropped from every request that is not internal (all of them, without an
#: ``internal_address_config``).
INTERNAL_ONLY = frozenset(
    [
        "x-envoy-internal",
        "x-envoy-force-trace",
        "x-envoy-retry-on",
        "x-envoy-retry-grpc-on",
        "x-envoy-max-retries",
        "x-envoy-upstream-alt-stat-name",
        "x-envoy-upstream-rq-timeout-ms",
        "x-envoy-upstream-rq-per-try-timeout-ms",
        "x-envoy-upstream-rq-timeout-alt-response",
        "x-envoy-expected-rq-timeout-ms",
        "x-envoy-ip-tags",
        "x-envoy-original-url",
        "x-envoy-hedge-on-per-try-timeout",
        "x-envoy-retriable-status-codes",
        "x-envoy-retriable-header-names",
    ]
)
#: Also dropped from an edge request (``use_remote_address: true``).
EDGE_ONLY = frozenset(
    [
        "x-envoy-original-path",
        "x-envoy-downstream-service-cluster",
        "x-envoy-downstream-service-node",
    ]
)
# Read (as the span's operation name) and dropped when tracing is on, and
# dropped from an edge request.
DECORATOR_OPERATION = "x-envoy-decorator-operation"
# The headers dropped, by (edge request, tracing on).
_DROP = {
    (edge, tracing): HOP_BY_HOP
    | INTERNAL_ONLY
    | (EDGE_ONLY | {EXTERNAL_ADDRESS} if edge else frozenset())
    | ({DECORATOR_OPERATION} if edge or tracing else frozenset())
    for edge in (False, True)
    for tracing in (False, True)
}
# Headers of the HCM's inline set that this module rewrites: the HTTP/1 codec
# joins a client's repeats of them into one value with ",".
_JOINED = (REQUEST_ID, FORWARDED_PROTO, CLIENT_CERT)

# The 15th character of a UUID request id holds the trace decision.
_TRACE_AT = 14
_TRACE_FORCED, _TRACE_CLIENT, _TRACE_SAMPLED, _NO_TRACE = "a", "b", "9", "4"
_HEX = frozenset("0123456789abcdefABCDEF")


class ClientCertDetails(Struct, frozen=True):
    """``set_current_client_cert_details`` (``chain`` is not modelled)."""

    subject: bool = False
    cert: bool = False
    dns: bool = False
    uri: bool = False


class Tracing(Struct, frozen=True):
    """The HCM's ``tracing`` sampling percentages (Envoy's defaults: 100)."""

    client_sampling: float = 100.0
    random_sampling: float = 100.0
    overall_sampling: float = 100.0


class HeaderSettings(Struct, frozen=True):
    """The HCM options that decide the headers the filters see (Envoy's defaults)."""

    xff: XffSettings = XffSettings(use_remote_address=False, xff_num_trusted_hops=0)
    forward_client_cert: ForwardClientCert = "SANITIZE"
    client_cert_details: ClientCertDetails = ClientCertDetails()
    generate_request_id: bool = True
    preserve_external_request_id: bool = False
    tracing: Tracing | None = None
    # request_id_extension: envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig
    pack_trace_reason: bool = True
    use_request_id_for_trace_sampling: bool = True

    @staticmethod
    def from_hcm(hcm: Mapping[str, Any]) -> HeaderSettings:
        """The options of an HttpConnectionManager's JSON (``typed_config``),
        absent fields at Envoy's defaults, in either JSON spelling; the inverse of `to_hcm`."""
        forward = get(hcm, "forward_client_cert_details", "SANITIZE")
        if forward not in get_args(ForwardClientCert):
            raise ValueError(f"unknown forward_client_cert_details {forward!r}")
        details = get(hcm, "set_current_client_cert_details") or {}
        rid = get(get(hcm, "request_id_extension"), "typed_config") or {}
        tracing = get(hcm, "tracing")

        def percent(key: str) -> float:
            return float(get(get(tracing, key), "value", 100.0))

        return HeaderSettings(
            xff=XffSettings.from_hcm(hcm),
            forward_client_cert=forward,
            client_cert_details=ClientCertDetails(
                subject=bool(get(details, "subject", False)),
                cert=bool(get(details, "cert", False)),
                dns=bool(get(details, "dns", False)),
                uri=bool(get(details, "uri", False)),
            ),
            generate_request_id=bool(get(hcm, "generate_request_id", True)),
            preserve_external_request_id=bool(get(hcm, "preserve_external_request_id", False)),
            tracing=(
                None
                if tracing is None
                else Tracing(
                    percent("client_sampling"),
                    percent("random_sampling"),
                    percent("overall_sampling"),
                )
            ),
            pack_trace_reason=bool(get(rid, "pack_trace_reason", True)),
            use_request_id_for_trace_sampling=bool(
                get(rid, "use_request_id_for_trace_sampling", True)
            ),
        )

    def to_hcm(self) -> dict[str, object]:
        """These options as fields of Envoy's HttpConnectionManager JSON."""
        d = self.client_cert_details
        out: dict[str, object] = {
            "use_remote_address": self.xff.use_remote_address,
            "xff_num_trusted_hops": self.xff.xff_num_trusted_hops,
            "forward_client_cert_details": self.forward_client_cert,
            "set_current_client_cert_details": {
                "subject": d.subject,
                "cert": d.cert,
                "dns": d.dns,
                "uri": d.uri,
            },
            "generate_request_id": self.generate_request_id,
            "preserve_external_request_id": self.preserve_external_request_id,
            "request_id_extension": {
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.request_id.uuid.v3."
                    "UuidRequestIdConfig",
                    "pack_trace_reason": self.pack_trace_reason,
                    "use_request_id_for_trace_sampling": self.use_request_id_for_trace_sampling,
                }
            },
        }
        if self.tracing is not None:
            out["tracing"] = {
                "client_sampling": {"value": self.tracing.client_sampling},
                "random_sampling": {"value": self.tracing.random_sampling},
                "overall_sampling": {"value": self.tracing.overall_sampling},
            }
        return out


class Downstream(Struct, frozen=True):
    """The connection the request arrived on.

    ``peer`` is the client certificate (None: plaintext, or TLS without one);
    ``local_uri_sans`` the URI SANs of this Envoy's own certificate (XFCC
    ``By=``); ``remote_ip``, when given, overrides the remote address the HCM
    derives from ``direct_remote_ip`` and X-Forwarded-For."""

    tls: bool
    peer: PeerCertificate | None = None
    local_uri_sans: tuple[str, ...] = ()
    direct_remote_ip: str = "127.0.0.1"
    remote_ip: str | None = None
    # this Envoy's own address, appended for a loopback peer on an edge
    # request (None: the peer's own, for callers that never have one)
    local_ip: str | None = None


# The peers for which Envoy appends its own address to X-Forwarded-For
# (``isLoopbackAddress``): 127.0.0.1 itself, not all of 127.0.0.0/8, observed
# with Envoy 1.40; and ::1, from Envoy's source/common/network/utility.cc,
# which compares an IPv6 peer with in6addr_loopback (the tests' Envoy runs
# bind IPv4 only).
LOOPBACK = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def appended_peer(peer: str, local_ip: str) -> str:
    """The address a ``use_remote_address`` HCM appends to X-Forwarded-For."""
    return local_ip if ipaddress.ip_address(peer) in LOOPBACK else peer


def forwarded_for(sent: Sequence[str], peer: str, local_ip: str) -> str:
    """The X-Forwarded-For an edge request's filters see (and its upstream
    gets): the client's lines joined with ",", then the peer appended."""
    return ",".join([*sent, appended_peer(peer, local_ip)])


def request_headers(
    settings: HeaderSettings, downstream: Downstream, headers: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The client's ``headers`` (names lowercase, no pseudo headers, no
    ``host``) as the filters see them, with ``:scheme`` first."""
    return list(_request_headers(settings, downstream, tuple(headers)))


# (memoized by the request view, per destination: meshauthz.decide.view)
def _request_headers(
    settings: HeaderSettings, downstream: Downstream, sent: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    edge = settings.xff.use_remote_address
    drop = _DROP[edge, settings.tracing is not None]
    kept = [(n, v) for n, v in sent if n not in drop]
    joined: dict[str, str] = {}
    for name, value in kept:
        if name in _JOINED:
            joined[name] = joined[name] + "," + value if name in joined else value
    scheme = "https" if downstream.tls else "http"

    proto = joined.get(FORWARDED_PROTO)
    if proto is None or (edge and settings.xff.xff_num_trusted_hops == 0):
        proto = scheme
    joined[FORWARDED_PROTO] = proto

    rid = joined.get(REQUEST_ID)
    if settings.generate_request_id and (
        not rid or (edge and not settings.preserve_external_request_id)
    ):
        rid = _stand_in_request_id(downstream, sent)
    if rid is not None:
        if settings.tracing is not None and settings.use_request_id_for_trace_sampling:
            traced = any(n == CLIENT_TRACE_ID for n, _ in sent)
            rid = _trace_reason(rid, settings, traced, edge)
        joined[REQUEST_ID] = rid

    xfcc = _client_cert(settings, downstream, joined.get(CLIENT_CERT))
    if xfcc is None:
        joined.pop(CLIENT_CERT, None)
    else:
        joined[CLIENT_CERT] = xfcc

    if edge:
        xff = [v for n, v in kept if n == FORWARDED_FOR]
        local = downstream.local_ip or downstream.direct_remote_ip
        joined[FORWARDED_FOR] = forwarded_for(xff, downstream.direct_remote_ip, local)

    # A header the client sent keeps its first position; added ones go last.
    out: list[tuple[str, str]] = []
    for name, value in kept:
        if name not in _JOINED and not (edge and name == FORWARDED_FOR):
            out.append((name, value))
        elif name in joined:
            out.append((name, joined.pop(name)))
    out += [(n, joined[n]) for n in (FORWARDED_FOR, *_JOINED) if n in joined]
    if edge:
        out.append((EXTERNAL_ADDRESS, _remote(settings, downstream, sent)))
    lowered = proto.lower()
    return ((":scheme", lowered if lowered in ("http", "https") else scheme), *out)


def _remote(settings: HeaderSettings, d: Downstream, sent: Sequence[tuple[str, str]]) -> str:
    if d.remote_ip is not None:
        return d.remote_ip
    xff = [v for n, v in sent if n == FORWARDED_FOR]
    return remote_address(
        d.direct_remote_ip, xff, settings.xff.xff_num_trusted_hops, settings.xff.use_remote_address
    )


def _stand_in_request_id(d: Downstream, sent: Sequence[tuple[str, str]]) -> str:
    """A version-4 UUID derived from the request, standing in for Envoy's random one."""
    key = "\n".join(
        [d.direct_remote_ip, *(d.peer.uri_sans if d.peer else ()), *(f"{n}:{v}" for n, v in sent)]
    )
    h = blake2b(key.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


def _trace_reason(rid: str, settings: HeaderSettings, client_trace: bool, edge: bool) -> str:
    """``rid`` after the UUID extension packs the trace decision into it."""
    if not settings.pack_trace_reason or len(rid) != 36:
        return rid
    if edge:  # an external client's trace decision is not trusted: cleared first
        rid = rid[:_TRACE_AT] + _NO_TRACE + rid[_TRACE_AT + 1 :]
    if not set(rid[:8]) <= _HEX:
        return rid
    tracing = settings.tracing
    assert tracing is not None
    value = int(rid[:8], 16) % 10000
    mark = rid[_TRACE_AT]
    if mark not in (_TRACE_FORCED, _TRACE_CLIENT, _TRACE_SAMPLED):
        if client_trace and _enabled(tracing.client_sampling, value):
            mark = _TRACE_CLIENT
        elif _enabled(tracing.random_sampling, value):
            mark = _TRACE_SAMPLED
        else:
            return rid
    if not _enabled(tracing.overall_sampling, value):
        return rid
    return rid[:_TRACE_AT] + mark + rid[_TRACE_AT + 1 :]


def _enabled(percent: float, value: int) -> bool:
    """Envoy's runtime ``featureEnabled`` for a percentage, against ``value`` of 10000."""
    return value < round(percent * 100)


def _client_cert(settings: HeaderSettings, d: Downstream, sent: str | None) -> str | None:
    mode = settings.forward_client_cert
    if mode == "ALWAYS_FORWARD_ONLY":
        return sent
    if mode == "SANITIZE" or d.peer is None:
        return None
    if mode == "FORWARD_ONLY":
        return sent
    element = client_cert_element(settings.client_cert_details, d)
    if mode == "APPEND_FORWARD" and sent:
        return sent + "," + element
    return element


def client_cert_element(details: ClientCertDetails, d: Downstream) -> str:
    """This hop's XFCC element for the peer certificate of ``d``."""
    peer = d.peer
    assert peer is not None
    parts = [f"By={uri}" for uri in d.local_uri_sans]
    digest = _certificate_digest(peer)
    parts.append("Hash=" + digest.hex())
    if details.cert:
        parts.append(f'Cert="{_stand_in_pem(digest)}"')
    if details.subject:
        parts.append(f'Subject="{peer.subject}"')
    if details.uri:
        parts += [f"URI={u}" for u in peer.uri_sans] or ["URI="]
    if details.dns:
        parts += [f"DNS={n}" for n in peer.dns_sans]
    return ";".join(parts)


@functools.lru_cache(maxsize=1024)
def _certificate_digest(peer: PeerCertificate) -> bytes:
    """Stands in for the SHA-256 of the peer certificate's DER."""
    text = "\n".join([peer.subject, *peer.uri_sans, "", *peer.dns_sans])
    return sha256(text.encode("utf-8", "surrogateescape")).digest()


def _stand_in_pem(digest: bytes) -> str:
    """A URL-encoded PEM block as Envoy writes ``Cert=``, around a synthetic body."""
    body = base64.b64encode(digest * 4).decode().replace("+", "%2B").replace("/", "%2F")
    body = body.replace("=", "%3D")
    return f"-----BEGIN%20CERTIFICATE-----%0A{body}%0A-----END%20CERTIFICATE-----%0A"


__all__ = [
    "CLIENT_CERT",
    "EDGE_ONLY",
    "FORWARDED_FOR",
    "FORWARDED_PROTO",
    "HOP_BY_HOP",
    "INTERNAL_ONLY",
    "LOOPBACK",
    "REQUEST_ID",
    "ClientCertDetails",
    "Downstream",
    "ForwardClientCert",
    "HeaderSettings",
    "Tracing",
    "appended_peer",
    "client_cert_element",
    "forwarded_for",
    "request_headers",
]
