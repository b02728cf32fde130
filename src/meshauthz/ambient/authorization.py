"""ztunnel's ``Authorization``: the L4 policy istiod sends to ztunnel.

One model, two spellings:

* istiod's protobuf (``pkg/workloadapi/security/authorization.proto``, the same
  file as ztunnel's ``proto/authorization.proto``) marshalled as YAML, the form
  of Istio's conversion goldens: ``groups`` -> ``rules`` -> ``matches``,
  addresses as base64 bytes plus a prefix length, defaults omitted;
* ztunnel's own serde form (``src/rbac.rs`` ``Authorization``, camelCase), the
  form of its config dump: ``rules`` -> clauses -> matches as nested lists,
  ``scope``/``action`` as ``Global``/``Allow``, string matches as
  ``{"Exact": "x"}`` / ``{"Presence": []}``, networks as ``"10.0.0.0/24"``.

Our names follow ztunnel: a policy has rules (OR), a rule has clauses (AND),
a clause has matches (OR).
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from msgspec import Struct

from meshauthz.records import Record

Scope = Literal["GLOBAL", "NAMESPACE", "WORKLOAD_SELECTOR"]
Action = Literal["ALLOW", "DENY"]
StringMatchKind = Literal["exact", "prefix", "suffix", "presence"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SCOPE_DUMP: dict[Scope, str] = {
    "GLOBAL": "Global",
    "NAMESPACE": "Namespace",
    "WORKLOAD_SELECTOR": "WorkloadSelector",
}
_ACTION_DUMP: dict[Action, str] = {"ALLOW": "Allow", "DENY": "Deny"}
_MATCH_DUMP: dict[StringMatchKind, str] = {
    "exact": "Exact",
    "prefix": "Prefix",
    "suffix": "Suffix",
    "presence": "Presence",
}


class StringMatch(Struct, frozen=True):
    kind: StringMatchKind
    value: str = ""

    def matches(self, check: str) -> bool:
        """rbac.rs ``StringMatch::matches``."""
        if self.kind == "prefix":
            return check.startswith(self.value)
        if self.kind == "suffix":
            return check.endswith(self.value)
        if self.kind == "exact":
            return check == self.value
        return check != ""

    def matches_principal(self, check: str) -> bool:
        """rbac.rs ``matches_principal``: "Istio matches all assumes spiffe://
        prefix" -- the identity without it matches nothing, even presence."""
        if not check.startswith("spiffe://"):
            return False
        return self.matches(check.removeprefix("spiffe://"))

    def proto(self) -> dict[str, Any]:
        return {"presence": {}} if self.kind == "presence" else {self.kind: self.value}

    def dump(self) -> dict[str, Any]:
        return {"Presence": []} if self.kind == "presence" else {_MATCH_DUMP[self.kind]: self.value}

    def __str__(self) -> str:
        if self.kind == "presence":
            return "*"
        if self.kind == "prefix":
            return self.value + "*"
        if self.kind == "suffix":
            return "*" + self.value
        return self.value


class Address(Struct, frozen=True):
    """``security.Address``: the address bytes and a prefix length, kept as
    written; ztunnel compares with the network they make (``IpNet::contains``)."""

    ip: IPAddress
    length: int

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(f"{self.ip}/{self.length}", strict=False)

    def contains(self, ip: IPAddress) -> bool:
        return ip.version == self.ip.version and ip in self.network

    def proto(self) -> dict[str, Any]:
        return {"address": base64.b64encode(self.ip.packed).decode(), "length": self.length}

    def dump(self) -> str:
        return f"{self.ip}/{self.length}"


class ServiceAccountMatch(Struct, frozen=True):
    namespace: str
    service_account: str

    def proto(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "serviceAccount": self.service_account}

    dump = proto

    def __str__(self) -> str:
        return f"{self.namespace}/{self.service_account}"


class Match(Struct, frozen=True):
    """``security.Match`` / rbac.rs ``RbacMatch``: fields AND, values OR."""

    namespaces: tuple[StringMatch, ...] = ()
    not_namespaces: tuple[StringMatch, ...] = ()
    service_accounts: tuple[ServiceAccountMatch, ...] = ()
    not_service_accounts: tuple[ServiceAccountMatch, ...] = ()
    principals: tuple[StringMatch, ...] = ()
    not_principals: tuple[StringMatch, ...] = ()
    source_ips: tuple[Address, ...] = ()
    not_source_ips: tuple[Address, ...] = ()
    destination_ips: tuple[Address, ...] = ()
    not_destination_ips: tuple[Address, ...] = ()
    destination_ports: tuple[int, ...] = ()
    not_destination_ports: tuple[int, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not any(getattr(self, n) for n in self.__struct_fields__)

    def _items(self) -> list[tuple[str, tuple[Any, ...]]]:
        return [(_camel(n), getattr(self, n)) for n in self.__struct_fields__]

    def proto(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, values in self._items():
            if values:
                out[key] = [v if isinstance(v, int) else v.proto() for v in values]
        return out

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, values in self._items():
            if values:
                out[key] = [v if isinstance(v, int) else v.dump() for v in values]
        return out


Clause = tuple[Match, ...]
Rule = tuple[Clause, ...]


class Authorization(Record, frozen=True):
    name: str
    namespace: str
    scope: Scope
    action: Action
    rules: tuple[Rule, ...] = ()
    dry_run: bool = False
    # Where it came from, for explanations: "AuthorizationPolicy ns/name",
    # "PeerAuthentication ns/name", or istiod's own policies.
    source: str = ""
    # For an AuthorizationPolicy: the index of each rule in the policy's own
    # rules (istiod drops ALLOW rules with HTTP fields, so they may differ).
    origin_rules: tuple[int, ...] = ()

    provenance = ("source", "origin_rules")

    def origin_rule(self, index: int) -> int:
        return self.origin_rules[index] if index < len(self.origin_rules) else index

    @property
    def key(self) -> str:
        """rbac.rs ``to_key`` and istiod's ``ResourceName``: ``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    def proto(self) -> dict[str, Any]:
        """istiod's protobuf as YAML/JSON (protojson: defaults omitted)."""
        out: dict[str, Any] = {"name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        if self.scope != "GLOBAL":  # enum value 0
            out["scope"] = self.scope
        if self.action != "ALLOW":  # enum value 0
            out["action"] = self.action
        if self.rules:
            out["groups"] = [
                {"rules": [{"matches": [m.proto() for m in c]} for c in r]} if r else {}
                for r in self.rules
            ]
        if self.dry_run:
            out["dryRun"] = True
        return out

    def dump(self) -> dict[str, Any]:
        """ztunnel's config dump entry (serde, ``deny_unknown_fields``)."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "scope": _SCOPE_DUMP[self.scope],
            "action": _ACTION_DUMP[self.action],
            "rules": [[[m.dump() for m in c] for c in r] for r in self.rules],
            "dryRun": self.dry_run,
        }


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


# --------------------------------------------------------------------------- reading


class DumpError(ValueError):
    """A config-dump policy that ztunnel's serde would refuse."""


_SCOPE_READ = {v: k for k, v in _SCOPE_DUMP.items()}
_ACTION_READ = {v: k for k, v in _ACTION_DUMP.items()}
_MATCH_READ = {v: k for k, v in _MATCH_DUMP.items()}
_STRING_FIELDS = {"namespaces", "notNamespaces", "principals", "notPrincipals"}
_SA_FIELDS = {"serviceAccounts", "notServiceAccounts"}
_IP_FIELDS = {"sourceIps", "notSourceIps", "destinationIps", "notDestinationIps"}
_PORT_FIELDS = {"destinationPorts", "notDestinationPorts"}
_FIELD_OF = {_camel(n): n for n in Match.__struct_fields__}


def authorization_from_dump(data: Mapping[str, Any]) -> Authorization:
    """Read one policy in ztunnel's serde form (the inverse of ``dump``)."""
    if not isinstance(data, Mapping):
        raise DumpError("a policy must be an object")
    unknown = set(data) - {"name", "namespace", "scope", "action", "rules", "dryRun"}
    if unknown:
        raise DumpError(f"unknown field {sorted(unknown)[0]!r}")
    try:
        scope = _SCOPE_READ[data["scope"]]
        action = _ACTION_READ[data["action"]]
    except KeyError as e:
        raise DumpError(f"bad or missing scope/action: {e}") from None
    rules = tuple(
        tuple(tuple(_match_from_dump(m) for m in _list(c)) for c in _list(r))
        for r in _list(data.get("rules", []))
    )
    return Authorization(
        name=str(data.get("name", "")),
        namespace=str(data.get("namespace", "")),
        scope=scope,
        action=action,
        rules=rules,
        dry_run=bool(data.get("dryRun", False)),
    )


def _list(value: Any) -> Sequence[Any]:
    if not isinstance(value, list):
        raise DumpError(f"expected a list, got {value!r}")
    return value


def _match_from_dump(data: Any) -> Match:
    if not isinstance(data, Mapping):
        raise DumpError("a match must be an object")
    kwargs: dict[str, tuple[Any, ...]] = {}
    for key, values in data.items():
        if key not in _FIELD_OF:
            raise DumpError(f"unknown match field {key!r}")
        out: list[Any] = []
        for v in _list(values):
            if key in _STRING_FIELDS:
                ((tag, val),) = v.items()
                out.append(StringMatch(_MATCH_READ[tag], "" if tag == "Presence" else str(val)))
            elif key in _SA_FIELDS:
                out.append(ServiceAccountMatch(v["namespace"], v["serviceAccount"]))
            elif key in _IP_FIELDS:
                net = ipaddress.ip_network(v, strict=False)
                out.append(Address(ipaddress.ip_address(v.split("/")[0]), net.prefixlen))
            else:
                out.append(int(v))
        kwargs[_FIELD_OF[key]] = tuple(out)
    return Match(**kwargs)


__all__ = [
    "Action",
    "Address",
    "Authorization",
    "Clause",
    "DumpError",
    "Match",
    "Rule",
    "Scope",
    "ServiceAccountMatch",
    "StringMatch",
    "authorization_from_dump",
]
