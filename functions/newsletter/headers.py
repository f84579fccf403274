"""One rule for every value that reaches a mail header, wherever it comes from.

A header value is one line of text: no line break of any kind (CR and LF, and those that Python's
`str.splitlines` and some mail software also break lines on: VT, FF, FS, GS, RS, NEL, U+2028,
U+2029), no other control character (C0, DEL, C1), and none of the private-use characters the
renderer reserves for per-recipient values. The issue document's one-line fields, a list's
settings, the stack's sender and the message builder all use this rule, so what publishes can be
built for every reader, and what cannot is refused at publish with the field and the reason.
"""

from __future__ import annotations

import re
import unicodedata

# TAB is whitespace a header may hold; every other C0 control, DEL and the C1 controls may not.
_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ue000\ue001]")
_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_NAMES = {
    "\r": "CARRIAGE RETURN",
    "\n": "LINE FEED",
    "\x0b": "LINE TABULATION",
    "\x0c": "FORM FEED",
    "\x1c": "FILE SEPARATOR",
    "\x1d": "GROUP SEPARATOR",
    "\x1e": "RECORD SEPARATOR",
    "\x85": "NEXT LINE",
    "\x00": "NULL",
    "\x7f": "DELETE",
}
# An address we put in From or Reply-To: an ASCII dot-atom local part at a domain of LDH labels
# (IDNs in their xn-- form). No display name, no comment, no list: exactly one mailbox.
ADDRESS_PATTERN = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
_ADDRESS = re.compile(ADDRESS_PATTERN)


# What mail software decodes as an RFC 2047 encoded word: text that must never come from outside
# as it is (an encoded word can carry any bytes, line breaks included, past every check above).
_ENCODED_WORD = re.compile(r"=\?[^?\s]*\?[bBqQ]\?[^?\s]*\?=")


class UnsafeHeader(ValueError):
    """A value that must not go into a mail header (the message says which character, and where)."""


def _name(char: str) -> str:
    name = _NAMES.get(char) or unicodedata.name(char, "a control character")
    return f"U+{ord(char):04X} {name}"


def problem(value: str) -> str | None:
    """Why `value` may not be a header value, or None."""
    found = _UNSAFE.search(value)
    if found is None:
        return None
    char = found.group()
    kind = (
        "a line break"
        if char in _BREAKS
        else "a reserved character"
        if char in "\ue000\ue001"
        else "a control character"
    )
    return f"must be a single line of text: it contains {kind} ({_name(char)}) at character {found.start() + 1}"


def encoded_word(value: str) -> str | None:
    """Why `value` could be read as an RFC 2047 encoded word, or None."""
    found = _ENCODED_WORD.search(value)
    if found is None:
        return None
    return (
        f"contains {found.group()[:40]!r} at character {found.start() + 1}, which mail software would decode "
        "as an encoded word (=?charset?q?...?=): write the text itself"
    )


def refused(value: str) -> str | None:
    """Why a value from outside (a name, a subject) is refused at the door, or None: what
    `problem` refuses, and encoded-word look-alikes."""
    return problem(value) or encoded_word(value)


def check(value: str) -> str:
    """`value`, if it may go into a header; else UnsafeHeader."""
    why = problem(value)
    if why:
        raise UnsafeHeader(why)
    return value


def validate_address(value: str) -> str:
    """An address an editor or operator gave for From or Reply-To, checked where it is given
    (publish, the CLI): one plain address by the rule below, and a valid one by email-validator
    (syntax only, no DNS). UnsafeHeader says what is wrong."""
    check_address(value)
    from email_validator import EmailNotValidError, validate_email  # 30 ms: only where it is needed

    try:
        validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise UnsafeHeader(f"{value[:80]!r} is not a valid email address: {exc}") from None
    return value


def check_address(value: str) -> str:
    """A mailbox for From or Reply-To: one plain address, ASCII (a domain as IDNA), nothing else."""
    check(value)
    if not _ADDRESS.fullmatch(value):
        raise UnsafeHeader(
            f"{value[:80]!r} is not one plain email address (ASCII letters, digits and .!#$%&'*+/=?^_`{{|}}~- "
            "before the @, a domain after it; no name, comma or angle brackets)"
        )
    return value


# --- writing header values ---------------------------------------------------------------------
#
# The message builder writes its headers itself instead of handing values to the stdlib's header
# parser, which decodes encoded words it finds in them (and, in some Python releases, writes the
# decoded line breaks back out: CVE-2024-6923). A value that is plain printable ASCII and holds
# nothing that looks like an encoded word is written as it is; any other is written as encoded
# words we make from the whole text, so that whatever it contains, "=?" included, reads back as
# text and never as a header or an encoded word of its own.


def _plain(value: str) -> bool:
    return value.isascii() and value.isprintable() and "=?" not in value


def unstructured(header: str, value: str) -> str:
    """An unstructured header's value (Subject), as written: refused if unsafe (UnsafeHeader)."""
    from email.header import Header

    check(value)
    if _plain(value) and len(header) + 2 + len(value) <= 998:
        # As it is, folded at its spaces when long: never encoded (spam filters frown on that).
        if len(header) + 2 + len(value) <= 78 or " " not in value.strip():
            return value
        return Header(value, "us-ascii", header_name=header).encode(linesep="\r\n")
    return Header(value, "utf-8", header_name=header).encode(linesep="\r\n")


def is_address(value: str) -> bool:
    return bool(_ADDRESS.fullmatch(value))


def mailbox(display: str, address: str) -> str:
    """`Display Name <address>` (or the address alone), the name quoted or encoded as it needs."""
    if not is_address(address):
        raise UnsafeHeader(f"{address[:80]!r} is not one plain email address")
    return named(display, address) if display else address


def named(display: str, inner: str) -> str:
    """`Display Name <inner>` (a mailbox, a List-Id), the name quoted or encoded as it needs."""
    from email.header import Header
    from email.utils import formataddr

    check(display)
    check(inner)
    if any(c in inner for c in "<> ,;"):
        raise UnsafeHeader(f"{inner[:80]!r} cannot stand between angle brackets")
    if _plain(display):
        return formataddr((display, inner))  # quoted, with its specials escaped, if it needs it
    return f"{Header(display, 'utf-8').encode(linesep=chr(13) + chr(10))} <{inner}>"
