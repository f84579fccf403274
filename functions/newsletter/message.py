"""One recipient's email: the issue's rendered parts with their values spliced in, as raw MIME.

Built with the stdlib `email` package: multipart/alternative (text, then HTML), UTF-8 bodies in
quoted-printable, and the headers that bulk senders must carry: List-Id, List-Unsubscribe with an
https link and a mailto, and RFC 8058 one-click List-Unsubscribe-Post.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import quote

from . import clock, headers
from .personalize import Splice

# Bodies are encoded under SMTP's 78 (quoted-printable lines of at most 76); headers are written
# under RFC 5322's hard limit of 998, so that a List-Unsubscribe value is never folded into
# encoded-words, which would hide its URLs from mail clients.
_BODY_POLICY = policy.SMTP
_HEADER_POLICY = policy.SMTP.clone(max_line_length=998)


class InvalidAddress(ValueError):
    """An address SES cannot deliver to as written (e.g. a non-ASCII local part, no SMTPUTF8)."""


def ascii_address(address: str) -> str:
    """The address with its domain in IDNA (punycode); refuse a non-ASCII local part."""
    local, _, domain = address.rpartition("@")
    if not local or not domain:
        raise InvalidAddress("no local part or domain")
    if not local.isascii():
        raise InvalidAddress("non-ASCII local part")
    try:
        domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError as exc:
        raise InvalidAddress("domain is not a valid IDNA name") from exc
    return f"{local}@{domain}"


@dataclass(frozen=True)
class PreparedIssue:
    """What the publish function stores once per issue for the senders (`message.json`)."""

    issue_id: str
    list_id: str
    list_name: str
    subject: str
    from_name: str
    from_address: str
    reply_to: str | None
    web_url: str
    html: Splice
    text: Splice
    language: str = "en"

    @classmethod
    def from_json(cls, data: dict) -> PreparedIssue:
        return cls(
            issue_id=data["issue_id"],
            list_id=data["list_id"],
            list_name=data["list_name"],
            subject=data["subject"],
            from_name=data["from_name"],
            from_address=data["from_address"],
            reply_to=data.get("reply_to"),
            web_url=data["web_url"],
            html=Splice(data["html"]),
            text=Splice(data["text"]),
            language=data.get("language") or "en",
        )

    @property
    def domain(self) -> str:
        return self.from_address.rsplit("@", 1)[1]


def unsubscribe_url(base_url: str, token: str, issue_id: str | None = None, language: str = "en") -> str:
    # The issue is an unsigned hint, only for per-issue statistics; the token alone decides. The
    # language (when not English) is the page's.
    hint = (f"&issue={issue_id}" if issue_id else "") + (f"&lang={language}" if language != "en" else "")
    return f"{base_url}{'&' if '?' in base_url else '?'}token={token}{hint}"


def preferences_base(base_url: str, public_base_url: str = "") -> str:
    """Where the preference centre is: the public pages' address, else the origin of the
    unsubscribe link (the same function answers both; a custom domain forwards every path)."""
    from urllib.parse import urlsplit

    if public_base_url:
        return public_base_url.rstrip("/") + "/preferences"
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/preferences"


def preferences_url(base: str, token: str, language: str = "en") -> str:
    # The same token as the unsubscribe link: it names the list and the address, signed.
    return f"{base}?token={token}" + (f"&lang={language}" if language != "en" else "")


def unsubscribe_mailto(mailbox: str, token: str) -> str:
    return f"mailto:{mailbox}?subject={quote('unsubscribe ' + token)}"


def check_headers(prepared: PreparedIssue) -> None:
    """What every message of the issue puts in its headers, checked with the one header rule
    (headers.py): UnsafeHeader names the field. Publish checks the same before anything is sent."""
    for what, value in (
        ("subject", prepared.subject),
        ("sender name", prepared.from_name),
        ("list name", prepared.list_name),
        ("issue id", prepared.issue_id),
        ("list id", prepared.list_id),
    ):
        why = headers.problem(value)
        if why:
            raise headers.UnsafeHeader(f"{what}: {why}")
    headers.check_address(prepared.from_address)
    if prepared.reply_to:
        headers.check_address(prepared.reply_to)


def safe_name(name: str) -> str:
    """A recipient's name for the To header, or nothing if it could break the header (the import
    refuses such names; one that slipped past is left out, never written)."""
    return "" if not name or headers.problem(name) else name


def build(
    prepared: PreparedIssue,
    *,
    address: str,
    name: str,
    token: str,
    base_url: str,
    mailbox: str,
    public_base_url: str = "",
) -> bytes:
    """The raw message for one recipient."""
    check_headers(prepared)
    name = safe_name(name)
    https = unsubscribe_url(base_url, token, prepared.issue_id, prepared.language)
    manage = preferences_url(preferences_base(base_url, public_base_url), token, prepared.language)
    values = {"name": name or "", "email": address, "unsubscribe_url": https, "preferences_url": manage}

    address = ascii_address(address)
    msg = EmailMessage(policy=_BODY_POLICY)
    msg["From"] = Address(display_name=prepared.from_name, addr_spec=prepared.from_address)
    msg["To"] = Address(display_name=name or "", addr_spec=address)
    if prepared.reply_to:
        msg["Reply-To"] = prepared.reply_to
    msg["Subject"] = prepared.subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(idstring=prepared.issue_id, domain=prepared.domain)
    msg["List-Id"] = f"{prepared.list_name} <{prepared.list_id}.{prepared.domain}>"
    msg["List-Unsubscribe"] = f"<{https}>, <{unsubscribe_mailto(mailbox, token)}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["List-Archive"] = f"<{prepared.web_url}>"
    msg["Content-Language"] = prepared.language
    # Gmail's Feedback Loop groups complaints by these ids.
    msg["Feedback-ID"] = f"{prepared.issue_id}:{prepared.list_id}:newsletter"
    msg.set_content(prepared.text.fill(values, escape=False), subtype="plain", cte="quoted-printable")
    msg.add_alternative(prepared.html.fill(values, escape=True), subtype="html", cte="quoted-printable")
    return msg.as_bytes(policy=_HEADER_POLICY)


# --- The fast path: encode once per issue, splice per recipient ----------------------------------
#
# `build` above runs the whole stdlib machinery per recipient (about 2 ms for an issue of this
# size). `MessageTemplate` runs it once per issue, for everything that is the same for every
# recipient, and keeps the quoted-printable bodies cut at the recipient markers. Per recipient it
# encodes only the values and joins bytes. Every piece of a body, fixed or spliced, is encoded on
# its own and ends with a soft line break ("=\r\n"), so lines never exceed 76 characters and a
# value can never be split or merged with its neighbours by the transfer encoding; decoding
# removes the soft breaks and gives back exactly the filled text.

import binascii  # noqa: E402
import os  # noqa: E402

_CRLF = b"\r\n"
_SOFT_BREAK = b"=\r\n"


def _qp(text: str) -> bytes:
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
    return encoded.replace(b"\r\n", b"\n").replace(b"\n", _CRLF)


def _qp_piece(text: str) -> bytes:
    return _qp(text) + _SOFT_BREAK if text else b""


class _Body:
    __slots__ = ("fixed", "fields", "escape")

    def __init__(self, splice: Splice, escape: bool):
        parts = list(splice.parts)
        if not parts[-1].endswith("\n"):
            parts[-1] += "\n"  # as the stdlib's set_content does
        self.fixed = [_qp_piece(part) for part in parts]
        self.fields = splice.fields
        self.escape = escape

    def fill(self, values: dict[str, str], out: list[bytes]) -> None:
        fixed = self.fixed
        out.append(fixed[0])
        for i, field in enumerate(self.fields):
            value = values[field]
            if self.escape:
                value = html.escape(value)
            out.append(_qp_piece(value))
            out.append(fixed[i + 1])


class MessageTemplate:
    """One issue's message, ready to be personalised for each recipient in a few microseconds."""

    def __init__(self, prepared: PreparedIssue, *, base_url: str, mailbox: str, public_base_url: str = ""):
        check_headers(prepared)
        self.prepared = prepared
        self.base_url, self.mailbox = base_url, mailbox
        self.preferences = preferences_base(base_url, public_base_url)
        self._join = "&" if "?" in base_url else "?"
        # Unsigned hints: the issue (per-issue statistics) and, when not English, the language
        # the unsubscribe page speaks. The token alone decides who is unsubscribed.
        self._hint = f"&issue={prepared.issue_id}" + (f"&lang={prepared.language}" if prepared.language != "en" else "")
        # '=' never appears unencoded in a quoted-printable body, so no body line can look
        # like this boundary.
        self.boundary = f"=_nl_{os.urandom(12).hex()}"
        # Written by hand, not by the stdlib's header registry (see headers.py).
        lines = [
            ("From", headers.mailbox(prepared.from_name, prepared.from_address)),
            *([("Reply-To", headers.mailbox("", prepared.reply_to))] if prepared.reply_to else []),
            ("Subject", headers.unstructured("Subject", prepared.subject)),
            ("List-Id", headers.named(prepared.list_name, f"{prepared.list_id}.{prepared.domain}")),
            ("List-Archive", f"<{prepared.web_url}>"),
            ("Feedback-ID", f"{prepared.issue_id}:{prepared.list_id}:newsletter"),
            ("Content-Language", prepared.language),
        ]
        self.head = "".join(f"{name}: {value}\r\n" for name, value in lines).encode("ascii")
        self.tail_headers = (
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
            b"MIME-Version: 1.0\r\n"
            b'Content-Type: multipart/alternative; boundary="' + self.boundary.encode() + b'"\r\n\r\n'
        )
        part = b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
        b = self.boundary.encode()
        self.text_open = b"--" + b + _CRLF + part % b"plain"
        self.html_open = _CRLF + b"--" + b + _CRLF + part % b"html"
        self.close = _CRLF + b"--" + b + b"--" + _CRLF
        self.text = _Body(prepared.text, escape=False)
        self.html = _Body(prepared.html, escape=True)
        self.msgid_tail = f".{prepared.issue_id}@{prepared.domain}>".encode()
        self._date_at, self._date = 0, b""

    def _date_header(self) -> bytes:
        now = int(clock.now())
        if now != self._date_at:  # formatted once a second, not once a message
            self._date_at, self._date = now, formatdate(now, usegmt=True).encode()
        return self._date

    def render(self, *, address: str, name: str, token: str) -> bytes:
        """The raw message for one recipient (the same message `build` makes)."""
        wire = ascii_address(address)  # the body shows the address as the reader knows it
        if not headers.is_address(wire):
            raise InvalidAddress("not one plain address (dot-atom local part, a domain)")
        name = safe_name(name)
        https = f"{self.base_url}{self._join}token={token}{self._hint}"
        mailto = f"mailto:{self.mailbox}?subject=unsubscribe%20{token}"
        to = headers.mailbox(name, wire)
        values = {
            "name": name or "",
            "email": address,
            "unsubscribe_url": https,
            "preferences_url": preferences_url(self.preferences, token, self.prepared.language),
        }
        out = [
            self.head,
            b"To: ",
            to.encode("ascii"),
            _CRLF,
            b"Date: ",
            self._date_header(),
            _CRLF,
            b"Message-ID: <",
            os.urandom(10).hex().encode(),
            self.msgid_tail,
            _CRLF,
            b"List-Unsubscribe: <",
            https.encode("ascii"),
            b">, <",
            mailto.encode("ascii"),
            b">",
            _CRLF,
            self.tail_headers,
            self.text_open,
        ]
        self.text.fill(values, out)
        out.append(self.html_open)
        self.html.fill(values, out)
        out.append(self.close)
        return b"".join(out)
