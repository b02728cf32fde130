"""Fixtures for the real-Envoy conformance tests.

The tests skip, saying why, only when the Envoy binary cannot run on this
platform; with the ``test`` extra installed on Linux x86-64/arm64 they run.
``MESHAUTHZ_LONG=1`` selects the long mode of the
random corpus (100,000 cases; ``MESHAUTHZ_LONG_CASES`` changes the count).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.envoy_process import require_envoy

from .harness import TestCA

LONG_CASES = 100_000


def long_mode() -> bool:
    return os.environ.get("MESHAUTHZ_LONG", "") not in ("", "0")


@pytest.fixture(scope="session")
def envoy_usable() -> None:
    require_envoy("real Envoy conformance")


@pytest.fixture(scope="session")
def test_ca(envoy_usable: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCA]:
    directory: Path = tmp_path_factory.mktemp("meshauthz-ca")
    yield TestCA(directory)
