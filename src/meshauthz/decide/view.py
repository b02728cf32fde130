"""The request as the destination's filters see it.

Before any filter runs, the connection and the HTTP connection manager have
shaped the request: mTLS (PeerAuthentication) decides whether there is a peer
certificate at all, the codec checks the method and the path is normalized
(``meshauthz.envoy.hcm``, following the proxy's runtime flags), the codec
checks, trims and joins the header block (``meshauthz.envoy.codec``), Host
becomes ``:authority``, and the remote
address is derived from X-Forwarded-For as the destination's HCM is set up.
``request_view`` does all of it, once, for every way a request is decided.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshauthz.decide.cause import CodecRejected, MtlsRequired, PathRejected
from meshauthz.envoy.codec import CodecRefusal, Http1Request, http1_request
from meshauthz.envoy.hcm import check_method, normalize_path, remote_address
from meshauthz.envoy.rbac.evaluate import PeerCertificate, RbacInput
from meshauthz.envoy.request_headers import Downstream, request_headers
from meshauthz.translate.rule import PEER_PRINCIPAL_FILTER_STATE

if TYPE_CHECKING:
    from meshauthz.decide.engine import Prepared
    from meshauthz.decide.request import Request

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class RequestView:
    """One request at the destination, before its first filter.

    ``rejected``: refused before any filter (then the rest is not computed).
    ``peer_hidden``: mTLS is DISABLEd on the port, so a caller's certificate
    does not reach the filters. ``path`` is the path after normalization
    (``original_path`` as sent); ``headers`` is Envoy's header map (None for
    TCP); ``inp`` what an RBAC filter reads, without any filter's metadata."""

    request: Request
    rejected: MtlsRequired | PathRejected | CodecRejected | None
    peer_hidden: bool = False
    path: str = "/"
    headers: Headers | None = None
    inp: RbacInput | None = None

    @property
    def normalized(self) -> bool:
        return self.path != self.request.path


def request_view(p: Prepared, r: Request) -> RequestView:
    """``r`` as the filters of the destination ``p`` see it."""
    if p.mtls_mode == "STRICT" and r.plaintext:
        # the TLS handshake fails: no filter ever sees the request
        return RequestView(r, MtlsRequired(p.workload.key, p.port))
    peer_hidden = p.mtls_mode == "DISABLE"
    peer = None
    filter_state: dict[str, str] = {}
    if r.source_principal is not None and not peer_hidden:  # not plaintext
        # interned: the chain's sets of principals hold interned strings
        uri = sys.intern(p.principal_prefix + r.source_principal)
        peer = PeerCertificate(uri_sans=(uri,))
        if p.peer_filter_state:  # %DOWNSTREAM_PEER_URI_SAN% at HBONE termination
            filter_state[PEER_PRINCIPAL_FILTER_STATE] = uri
    headers: Headers | None = None
    path = r.path
    if r.protocol == "http":
        norm = check_method(r.method, r.headers) or normalize_path(
            r.path, p.path_options, p.runtime
        )
        if norm.path is None:
            return RequestView(
                r, PathRejected(norm.reason or "", norm.rejected_status or 400), peer_hidden
            )
        block = http1_request(r.method, r.path, r.host, r.headers)
        if isinstance(block, CodecRefusal):
            return RequestView(r, CodecRejected(block.reason, block.status), peer_hidden)
        path = norm.path
        headers = envoy_headers(p, r, path, peer, block)
    remote_ip = r.remote_ip
    if remote_ip is None:  # from X-Forwarded-For, as the destination's HCM is set up
        xff = [v for n, v in headers or () if n == "x-forwarded-for"]
        remote_ip = remote_address(
            r.source_ip, xff, p.xff.xff_num_trusted_hops, p.xff.use_remote_address
        )
    inp = RbacInput(
        direct_remote_ip=r.source_ip,
        remote_ip=remote_ip,
        source_ip=r.source_ip,
        destination_ip=p.workload.address,
        destination_port=p.port,
        requested_server_name=r.sni,
        peer=peer,
        headers=headers,
        dynamic_metadata={},
        filter_state=filter_state,
    )
    return RequestView(r, None, peer_hidden, path, headers, inp)


def envoy_headers(
    p: Prepared, r: Request, path: str, peer: PeerCertificate | None, block: Http1Request
) -> Headers:
    """The header map the first HTTP filter sees, pseudo headers first, from the
    header block as the codec passed it on (``block``)."""
    # HTTP/1.1's Host header is HTTP/2's :authority; Envoy keeps only the latter.
    sent = list(block.headers)
    headers = [(":authority", block.authority), (":method", r.method), (":path", path)]
    # What the connection manager adds, rewrites and drops before any filter:
    # :scheme, x-forwarded-proto, x-request-id, x-forwarded-client-cert (mTLS).
    downstream = Downstream(
        tls=peer is not None,
        peer=peer,
        local_uri_sans=(p.workload.identity.spiffe_uri,),
        direct_remote_ip=r.source_ip,
        remote_ip=r.remote_ip,
    )
    headers += request_headers(p.header_settings, downstream, sent)
    # A request given with a remote address stands for a proxy that saw it: the
    # address arrives as X-Forwarded-For unless the client sent one.
    if r.remote_ip is not None and not any(n == "x-forwarded-for" for n, _ in sent):
        headers.append(("x-forwarded-for", r.remote_ip))
    return tuple(headers)


__all__ = ["RequestView", "envoy_headers", "request_view"]
