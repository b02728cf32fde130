"""Notes about workloads: what meshauthz itself reads from them.

Istio does not validate workloads; this only notes the annotation by which a
manifest asks ``meshauthz mesh up`` to run a command, since running a command
found in a manifest is something a reader of the manifests should know about
(``mesh up`` runs it only with ``--run-commands``).
"""

from __future__ import annotations

from typing import Any

from meshauthz.resources.objects import Workload
from meshauthz.resources.validation.report import Report, raw_object

COMMAND_ANNOTATION = "mesh.meshauthz.io/command"


def validate_workload(resource: Workload, report: Report) -> None:
    data: Any = raw_object(resource)
    bases: list[tuple[str | int, ...]] = [()]
    if resource.template_path:
        bases.append(tuple(resource.template_path))
    for base in bases:
        node: Any = data
        for part in base:
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
            else:
                node = None
        meta = node.get("metadata") if isinstance(node, dict) else None
        annotations = meta.get("annotations") if isinstance(meta, dict) else None
        if isinstance(annotations, dict) and COMMAND_ANNOTATION in annotations:
            report.warning(
                "mesh-command-annotation",
                f"'meshauthz mesh up' runs this command ({annotations[COMMAND_ANNOTATION]!r}) as "
                "the workload's application only when given --run-commands (as the user "
                "running the mesh, without a shell); Istio ignores the annotation",
                *base,
                "metadata",
                "annotations",
                COMMAND_ANNOTATION,
            )


__all__ = ["COMMAND_ANNOTATION", "validate_workload"]
