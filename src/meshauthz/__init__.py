"""meshauthz: Istio's authorization system in Python.

The Python API (the README's "Python API" section)::

    import meshauthz
    mesh = meshauthz.load("examples/seed")
    d = mesh.check({"from": "default/frontend", "to": "default/backend", "path": "/api/v1/data"})
"""

__version__ = "0.1.0"

from meshauthz._api import (
    Mesh,
    Outcome,
    Proxy,
    ProxyOutcome,
    RequestData,
    load,
    load_config_dump,
)
from meshauthz.decide.cause import Stage
from meshauthz.decide.decision import Decision
from meshauthz.errors import InputError, MeshauthzError
from meshauthz.mesh.loading import InvalidInput
from meshauthz.resources.findings import Finding
from meshauthz.translate import BuiltFilter

__all__ = [
    "BuiltFilter",
    "Decision",
    "Finding",
    "InputError",
    "InvalidInput",
    "Mesh",
    "MeshauthzError",
    "Outcome",
    "Proxy",
    "ProxyOutcome",
    "RequestData",
    "Stage",
    "__version__",
    "load",
    "load_config_dump",
]
