"""The unsubscribe endpoint's HTML pages, in the newsletter's look (colours and type of
templates/email.css, a 600 px card), from string.Template: the function never imports Jinja2.

Every value is HTML-escaped here, at the one place where it meets markup. The words are the
gettext catalogs' (`catalogs`), in the page's language (English unless a caller knows better).
"""

from __future__ import annotations

from html import escape
from string import Template
from urllib.parse import urlencode

from .catalogs import N_, translations
from .languages import direction

__all__ = ["N_", "confirm", "error", "invalid_link", "not_subscribed", "unsubscribed"]

# No "$" in here: string.Template would read it as a placeholder.
_CSS = """
body { margin: 0; padding: 24px 12px; background-color: #eef1f4; font-family: Arial, Helvetica, sans-serif; font-size: 15px; line-height: 1.5; color: #222222; -webkit-text-size-adjust: 100%; }
.card { max-width: 600px; margin: 0 auto; background-color: #ffffff; }
.header { padding: 28px 20px 24px 20px; background-color: #123c69; color: #ffffff; }
.list-name { margin: 0 0 6px 0; font-size: 13px; line-height: 1.4; letter-spacing: 1px; text-transform: uppercase; color: #d6e4f2; }
h1 { margin: 0; font-family: Georgia, 'Times New Roman', serif; font-size: 28px; line-height: 1.25; font-weight: normal; color: #ffffff; }
.content { padding: 22px 20px 24px 20px; }
.content p { margin: 0 0 14px 0; }
.address { font-weight: bold; }
form { margin: 18px 0 14px 0; }
.button { display: inline-block; padding: 10px 18px; border: 0; border-radius: 3px; background-color: #123c69; color: #ffffff; font-family: Arial, Helvetica, sans-serif; font-size: 15px; font-weight: bold; cursor: pointer; }
.button:hover, .button:focus { background-color: #0b4f8a; }
.note { font-size: 13px; color: #4a4a4a; }
.field { margin: 0 0 16px 0; }
label { display: block; margin: 0 0 4px 0; font-weight: bold; }
input[type=email], input[type=text], select { box-sizing: border-box; width: 100%; max-width: 420px; padding: 8px; border: 1px solid #8a939c; border-radius: 3px; font-size: 15px; font-family: inherit; }
fieldset { margin: 0 0 16px 0; padding: 0; border: 0; }
legend { padding: 0; margin: 0 0 4px 0; font-weight: bold; }
.choice { display: block; font-weight: normal; margin: 2px 0; }
.consent { font-size: 14px; background-color: #f4f6f8; padding: 10px 12px; }
.error { color: #a4000f; font-weight: bold; }
.hp { position: absolute; left: -10000px; width: 1px; height: 1px; overflow: hidden; }
.footer { padding: 14px 20px; background-color: #2b2f33; color: #e6e8ea; font-size: 13px; line-height: 1.5; }
@media only screen and (max-width: 620px) { body { padding: 0; } h1 { font-size: 24px; } }
""".strip()

_LAYOUT = Template(
    """<!DOCTYPE html>
<html lang="$lang" dir="$dir">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>$title</title>
$head<style>
"""
    + _CSS
    + """
</style>
</head>
<body>
<main class="card">
<div class="header">
$list_line<h1>$title</h1>
</div>
<div class="content">
$content
</div>
<div class="footer">$footer</div>
</main>
</body>
</html>
"""
)

_CONFIRM = Template(
    """<p>$question</p>
<form method="post" action="$action">
<input type="hidden" name="token" value="$token">
<button class="button" type="submit">$button</button>
</form>
<p class="note">$note</p>"""
)


def who(masked_address: str, list_name: str) -> dict[str, str]:
    """The address and the list as the pages' sentences show them, escaped."""
    return {
        "address": f'<span class="address">{escape(masked_address)}</span>',
        "list_name": f"<strong>{escape(list_name)}</strong>",
    }


def layout(title: str, content: str, footer: str, *, list_name: str | None, language: str, head: str = "") -> str:
    """A whole page in the newsletter's look: `content` is markup (escape what goes into it),
    `title`, `footer` and `list_name` are text; `head`: more markup for <head> (scripts)."""
    list_line = f'<p class="list-name">{escape(list_name)}</p>\n' if list_name else ""
    return _LAYOUT.substitute(
        lang=escape(language),
        dir=direction(language),
        title=escape(title),
        list_line=list_line,
        content=content,
        footer=escape(footer),
        head=head,
    )


def _page(_, title: str, content: str, list_name: str | None = None, language: str = "en") -> str:
    footer = _("This page was sent to you because you followed an unsubscribe link from one of our emails.")
    return layout(title, content, footer, list_name=list_name, language=language)


def _gettext(language: str):
    return translations(language).gettext


def confirm(list_name: str, masked_address: str, token: str, issue_id: str | None = None, language: str = "en") -> str:
    """The GET page: names the list and the (masked) address, and offers the POST button."""
    _ = _gettext(language)
    query = {
        "token": token,
        **({"issue": issue_id} if issue_id else {}),
        **({"lang": language} if language != "en" else {}),
    }
    question = _("Do you want to stop receiving %(list_name)s at %(address)s?") % who(masked_address, list_name)
    content = _CONFIRM.substitute(
        question=question,
        # Relative: the form posts back to this same URL (custom domain or Function URL alike).
        action=escape("?" + urlencode(query)),
        token=escape(token),
        button=escape(_("Unsubscribe")),
        note=escape(_("Nothing changes until you press the button. To stay subscribed, just close this page.")),
    )
    return _page(_, _("Unsubscribe?"), content, list_name, language)


def unsubscribed(list_name: str, masked_address: str, language: str = "en") -> str:
    """After a POST, whether or not anything changed (the page never reveals membership)."""
    _ = _gettext(language)
    done = _("%(address)s will receive no more emails from %(list_name)s.") % who(masked_address, list_name)
    note = _("Other newsletters you may receive from us are not affected. You can close this page.")
    content = f'<p>{done}</p>\n<p class="note">{escape(note)}</p>'
    return _page(_, _("You are unsubscribed"), content, list_name, language)


def not_subscribed(list_name: str, masked_address: str, language: str = "en") -> str:
    """For a reader who already left (or bounced, or never confirmed): told so, not asked again."""
    _ = _gettext(language)
    said = _("%(address)s does not receive %(list_name)s: there is nothing to change or unsubscribe.") % who(
        masked_address, list_name
    )
    note = _("To receive it again, sign up on the list's page: you will be asked to confirm.")
    content = f'<p>{said}</p>\n<p class="note">{escape(note)}</p>'
    return _page(_, _("You are not subscribed"), content, list_name, language)


def invalid_link(language: str = "en") -> str:
    _ = _gettext(language)
    first = _("The link is incomplete or was altered, so it cannot unsubscribe anyone. Nothing was changed.")
    second = _(
        "Some email programs break long links across lines. Please use the Unsubscribe link at the end of "
        "the most recent email you received from us, or copy the whole link into your browser's address bar."
    )
    content = f"<p>{escape(first)}</p>\n<p>{escape(second)}</p>"
    return _page(_, _("This unsubscribe link is not valid"), content, language=language)


def error(title: str, message: str, language: str = "en") -> str:
    """Any other refusal (405, 413, an unreadable request): a title and a sentence, each
    translated when the catalog has it (the callers mark theirs with `N_`)."""
    _ = _gettext(language)
    return _page(_, _(title), f"<p>{escape(_(message))}</p>", language=language)
