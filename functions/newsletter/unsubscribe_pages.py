"""The unsubscribe endpoint's HTML pages, in the newsletter's look (colours and type of
templates/email.css, a 600 px card), from string.Template: the function never imports Jinja2.

Every value is HTML-escaped here, at the one place where it meets markup.
"""

from __future__ import annotations

from html import escape
from string import Template
from urllib.parse import urlencode

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
.footer { padding: 14px 20px; background-color: #2b2f33; color: #e6e8ea; font-size: 13px; line-height: 1.5; }
@media only screen and (max-width: 620px) { body { padding: 0; } h1 { font-size: 24px; } }
""".strip()

_LAYOUT = Template(
    """<!DOCTYPE html>
<html lang="en" dir="ltr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>$title</title>
<style>
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
    """<p>Do you want to stop receiving <strong>$list_name</strong> at <span class="address">$address</span>?</p>
<form method="post" action="$action">
<input type="hidden" name="token" value="$token">
<button class="button" type="submit">Unsubscribe</button>
</form>
<p class="note">Nothing changes until you press the button. To stay subscribed, just close this page.</p>"""
)

_DONE = Template(
    """<p><span class="address">$address</span> will receive no more emails from <strong>$list_name</strong>.</p>
<p class="note">Other newsletters you may receive from us are not affected. You can close this page.</p>"""
)

_INVALID = """<p>The link is incomplete or was altered, so it cannot unsubscribe anyone. Nothing was changed.</p>
<p>Some email programs break long links across lines. Please use the Unsubscribe link at the end of
the most recent email you received from us, or copy the whole link into your browser's address bar.</p>"""

_FOOTER = "This page was sent to you because you followed an unsubscribe link from one of our emails."


def _page(title: str, content: str, list_name: str | None = None) -> str:
    list_line = f'<p class="list-name">{escape(list_name)}</p>\n' if list_name else ""
    return _LAYOUT.substitute(title=escape(title), list_line=list_line, content=content, footer=escape(_FOOTER))


def confirm(list_name: str, masked_address: str, token: str, issue_id: str | None = None) -> str:
    """The GET page: names the list and the (masked) address, and offers the POST button."""
    query = {"token": token, **({"issue": issue_id} if issue_id else {})}
    content = _CONFIRM.substitute(
        list_name=escape(list_name),
        address=escape(masked_address),
        # Relative: the form posts back to this same URL (custom domain or Function URL alike).
        action=escape("?" + urlencode(query)),
        token=escape(token),
    )
    return _page("Unsubscribe?", content, list_name)


def unsubscribed(list_name: str, masked_address: str) -> str:
    """After a POST, whether or not anything changed (the page never reveals membership)."""
    content = _DONE.substitute(list_name=escape(list_name), address=escape(masked_address))
    return _page("You are unsubscribed", content, list_name)


def invalid_link() -> str:
    return _page("This unsubscribe link is not valid", _INVALID)


def error(title: str, message: str) -> str:
    """Any other refusal (405, 413, an unreadable request): a title and a sentence."""
    return _page(title, f"<p>{escape(message)}</p>")
