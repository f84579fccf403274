"""Per-recipient values, spliced into an issue rendered once.

The renderer puts a marker (`\\ue000name\\ue001`, private-use characters that issue content may not
contain) wherever a recipient's value goes; sending replaces the markers with plain string work,
never a template render. Values are escaped for the part they land in.
"""

from __future__ import annotations

import html
import re

OPEN, CLOSE = "\ue000", "\ue001"
FIELDS = ("name", "email", "unsubscribe_url", "preferences_url")
_MARKER = re.compile(OPEN + r"([a-z_]+)" + CLOSE)


def marker(field: str) -> str:
    if field not in FIELDS:
        raise ValueError(f"unknown recipient field {field!r}")
    return f"{OPEN}{field}{CLOSE}"


def markers() -> dict[str, str]:
    """What templates see as `recipient`: each field's marker."""
    return {f: marker(f) for f in FIELDS}


class Splice:
    """A rendered text cut at its markers once, so each recipient costs one join."""

    __slots__ = ("parts", "fields")

    def __init__(self, text: str):
        pieces = _MARKER.split(text)
        self.parts = pieces[0::2]
        self.fields = pieces[1::2]
        unknown = set(self.fields) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown recipient field(s) {sorted(unknown)}")

    def fill(self, values: dict[str, str], *, escape: bool) -> str:
        out = [self.parts[0]]
        for field, part in zip(self.fields, self.parts[1:], strict=False):
            value = values.get(field, "")
            out.append(html.escape(value) if escape else value)
            out.append(part)
        return "".join(out)
