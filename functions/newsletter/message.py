"""One recipient's email: the issue's rendered parts with their values spliced in, as raw MIME.

Built with the stdlib `email` package: multipart/alternative (text, then HTML), UTF-8 bodies in
quoted-printable, and the headers that bulk senders must carry: List-Id, List-Unsubscribe with an
https link and a mailto, and RFC 8058 one-click List-Unsubscribe-Post.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import quote

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

    @classmethod
    def from_json(cls, data: dict) -> "PreparedIssue":
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
        )

    @property
    def domain(self) -> str:
        return self.from_address.rsplit("@", 1)[1]


def unsubscribe_url(base_url: str, token: str) -> str:
    return f"{base_url}{'&' if '?' in base_url else '?'}token={token}"


def unsubscribe_mailto(mailbox: str, token: str) -> str:
    return f"mailto:{mailbox}?subject={quote('unsubscribe ' + token)}"


def build(prepared: PreparedIssue, *, address: str, name: str, token: str, base_url: str, mailbox: str) -> bytes:
    """The raw message for one recipient."""
    https = unsubscribe_url(base_url, token)
    values = {"name": name or "", "email": address, "unsubscribe_url": https}

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
    # Gmail's Feedback Loop groups complaints by these ids.
    msg["Feedback-ID"] = f"{prepared.issue_id}:{prepared.list_id}:newsletter"
    msg.set_content(prepared.text.fill(values, escape=False), subtype="plain", cte="quoted-printable")
    msg.add_alternative(prepared.html.fill(values, escape=True), subtype="html", cte="quoted-printable")
    return msg.as_bytes(policy=_HEADER_POLICY)
