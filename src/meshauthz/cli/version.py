"""What ``meshauthz --version`` says: one text, for the click option and for
the entry point, which answers ``--version`` alone before importing click."""

from __future__ import annotations

from meshauthz import __version__
from meshauthz.resources.istio_release import ISTIO

PROG = "meshauthz"  # also as kubectl's plugin: the version names the program
# click's version_option fills %(prog)s and %(version)s
MESSAGE = f"%(prog)s %(version)s, modelling Istio {ISTIO}"


def version_line() -> str:
    return MESSAGE % {"prog": PROG, "version": __version__}


__all__ = ["MESSAGE", "PROG", "version_line"]
