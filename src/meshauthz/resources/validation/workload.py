"""Notes about workloads: what meshauthz itself reads from them.

Istio does not validate workloads; this only notes the annotation by which a
manifest asks ``meshauthz mesh up`` to run a command, since running a command
found in a manifest is something a reader of the manifests should know about
(``mesh up`` runs it only with ``--run-commands``).
"""

from __future__ import annotations

from meshauthz.resources.objects import Workload
from meshauthz.resources.validation.report import Report

COMMAND_ANNOTATION = "mesh.meshauthz.io/command"


def validate_workload(resource: Workload, report: Report) -> None:
    # the annotations as loaded (the object's, its pods'), which are those
    # written: a map of strings, or the object is not loaded
    places: list[tuple[tuple[str | int, ...], dict[str, str]]] = [((), resource.annotations)]
    if resource.template_path:
        places.append((resource.template_path, resource.pod_annotations))
    for base, written in places:
        if COMMAND_ANNOTATION in written:
            report.warning(
                "mesh-command-annotation",
                f"'meshauthz mesh up' runs this command ({written[COMMAND_ANNOTATION]!r}) as "
                "the workload's application only when given --run-commands (as the user "
                "running the mesh, without a shell); Istio ignores the annotation",
                *base,
                "metadata",
                "annotations",
                COMMAND_ANNOTATION,
            )


__all__ = ["COMMAND_ANNOTATION", "validate_workload"]
