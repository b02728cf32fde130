"""PyYAML's import made cheaper for a command, with the same behaviour.

PyYAML's pure-Python reader compiles, when ``yaml`` is imported, a character
class spanning all of Unicode (``yaml.reader.Reader.NON_PRINTABLE``). The regex
compiler walks its ranges code point by code point: 57 million instructions, an
eighth of what ``check`` on the seed executed, and more than all of meshauthz's
own work there. meshauthz reads YAML with libyaml (``CSafeLoader``); that reader
runs only where libyaml is missing. The same set written as the characters it
matches compiles in a fraction of the time. It is put in ``re``'s cache under
PyYAML's text, and the import then finds it compiled.

A library user's process imports PyYAML as usual; only the command line's
start-up is at stake here. ``tests/test_cli_startup.py`` checks that the seed
takes effect and that the two patterns match the same characters.
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
    """Seed PyYAML's pattern, before anything imports ``yaml``."""
    cache = getattr(re, "_cache", None)
    if "yaml" not in sys.modules and isinstance(cache, dict):
        # re.compile looks a pattern up by (type, text, flags) before compiling it
        cache[str, PYYAML_NON_PRINTABLE, 0] = re.compile(NON_PRINTABLE)
