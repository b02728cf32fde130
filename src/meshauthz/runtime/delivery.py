"""How generated Envoy configuration reaches a proxy.

``envoy_config.generate`` produces a workload's resources (``ResourceSet``);
a delivery hands them to that workload's Envoy. A delivery answers three
things (``Delivery``): how a resource Envoy fetches on its own is named in
another one (``config_source``: SDS secrets and ECDS filters in listeners,
LDS and CDS in the bootstrap), what the bootstrap adds to
``envoy_config.bootstrap_base`` to reach it, and how a new set is pushed.

``FileDelivery`` is Envoy's file-based dynamic configuration, in one
directory per workload:

* ``lds.json``, ``cds.json``: every listener, every cluster;
* ``ecds-<name>.json``: one ECDS filter each (``meshauthz.jwt``, ...);
* ``sds-<name>.json``: one secret each (``default``, ``ROOTCA``), mode 0600;

each a ``DiscoveryResponse`` (``version_info``, ``resources``) that Envoy
watches and reloads when it is replaced by a rename. A file whose resources
have not changed is not rewritten, so Envoy reloads (and, for LDS, drains)
nothing it does not have to.

An xDS server would be a second ``Delivery``: ``config_source`` answers
``{"ads": {}}``, ``bootstrap`` adds ``ads_config`` and the server's cluster,
``deliver`` hands the set to the server for the node.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any, Protocol

from meshauthz.runtime.envoy_config import ConfigSources, Resource, ResourceSet, ResourceType


class Delivery(ConfigSources, Protocol):
    """One workload's Envoy, as a destination for generated configuration."""

    def bootstrap(self, base: dict[str, Any]) -> dict[str, Any]:
        """``base`` (``envoy_config.bootstrap_base``) completed with where LDS and CDS
        come from."""
        ...

    def deliver(self, resources: ResourceSet) -> int:
        """Push ``resources``, the proxy's whole configuration; returns how many
        units (files, responses) changed."""
        ...

    def versions(self) -> dict[tuple[ResourceType, str], str]:
        """What the proxy should hold now: per subscription (LDS and CDS named ``""``,
        each SDS secret, each ECDS filter), the version of its last change."""
        ...


def write_atomic(path: Path, data: Any, *, private: bool = False) -> bool:
    """Write JSON by temp file + rename (what Envoy's file watch expects).
    Returns False (and writes nothing) when the content is unchanged."""
    text = json.dumps(data, indent=1, sort_keys=True)
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return True


# Envoy reads each of these from its own file; listeners and clusters share one file per type.
_ONE_FILE_PER_RESOURCE = {ResourceType.SECRET: "sds", ResourceType.EXTENSION_CONFIG: "ecds"}
_ONE_FILE_PER_TYPE = {ResourceType.LISTENER: "lds.json", ResourceType.CLUSTER: "cds.json"}
# What a listener or cluster refers to is written before it.
_ORDER = (
    ResourceType.SECRET,
    ResourceType.EXTENSION_CONFIG,
    ResourceType.CLUSTER,
    ResourceType.LISTENER,
)
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class FileDelivery:
    """Envoy's file-based xDS in ``directory`` (see the module's description)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._versions: dict[tuple[ResourceType, str], str] = {}

    def path(self, t: ResourceType, name: str) -> Path:
        """The file that holds resource ``name`` of type ``t``."""
        if t in _ONE_FILE_PER_TYPE:
            return self.directory / _ONE_FILE_PER_TYPE[t]
        if not _SAFE_NAME.fullmatch(name):
            raise ValueError(f"{t} {name!r} cannot be a file name")
        return self.directory / f"{_ONE_FILE_PER_RESOURCE[t]}-{name}.json"

    def config_source(self, t: ResourceType, name: str) -> dict[str, Any]:
        return {
            "path_config_source": {"path": str(self.path(t, name))},
            "resource_api_version": "V3",
        }

    def bootstrap(self, base: dict[str, Any]) -> dict[str, Any]:
        return {
            **base,
            "dynamic_resources": {
                "lds_config": self.config_source(ResourceType.LISTENER, ""),
                "cds_config": self.config_source(ResourceType.CLUSTER, ""),
            },
        }

    def files(self, resources: ResourceSet) -> dict[Path, tuple[ResourceType, list[Resource]]]:
        """File -> the type and the resources it holds, in the order they are written."""
        unknown = set(resources.by_type) - set(_ORDER)
        if unknown:
            raise ValueError(f"no file for resources of type {', '.join(sorted(unknown))}")
        out: dict[Path, tuple[ResourceType, list[Resource]]] = {}
        for t in _ORDER:
            items = resources[t]
            if t in _ONE_FILE_PER_TYPE:
                # Written even when empty: Envoy's LDS and CDS watches need their file.
                out[self.path(t, "")] = (t, list(items.values()))
            else:
                for name, r in items.items():
                    out[self.path(t, name)] = (t, [r])
        return out

    def deliver(self, resources: ResourceSet) -> int:
        """Write the files whose resources changed (private keys: mode 0600); returns
        how many were written."""
        written = 0
        versions = {}
        for path, (t, items) in self.files(resources).items():
            sub = (t, "" if t in _ONE_FILE_PER_TYPE else items[0]["name"])
            held = _read(path)
            if held is not None and held.get("resources") == json.loads(json.dumps(items)):
                versions[sub] = self._versions.get(sub) or str(held.get("version_info"))
                continue
            doc = {"version_info": resources.version, "resources": items}
            write_atomic(path, doc, private=t is ResourceType.SECRET)
            versions[sub] = resources.version
            written += 1
        self._versions = versions
        return written

    def versions(self) -> dict[tuple[ResourceType, str], str]:
        return dict(self._versions)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


__all__ = ["Delivery", "FileDelivery", "write_atomic"]
