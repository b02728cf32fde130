"""Questions about every request: a symbolic engine over the built filters.

For a destination workload, port and protocol, the chain the decision path
runs (``meshauthz.decide.runner``, over the same ``Prepared`` filters) is
encoded as formulas over the request variables (``space``): who calls
(an mTLS identity or plaintext), from which addresses, the SNI, and for HTTP
the method, the normalized path, the Host, the headers the matchers name and,
behind a RequestAuthentication, the token and the claims the matchers read
(``jwt``). Each matcher model class of ``meshauthz.envoy.rbac.model`` has one case
(``matchers``); regexes and uri templates are translated exactly or not at
all (``regex``). What cannot be encoded exactly makes the answer "unknown"
with the reason (``Unencodable``), never a guess. Every answer that says two
sides differ carries a witness request, decided by the concrete path as
``check`` decides it before it is reported (``witness``).

The library:

    compare_meshes(old: MeshSnapshot, new: MeshSnapshot, *, callers="any",
                   ext_authz="deny", max_classes=8) -> Comparison
        ``Comparison.opened`` / ``.closed``: ``Change``s (destination,
        description, witness request, ``old``/``new`` ``End``: decision,
        stage, policy, rule); ``.unknown``: destinations not answered, with
        the reason; ``.equivalent``; ``.to_json()``.
    meshauthz.symbolic.redundant.redundant(snapshot, *, ext_authz="deny")
        -> RedundancyReport, and ``always(snapshot, *, ext_authz="deny")`` ->
        list[Always] (always-denies / always-allows per workload, port and
        protocol): see that module's docstring.
"""

from meshauthz.symbolic.chain import End, SymbolicChain, encode_chain
from meshauthz.symbolic.compare import (
    Callers,
    Change,
    Comparer,
    Comparison,
    Unknown,
    compare_meshes,
    destinations,
)
from meshauthz.symbolic.regex import Unencodable
from meshauthz.symbolic.witness import Destination, WitnessMismatch

__all__ = [
    "Callers",
    "Change",
    "Comparer",
    "Comparison",
    "Destination",
    "End",
    "SymbolicChain",
    "Unencodable",
    "Unknown",
    "WitnessMismatch",
    "compare_meshes",
    "destinations",
    "encode_chain",
]
