"""The gettext catalogs of what the templates and the unsubscribe pages say themselves.

Sources are `locale/<lang>/LC_MESSAGES/messages.po` (from `locale/messages.pot`); what runs is
the compiled `messages.mo` beside each, read with the stdlib `gettext` (Babel only makes them:
`make catalogs-extract`, `make catalogs-update`, `make catalogs-compile`). A language without a
catalog reads the English of the source (the msgid).
"""

from __future__ import annotations

import gettext
from functools import cache
from pathlib import Path

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"
SHIPPED = ("en", "fr", "pt", "de", "es")


def N_(message: str) -> str:
    """Marks a string for extraction; it is translated later, where its language is known."""
    return message


@cache
def translations(language: str | None) -> gettext.NullTranslations:
    """The catalog for a BCP 47 tag: `pt-BR` reads pt_BR, then pt; none found, the msgids."""
    tag = (language or "en").replace("-", "_")
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[tag], fallback=True)
