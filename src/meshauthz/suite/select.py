"""Which cases run: ``meshauthz test --run REGEX``, as ``opa test --run`` selects.

OPA matches its Go (RE2) regular expression anywhere in a test's full name,
``data.<package>.<rule>``, the name its reports print; a case's full name here
is what the reports print, ``<suite>: <case>``. The expression is RE2 too
(google-re2), searched, not anchored: ``^`` and ``$`` anchor it.
"""

from __future__ import annotations


def full_name(suite: str, case: str) -> str:
    """A case as reports name it (FAIL lines, coverage's matchedBy)."""
    return f"{suite}: {case}"


class CaseSelector:
    """Raises ValueError, with RE2's message, for an expression RE2 rejects."""

    def __init__(self, regex: str) -> None:
        import re2  # here: only --run needs it

        options = re2.Options()
        options.log_errors = False  # the message is the error's, not a log line
        try:
            self._re = re2.compile(regex, options)
        except re2.error as e:
            why = e.args[0].decode(errors="replace") if e.args else str(e)
            raise ValueError(f"{regex!r} is not an RE2 regular expression: {why}") from None
        self.regex = regex

    def __call__(self, suite: str, case: str) -> bool:
        return self._re.search(full_name(suite, case)) is not None


__all__ = ["CaseSelector", "full_name"]
