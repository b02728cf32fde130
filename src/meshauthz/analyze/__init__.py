"""``meshauthz analyze``: the mistakes people make in AuthorizationPolicies,
found before they are applied. Each finding has a stable code (``codes``), a
place, a fix hint and, where one exists, a witness request decided by the one
decision path (``decide``), as ``check`` would decide it.

* ``codes``: the catalogue (names, severities, descriptions, istioctl/Kiali codes);
* ``finding``: ``AnalysisFinding`` and ``Witness``;
* ``context``, ``requests``, ``witness``: what the checks share;
* ``checks/``: the checks, one module per family;
* ``run``: every check, then suppressions; ``sarif``: SARIF 2.1.0 output.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshauthz.analyze.codes import CODES, Code
    from meshauthz.analyze.finding import AnalysisFinding, Witness
    from meshauthz.analyze.run import SUPPRESS_ANNOTATION, Analysis, Suppression, analyze

# Imported on first use (PEP 562): ``check`` imports ``decision_notes`` from this
# package, and runs the checks only when a rule decided.
_WHERE = {
    "CODES": "meshauthz.analyze.codes",
    "Code": "meshauthz.analyze.codes",
    "AnalysisFinding": "meshauthz.analyze.finding",
    "Witness": "meshauthz.analyze.finding",
    **dict.fromkeys(
        ("SUPPRESS_ANNOTATION", "Analysis", "Suppression", "analyze"), "meshauthz.analyze.run"
    ),
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'meshauthz.analyze' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CODES",
    "SUPPRESS_ANNOTATION",
    "Analysis",
    "AnalysisFinding",
    "Code",
    "Suppression",
    "Witness",
    "analyze",
]
