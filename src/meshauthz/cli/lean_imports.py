"""Two third-party imports made cheaper for a command, with the same behaviour.
Before this, they were a fifth of what ``check`` on the seed executed.

- PyYAML's pure-Python reader compiles, when ``yaml`` is imported, a character
  class spanning all of Unicode (``yaml.reader.Reader.NON_PRINTABLE``). The
  regex compiler walks its ranges code point by code point: 57 million
  instructions, more than all of meshauthz's own work on the seed. meshauthz
  reads YAML with libyaml (``CSafeLoader``), and that reader only runs where
  libyaml is missing. The same set written as its complement compiles in a
  fraction of the time. It is put in ``re``'s cache under PyYAML's text, and
  the import then finds it compiled.
- msgspec reads type hints with typing_extensions when that is installed (the
  test tools install it), for forms meshauthz's Structs never use. On Python
  3.11+ ``typing`` has them. A command imports msgspec without it: 39 million
  instructions.

A library user's process imports both as usual; only the command line's
start-up is at stake here. ``tests/test_cli_startup.py`` checks that both take
effect and that the two patterns match the same characters.
"""

from __future__ import annotations

import re
import sys

# PyYAML's Reader.NON_PRINTABLE, as its source writes it, and the same set as
# the characters it matches: the C0 controls but tab, newline and carriage
# return; DEL and the C1 controls but NEL; the surrogates; U+FFFE and U+FFFF
PYYAML_NON_PRINTABLE = "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
NON_PRINTABLE = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]"


def prepare() -> None:
    """Seed PyYAML's pattern and import msgspec, before anything else imports
    either. Does nothing for a module already imported."""
    cache = getattr(re, "_cache", None)
    if "yaml" not in sys.modules and isinstance(cache, dict):
        # re.compile looks a pattern up by (type, text, flags) before compiling it
        cache[str, PYYAML_NON_PRINTABLE, 0] = re.compile(NON_PRINTABLE)
    if "msgspec" not in sys.modules and "typing_extensions" not in sys.modules:
        sys.modules["typing_extensions"] = None  # type: ignore[assignment]  # import fails
        try:
            import msgspec  # noqa: F401
        finally:
            del sys.modules["typing_extensions"]  # later importers get it as usual
