"""SHA-256 and BLAKE2b without importing ``hashlib``: its import loads OpenSSL
(2% of ``check``'s start-up), while CPython has code of its own for both, with
the same digests. Its SHA-256 is ``_sha256`` on 3.11 and ``_sha2`` from 3.12 on,
its BLAKE2b ``_blake2`` on each (hashlib's ``blake2b`` is that one, so it is
no fallback: a Python without ``_blake2`` has no BLAKE2b with a digest size)."""

from __future__ import annotations

from _blake2 import blake2b
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hashlib import sha256
else:
    try:
        from _sha256 import sha256
    except ImportError:
        try:
            from _sha2 import sha256
        except ImportError:
            from hashlib import sha256  # a Python built without its own

__all__ = ["blake2b", "sha256"]
