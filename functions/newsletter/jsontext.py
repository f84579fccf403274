"""JSON that comes from outside (an upload, a queue message, an SNS envelope), read with a depth limit.

Python's json module recurses once per level of nesting: a document nested a few hundred thousand
levels deep, well within an upload's 512 KiB, raises RecursionError, which no report explains and
every retry repeats. So the nesting is measured first, in one pass that steps over strings, and a
document deeper than any real one is refused with its position.
"""

from __future__ import annotations

import json
import re

MAX_DEPTH = 64  # the issue format nests about 6 levels; SES's notifications about 5

_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)


class TooDeep(ValueError):
    """Nested deeper than MAX_DEPTH (a ValueError, as json.JSONDecodeError is)."""

    def __init__(self, max_depth: int, text: str, pos: int):
        self.lineno = text.count("\n", 0, pos) + 1
        self.colno = pos - (text.rfind("\n", 0, pos) + 1) + 1
        self.pos = pos
        super().__init__(f"nested deeper than {max_depth} levels (line {self.lineno}, column {self.colno})")


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise TooDeep if arrays and objects nest deeper than max_depth."""
    depth = 0
    for match in _TOKENS.finditer(text):
        c = match.group()
        if c in "[{":
            depth += 1
            if depth > max_depth:
                raise TooDeep(max_depth, text, match.start())
        elif c in "]}":
            depth -= 1


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH):
    """json.loads, after refusing a document nested deeper than max_depth (TooDeep)."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    check_depth(text, max_depth)
    return json.loads(text)
