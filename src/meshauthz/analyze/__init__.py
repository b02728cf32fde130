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

from meshauthz.analyze.codes import CODES, Code
from meshauthz.analyze.finding import AnalysisFinding, Witness
from meshauthz.analyze.run import SUPPRESS_ANNOTATION, Analysis, Suppression, analyze

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
