"""The project's error type and the exit codes every command shares."""

from __future__ import annotations

from msgspec import Struct

# Exit codes, documented in the README.
EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and found errors, failures or a mismatch
EXIT_INPUT = 2  # unusable input: unreadable file, bad YAML, bad flags
EXIT_INTERNAL = 3  # a bug in meshauthz; decisions fail closed before this


class Location(Struct, frozen=True):
    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.file
        if self.column is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.column}"


class MeshauthzError(Exception):
    """An error caused by the user's input, with where it happened."""

    def __init__(
        self,
        message: str,
        *,
        location: Location | None = None,
        field: str | None = None,
        code: str = "input",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.field = field
        self.code = code

    def __str__(self) -> str:
        parts = []
        if self.location is not None:
            parts.append(f"{self.location}:")
        if self.field:
            parts.append(f"{self.field}:")
        parts.append(self.message)
        return " ".join(parts)


class InputError(MeshauthzError):
    """Input that cannot be used at all (exit code 2)."""
