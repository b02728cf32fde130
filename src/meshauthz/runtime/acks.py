"""Did a sidecar take the configuration delivered to it? Its Envoy's admin ``/stats`` says.

Envoy keeps, per subscription (LDS, CDS, each SDS secret, each ECDS filter),
``<prefix>.version_text``: the ``version_info`` of the last update it accepted.
An update it refuses leaves that as it was and counts ``<prefix>.update_rejected``
(the resources are invalid: a regex RE2 refuses, a bad duration, a certificate
that does not parse; ECDS also counts ``config_fail``) or
``<prefix>.update_failure`` (the file is not a DiscoveryResponse). Envoy then
keeps enforcing what it had: measured with Envoy 1.40's file-based
subscriptions, which is what ``FileDelivery`` feeds it.

So the subscription is confirmed when ``version_text`` is the version delivered,
and refused when one of those counters has grown since the delivery.
"""

from __future__ import annotations

import contextlib
import re
import urllib.error
import urllib.request

from msgspec import Struct

from meshauthz.runtime.envoy_config import ResourceType

FAILURE_COUNTERS = ("update_rejected", "update_failure", "config_fail")
_QUERY = "(version_text|update_rejected|update_failure|config_fail)$"
_STAT = re.compile(r"^(?P<name>\S+): (?P<value>.*)$")

Subscription = tuple[ResourceType, str]
"""A resource Envoy fetches on its own: LDS and CDS (name ``""``), one SDS secret, one ECDS filter."""


def stat_prefix(sub: Subscription) -> str:
    """Where Envoy counts the updates of a subscription."""
    t, name = sub
    if t is ResourceType.LISTENER:
        return "listener_manager.lds"
    if t is ResourceType.CLUSTER:
        return "cluster_manager.cds"
    if t is ResourceType.SECRET:
        return f"sds.{name}"
    return f"extension_config_discovery.http_filter.{name}"  # the mesh's ECDS are HTTP filters


class EnvoyStats(Struct, frozen=True):
    """The update stats of one Envoy, as read once."""

    values: dict[str, str]

    def version(self, sub: Subscription) -> str | None:
        v = self.values.get(stat_prefix(sub) + ".version_text")
        return v.strip('"') if v is not None else None

    def failures(self, sub: Subscription) -> int:
        total = 0
        for c in FAILURE_COUNTERS:
            with contextlib.suppress(ValueError):
                total += int(self.values.get(f"{stat_prefix(sub)}.{c}", "0"))
        return total


def read_stats(ip: str, admin_port: int, timeout: float = 1.0) -> EnvoyStats | None:
    """The update stats, or None when the admin endpoint does not answer."""
    url = f"http://{ip}:{admin_port}/stats?filter={_QUERY}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = r.read().decode(errors="replace")
    except (OSError, urllib.error.URLError):
        return None
    values = {}
    for line in body.splitlines():
        m = _STAT.match(line)
        if m:
            values[m["name"]] = m["value"]
    return EnvoyStats(values)


class Expected(Struct):
    """What one sidecar should hold: per subscription, the version delivered and
    its Envoy's failure count just before that delivery (0 for an Envoy not yet
    answering: it starts counting from 0)."""

    versions: dict[Subscription, str]
    baseline: dict[Subscription, int]


class Verdict(Struct, frozen=True):
    confirmed: bool
    refused: dict[Subscription, str]  # subscription -> why
    pending: tuple[Subscription, ...]


def judge(stats: EnvoyStats, expected: Expected) -> Verdict:
    refused: dict[Subscription, str] = {}
    pending = []
    for sub, version in sorted(expected.versions.items()):
        held = stats.version(sub)
        if held == version:
            continue
        failures = stats.failures(sub)
        # A restart sets the counts back to 0: then only the deadline tells a refusal.
        if failures > expected.baseline.get(sub, 0):
            counters = ", ".join(
                f"{stat_prefix(sub)}.{c}"
                for c in FAILURE_COUNTERS
                if stats.values.get(f"{stat_prefix(sub)}.{c}", "0") not in ("0", "")
            )
            refused[sub] = f"version {version} refused ({counters}); still holds version {held}"
        else:
            pending.append(sub)
    return Verdict(not refused and not pending, refused, tuple(pending))


def describe(sub: Subscription) -> str:
    t, name = sub
    kind = {
        ResourceType.LISTENER: "listeners (LDS)",
        ResourceType.CLUSTER: "clusters (CDS)",
        ResourceType.SECRET: f"secret {name} (SDS)",
        ResourceType.EXTENSION_CONFIG: f"filter {name} (ECDS)",
    }
    return kind[t]


__all__ = [
    "EnvoyStats",
    "Expected",
    "Subscription",
    "Verdict",
    "describe",
    "judge",
    "read_stats",
    "stat_prefix",
]
