"""istiod's feature flags that change what ambient mode enforces.

Each defaults to istiod's default (pilot/pkg/features/ambient.go at the
commit of tests/conformance/istio).
"""

from __future__ import annotations

from msgspec import Struct

# Environment variable names, as istiod reads them.
DRY_RUN_FLAG = "AMBIENT_ENABLE_DRY_RUN_AUTHORIZATION_POLICY"
AUTO_ALLOW_WAYPOINT_FLAG = "PILOT_AUTO_ALLOW_WAYPOINT_POLICY"
LAYERED_WAYPOINT_FLAG = "ENABLE_LAYERED_WAYPOINT_AUTHORIZATION_POLICIES"


class AmbientFlags(Struct, frozen=True):
    # features.EnableWdsDryRunAuthzPol: dry-run policies are sent to ztunnel
    # (which only logs them); off, they are not sent and get an UnsupportedValue status.
    dry_run_authorization: bool = False
    # features.DefaultAllowFromWaypoint: an implicit ALLOW of the waypoint's
    # identities is attached to every workload behind a waypoint.
    auto_allow_waypoint: bool = False
    # features.EnableLayeredWaypointAuthorizationPolicies: selector policies on
    # the waypoint's own pods are enforced at its HBONE termination.
    layered_waypoint: bool = False

    @staticmethod
    def from_names(names: dict[str, bool]) -> AmbientFlags:
        """From ``{ENV_NAME: value}``; unknown names raise ValueError."""
        known = {
            DRY_RUN_FLAG: "dry_run_authorization",
            AUTO_ALLOW_WAYPOINT_FLAG: "auto_allow_waypoint",
            LAYERED_WAYPOINT_FLAG: "layered_waypoint",
        }
        kwargs = {}
        for name, value in names.items():
            if name not in known:
                raise ValueError(f"unknown ambient flag {name!r}; known: {', '.join(known)}")
            kwargs[known[name]] = value
        return AmbientFlags(**kwargs)


DEFAULT_FLAGS = AmbientFlags()

__all__ = [
    "AUTO_ALLOW_WAYPOINT_FLAG",
    "DEFAULT_FLAGS",
    "DRY_RUN_FLAG",
    "LAYERED_WAYPOINT_FLAG",
    "AmbientFlags",
]
