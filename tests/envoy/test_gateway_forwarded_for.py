"""What a gateway sends on as X-Forwarded-For, against a real Envoy 1.40
configured as istiod configures a gateway's HCM (``use_remote_address``, with
0 and 1 trusted hops): the client's entries as sent, joined with ",", then its
peer's address, or Envoy's own address when the peer is 127.0.0.1 (another
loopback address such as 127.0.0.3 is appended as it is). The destination of a
request through a gateway takes the last entry as the remote address
(``meshauthz.decide.gateway_hop``, which reach's rows through a gateway
follow). A Lua filter dumps the header as the filters see it; the router
sends the same header map on.
"""

from __future__ import annotations

from typing import Any

from meshauthz.envoy.request_headers import forwarded_for
from meshauthz.translate.hcm_headers import gateway_headers

from .harness import Probe, Site, running
from .test_added_headers import _lua, _parse

# The connection's local address as the PROXY header gives it; Envoy appends
# its own (the machine's) address for 127.0.0.1, not this one.
LOCAL = "10.10.0.10"
PEERS = ["203.0.113.7", "127.0.0.3", "127.0.0.1"]
SENT: list[list[str]] = [[], ["198.51.100.4"], ["198.51.100.4, 10.1.1.1"], ["a", "b"]]


def test_what_a_gateway_appends(test_ca: Any) -> None:
    sites = [Site(f"gateway-{n}", "http", [_lua()], headers=gateway_headers(n)) for n in (0, 1)]
    probes = [
        Probe(
            site.name,
            source_ip=peer,
            dest_ip=LOCAL,
            headers=[("x-forwarded-for", v) for v in sent],
        )
        for site in sites
        for peer in PEERS
        for sent in SENT
    ]
    with running(sites, test_ca) as envoy:
        observed = envoy.run(probes)
    own: set[str] = set()  # what Envoy appends for 127.0.0.1: its own address
    for probe, obs in zip(probes, observed, strict=True):
        assert obs.status == 200 and obs.body is not None, (probe, obs)
        got = [v for n, v in _parse(obs.body) if n == "x-forwarded-for"]
        sent = [v for _, v in probe.headers]
        if probe.source_ip == "127.0.0.1":
            own.add(got[0].rsplit(",", 1)[-1])
            assert got == [forwarded_for(sent, probe.source_ip, next(iter(own)))], (probe, got)
        else:
            assert got == [forwarded_for(sent, probe.source_ip, LOCAL)], (probe, got)
    assert len(own) == 1 and own != {"127.0.0.1"} and own != {LOCAL}, own
