"""The confirmation mail of a signup: one message, in the reader's language, with the link that
confirms (a page with a button: following the link alone confirms nothing).

Built with the stdlib `email` package under the header rule (`headers`): the reader's name, which
came from a public form, goes into To only as `message.safe_name` lets it, and everything else
in a header is ours. No List-Unsubscribe: the reader is on no list until they confirm.
"""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from html import escape

from . import headers
from .catalogs import translations
from .message import _BODY_POLICY, _HEADER_POLICY, ascii_address, safe_name


def _message(*, from_name: str, from_address: str, address: str, name: str, subject: str, kind: str) -> EmailMessage:
    """The headers both mails share; `kind` names the Message-ID (the local outbox files by it)."""
    headers.check(subject)  # the list's name and the welcome's subject are the operator's; and here
    msg = EmailMessage(policy=_BODY_POLICY)
    msg["From"] = Address(display_name=from_name, addr_spec=from_address)
    msg["To"] = Address(display_name=safe_name(name), addr_spec=ascii_address(address))
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(idstring=kind, domain=from_address.rpartition("@")[2])
    return msg


def _page(language: str, subject: str, content: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="{escape(language)}"><head><meta charset="utf-8">'
        f"<title>{escape(subject)}</title></head>"
        '<body style="margin:0;padding:24px 12px;background:#eef1f4;font-family:Arial,Helvetica,sans-serif;'
        'font-size:15px;line-height:1.5;color:#222222">'
        f'<div style="max-width:600px;margin:0 auto;background:#ffffff;padding:24px 20px">{content}</div>'
        "</body></html>"
    )


def _finish(msg: EmailMessage, *, language: str, subject: str, text: str, content: str) -> bytes:
    """The text and HTML parts, then Content-Language (making the parts moves Content-* headers)."""
    msg.set_content(text, subtype="plain", cte="quoted-printable")
    msg.add_alternative(_page(language, subject, content), subtype="html", cte="quoted-printable")
    msg["Content-Language"] = language
    return msg.as_bytes(policy=_HEADER_POLICY)


def confirm_url(base_url: str, token: str, language: str) -> str:
    from urllib.parse import urlencode

    query = {"token": token, **({"lang": language} if language != "en" else {})}
    return f"{base_url.rstrip('/')}/confirm?{urlencode(query)}"


def build(
    *,
    list_name: str,
    from_name: str,
    from_address: str,
    address: str,
    name: str,
    language: str,
    url: str,
) -> bytes:
    _ = translations(language).gettext
    subject = _("Please confirm your subscription to %(list_name)s") % {"list_name": list_name}
    greeting = _("Hello %(name)s,") % {"name": name} if safe_name(name) else _("Hello,")
    asked = _(
        "Somebody, probably you, asked to receive %(list_name)s at this address. To start receiving it, please confirm:"
    ) % {"list_name": list_name}
    button = _("Confirm my subscription")
    ignore = _(
        "If you did not ask for this, ignore this email: without confirmation nothing is sent, "
        "and the request expires in 7 days."
    )

    msg = _message(
        from_name=from_name, from_address=from_address, address=address, name=name, subject=subject, kind="confirm"
    )
    msg["Auto-Submitted"] = "auto-generated"  # vacation responders: do not answer it
    return _finish(
        msg,
        language=language,
        subject=subject,
        text=f"{greeting}\n\n{asked}\n\n{url}\n\n{ignore}\n",
        content=f"<p>{escape(greeting)}</p><p>{escape(asked)}</p>"
        f'<p><a href="{escape(url)}" style="display:inline-block;padding:10px 18px;background:#123c69;'
        f'color:#ffffff;font-weight:bold;text-decoration:none;border-radius:3px">{escape(button)}</a></p>'
        f'<p style="font-size:13px;color:#4a4a4a">{escape(ignore)}</p>',
    )


def build_welcome(
    *,
    welcome: dict,
    list_id: str,
    list_name: str,
    from_name: str,
    from_address: str,
    address: str,
    name: str,
    language: str,
    unsubscribe_url: str,
    preferences_url: str,
) -> bytes:
    """The list's welcome mail (rendered at `newsletter lists put`), with the reader's own links:
    they are on the list now, so it carries List-Unsubscribe and one-click like every issue."""
    _ = translations(language).gettext
    subject = welcome["subject"]
    manage, leave = _("Change your preferences"), _("Unsubscribe")
    msg = _message(
        from_name=from_name, from_address=from_address, address=address, name=name, subject=subject, kind="welcome"
    )
    msg["List-Id"] = headers.named(list_name, f"{list_id}.{from_address.rpartition('@')[2]}")
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return _finish(
        msg,
        language=language,
        subject=subject,
        text=f"{welcome['text'].rstrip()}\n\n{manage}: {preferences_url}\n{leave}: {unsubscribe_url}\n",
        content=f"{welcome['html']}"
        f'<p style="font-size:13px;color:#4a4a4a"><a href="{escape(preferences_url)}">{escape(manage)}</a> | '
        f'<a href="{escape(unsubscribe_url)}">{escape(leave)}</a></p>',
    )
