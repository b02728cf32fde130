"""The request as the destination's filters see it.

Before any filter runs, the connection and the HTTP connection manager have
shaped the request: mTLS (PeerAuthentication) decides whether there is a peer
certificate at all, the codec checks the method and reads the request target
(``meshauthz.envoy.request_target``: an absolute URL sets ``:authority`` and
``:scheme``), the path is normalized (``meshauthz.envoy.hcm``, following the
proxy's runtime flags), the codec
checks, trims and joins the header block (``meshauthz.envoy.codec``), Host
becomes ``:authority``, and the remote
address is derived from X-Forwarded-For as the destination's HCM is set up.
``request_view`` does all of it, once, for every way a request is decided.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from msgspec import Struct

from meshauthz.decide.cause import CodecRejected, MtlsRequired, PathRejected
from meshauthz.envoy.codec import CodecRefusal, Http1Request, forget_blocks, http1_request
from meshauthz.envoy.hcm import (
    NormalizedPath,
    check_method,
    normalize_path,
    remote_address,
)
from meshauthz.envoy.rbac.evaluate import PeerCertificate, RbacInput
from meshauthz.envoy.request_headers import FORWARDED_FOR, Downstream, request_headers
from meshauthz.envoy.request_target import Target, request_target
from meshauthz.translate.rule import PEER_PRINCIPAL_FILTER_STATE

if TYPE_CHECKING:
    from meshauthz.decide.engine import Prepared
    from meshauthz.decide.request import Request

Headers = tuple[tuple[str, str], ...]


class RequestView(Struct, frozen=True):
    """One request at the destination, before its first filter.

    ``rejected``: refused before any filter (then the rest is not computed).
    ``peer_hidden``: mTLS is DISABLEd on the port, so a caller's certificate
    does not reach the filters. ``path`` is the path after normalization
    (``original_path`` as sent); ``headers`` is Envoy's header map (None for
    TCP); ``inp`` what an RBAC filter reads, without any filter's metadata.
    ``complete`` is False for a lean view (``request_view``'s ``lean``), whose
    headers are the pseudo headers alone."""

    request: Request
    rejected: MtlsRequired | PathRejected | CodecRejected | None
    peer_hidden: bool = False
    path: str = "/"
    headers: Headers | None = None
    inp: RbacInput | None = None
    complete: bool = True

    @property
    def normalized(self) -> bool:
        return self.path != self.request.path


# A stream of requests repeats its paths, header blocks and callers: what a view
# computes is the one implementation's answer, kept by its inputs. The codec
# keeps its verdicts on header blocks itself (``meshauthz.envoy.codec``); the
# rest depends on the destination's settings too, so it is kept per destination
# (``ViewMemo``), keyed by strings only.
MEMO_SIZE = 8192
# Per destination, smaller: a mesh's every destination has its own (beside its chain).
DESTINATION_MEMO_SIZE = 512


def _codec(
    method: str, path: str, host: str, headers: Headers
) -> tuple[NormalizedPath | None, Http1Request | CodecRefusal | None]:
    """The codec's verdicts on the request line's method and on the header block
    (None for the block when the method is refused: it is not read)."""
    refused = check_method(method, headers)
    if refused is not None:
        return refused, None
    return None, http1_request(method, path, host, headers)


@functools.lru_cache(maxsize=MEMO_SIZE)
def _peer(uri: str) -> PeerCertificate:
    # interned: the chain's sets of principals hold interned strings
    return PeerCertificate(uri_sans=(sys.intern(uri),))


class ViewMemo:
    """One destination's normalized paths and added headers, by their inputs."""

    __slots__ = ("added", "paths")

    def __init__(self) -> None:
        self.paths: dict[str, NormalizedPath] = {}
        self.added: dict[tuple[str | None, str, str | None, Headers], tuple[Headers, str]] = {}


# What a lean view's header map holds: the request line and Host, which the
# connection manager neither adds nor rewrites.
PSEUDO_HEADERS = frozenset([":authority", ":method", ":path"])


def request_view(p: Prepared, r: Request, lean: bool = False) -> RequestView:
    """``r`` as the filters of the destination ``p`` see it.

    ``lean``: for a reader of the pseudo headers (``PSEUDO_HEADERS``), the peer,
    addresses and ports only (a generated chain that reads no other header):
    the headers the connection manager adds, rewrites and drops are not worked
    out, and the view's header map holds the pseudo headers alone. All else,
    rejections included, is as in the complete view."""
    if p.mtls_mode == "STRICT" and r.plaintext:
        # the TLS handshake fails: no filter ever sees the request
        return RequestView(r, MtlsRequired(p.workload.key, p.port))
    peer_hidden = p.mtls_mode == "DISABLE"
    peer = None
    uri = None
    filter_state: dict[str, str] = {}
    if r.source_principal is not None and not peer_hidden:  # not plaintext
        peer = _peer(p.principal_prefix + r.source_principal)
        uri = peer.uri_sans[0]
        if p.peer_filter_state:  # %DOWNSTREAM_PEER_URI_SAN% at HBONE termination
            filter_state[PEER_PRINCIPAL_FILTER_STATE] = uri
    headers: Headers | None = None
    path = r.path
    remote_ip = r.remote_ip
    if r.protocol == "http":
        memo = p.view_memo
        refused, block = _codec(r.method, r.path, r.host, r.headers)
        target: Target | None = None  # another form than "/path": it may set more
        target_path: str | None = r.path
        if refused is None and (r.method == "CONNECT" or not r.path.startswith("/")):
            got_target = request_target(r.method, r.path)
            if isinstance(got_target, NormalizedPath):
                refused = got_target
            else:
                target, target_path = got_target, got_target.path
        if refused is not None:
            norm = refused
        elif target_path is None:  # CONNECT: no :path
            norm = NormalizedPath(r.path)
        else:
            kept = memo.paths.get(target_path)
            if kept is None:
                kept = normalize_path(target_path, p.path_options, p.runtime)
                _keep(memo.paths, target_path, kept)
            norm = kept
        if norm.path is None:
            return RequestView(
                r, PathRejected(norm.reason or "", norm.rejected_status or 400), peer_hidden
            )
        if isinstance(block, CodecRefusal):
            return RequestView(r, CodecRejected(block.reason, block.status), peer_hidden)
        assert block is not None
        path = norm.path
        # HTTP/1.1's Host header is HTTP/2's :authority; Envoy keeps only the
        # latter, which an absolute URL or CONNECT's target sets instead.
        authority = (":authority", (target and target.authority) or block.authority)
        pseudo: Headers = (
            (authority, (":method", r.method))
            if target_path is None
            else (authority, (":method", r.method), (":path", path))
        )
        if lean:
            headers = pseudo
            if remote_ip is None:
                remote_ip = _forwarded_remote(p, r.source_ip, block.headers)
        else:
            key = (uri, r.source_ip, r.remote_ip, block.headers)
            got = memo.added.get(key)
            if got is None:
                got = _added_headers(p, peer, r.source_ip, r.remote_ip, block.headers)
                _keep(memo.added, key, got)
            added = got[0]
            if target is not None and target.scheme is not None:
                # the URL's: the connection manager keeps a :scheme already set
                added = ((":scheme", target.scheme), *added[1:])
            headers = pseudo + added
            remote_ip = got[1]
    elif remote_ip is None:  # no headers: the socket's peer
        remote_ip = _forwarded_remote(p, r.source_ip, ())
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
    # over TCP there are no headers: a lean view is the complete one
    return RequestView(r, None, peer_hidden, path, headers, inp, not lean or headers is None)


def forget_inputs(prepared: Iterable[Prepared] = ()) -> None:
    """Empty what views keep by their inputs: the codec's verdicts on header
    blocks, the peers' certificates, and ``prepared``'s normalized paths and
    added headers; the next view of a request is then computed afresh (for
    whoever times or checks that: the benchmark, the tests)."""
    forget_blocks()
    _peer.cache_clear()
    for p in prepared:
        p.view_memo = ViewMemo()


def _keep(memo: dict[Any, Any], key: Any, value: Any) -> None:
    if len(memo) >= DESTINATION_MEMO_SIZE:
        memo.clear()  # bounded: a long stream of distinct requests starts afresh
    memo[key] = value


def _added_headers(
    p: Prepared,
    peer: PeerCertificate | None,
    source_ip: str,
    remote_ip: str | None,
    sent: Headers,
) -> tuple[Headers, str]:
    """The headers after the pseudo headers, for the client's ``sent`` ones: what
    the connection manager adds, rewrites and drops before any filter (:scheme,
    x-forwarded-proto, x-request-id, x-forwarded-client-cert with mTLS); and the
    remote address (given, or derived from X-Forwarded-For as the HCM is set up)."""
    downstream = Downstream(
        tls=peer is not None,
        peer=peer,
        local_uri_sans=(p.workload.identity.spiffe_uri,),
        direct_remote_ip=source_ip,
        remote_ip=remote_ip,
        local_ip=p.workload.address,
    )
    # A request given with a remote address stands for a proxy that saw it: the
    # address arrives as X-Forwarded-For unless the client sent one.
    if remote_ip is not None and not any(n == FORWARDED_FOR for n, _ in sent):
        sent = (*sent, (FORWARDED_FOR, remote_ip))
    headers = request_headers(p.header_settings, downstream, sent)
    if remote_ip is None:
        remote_ip = _forwarded_remote(p, source_ip, sent)
    return tuple(headers), remote_ip


def _forwarded_remote(p: Prepared, source_ip: str, sent: Headers) -> str:
    """The remote address from X-Forwarded-For as sent, as the destination's
    HCM is set up (a request given no remote address)."""
    xff = [v for n, v in sent if n == FORWARDED_FOR]
    return remote_address(source_ip, xff, p.xff.xff_num_trusted_hops, p.xff.use_remote_address)


__all__ = ["PSEUDO_HEADERS", "RequestView", "ViewMemo", "forget_inputs", "request_view"]
