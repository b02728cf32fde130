"""meshauthz: Istio's authorization system in Python.

The Python API (the README's "Python API" section)::

    import meshauthz
    mesh = meshauthz.load("examples/seed")
    d = mesh.check({"from": "default/frontend", "to": "default/backend", "path": "/api/v1/data"})
"""

__version__ = "0.1.0"

# typing.TYPE_CHECKING's value without importing typing (and re, which it
# imports): a third of ``meshauthz --version``'s imports. Type checkers treat
# any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
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

# Imported on first use (PEP 562): the command line imports this package for its
# version and each command only what it runs.
_WHERE = {
    **dict.fromkeys(
        ("Mesh", "Outcome", "Proxy", "ProxyOutcome", "RequestData", "load", "load_config_dump"),
        "meshauthz._api",
    ),
    "Stage": "meshauthz.decide.cause",
    "Decision": "meshauthz.decide.decision",
    "InputError": "meshauthz.errors",
    "MeshauthzError": "meshauthz.errors",
    "InvalidInput": "meshauthz.mesh.loading",
    "Finding": "meshauthz.resources.findings",
    "BuiltFilter": "meshauthz.translate",
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'meshauthz' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


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
