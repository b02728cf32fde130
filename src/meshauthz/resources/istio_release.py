"""The Istio release meshauthz models: the one place that says which.

Every behaviour meshauthz mirrors is pinned by Istio's own test data, copied
under tests/conformance/istio from this commit of istio/istio (its README says
so); this constant is what the README, ``meshauthz --version`` and the JSON
outputs report. Behaviour that changed before this release (a label istiod no
longer sets, for example) is flagged with the release it changed in.
"""

from __future__ import annotations


# a plain class, neither a dataclass nor a NamedTuple: ``meshauthz --version``
# imports this module, and the dataclasses module alone took a third of that
# command's time, typing (with re) another third
class IstioRelease:
    __slots__ = ("commit", "date", "version")

    def __init__(self, version: str, commit: str, date: str) -> None:
        self.version = version  # the release line: master between 1.30 and 1.31
        self.commit = commit  # istio/istio commit of the conformance data
        self.date = date

    def __str__(self) -> str:
        return f"{self.version} (istio/istio {self.commit[:12]}, {self.date})"


ISTIO = IstioRelease(
    version="1.31-dev",
    commit="86c9f01fd735fb01d8192f5bcaf0d424afb7f14c",
    date="2026-08-22",
)

__all__ = ["ISTIO", "IstioRelease"]
