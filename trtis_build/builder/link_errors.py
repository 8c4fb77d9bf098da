"""What a failed link says, whichever linker said it: GNU ld and gold write
"undefined reference to `f(int)'", lld and mold "error: undefined symbol: f(int)" followed by
">>> referenced by a.cc:12" lines. The driver's error summary and the frameworks' hints
(failure_hint) read links through this module only."""

from __future__ import annotations

import re

# Lines of a link error worth showing (they carry no file:line of their own, except lld's
# "referenced by"). Case-insensitive: nvlink says "Undefined reference".
LINK_DIAGNOSTIC = re.compile(r"(undefined reference to|undefined symbol:|multiple definition of|duplicate symbol:|"
                             r"^>>> referenced by|\b(ld(\.\w+)?|mold): .*(cannot find|error)|collect2: error)", re.I)
_UNDEFINED = re.compile(r"undefined reference to [`']([^`'\n]+)'|undefined symbol: (.+?)[ \t]*$", re.M)


def undefined_symbols(log: str) -> list[str]:
    """The symbols a link could not resolve, demangled as the linker printed them, in order."""
    return list(dict.fromkeys(match.group(1) or match.group(2) for match in _UNDEFINED.finditer(log)))
