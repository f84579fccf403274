"""The signup pages: the form, "check your inbox", the confirmation button and its answers.

Same look and rules as the unsubscribe pages (`unsubscribe_pages.layout`): every value escaped
here, the words from the gettext catalogs in the page's language. The form works without
JavaScript except the bot check (the ALTCHA widget, served by us).
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from .catalogs import N_, translations
from .unsubscribe_pages import layout, who

# Each language named in itself, for the language menu; a tag not here shows as itself.
LANGUAGE_NAMES = {
    "en": "English",
    "fr": "Français",
    "pt": "Português",
    "de": "Deutsch",
    "es": "Español",
    "it": "Italiano",
    "nl": "Nederlands",
    "ru": "Русский",
    "ar": "العربية",
    "tr": "Türkçe",
    "uk": "Українська",
    "pl": "Polski",
}
WIDGET = "altcha.js"  # beside the pages: ../altcha.js from /subscribe/<list>
CHALLENGE = "altcha"

__all__ = ["N_"]


def _gettext(language: str):
    return translations(language).gettext


def _footer(_) -> str:
    return _("We send a confirmation email first: nothing is sent to you until you confirm.")


def subscribe_form(
    lst,
    language: str,
    *,
    values: dict | None = None,
    problems: dict[str, str] | None = None,
    base: str = "../",
) -> str:
    """The signup form of a list (signup.ListSignup) in `language`, with `values` filled back in
    and `problems` (field -> untranslated message) shown beside their fields."""
    _ = _gettext(language)
    values, problems = values or {}, problems or {}
    # Outside the f-strings below: the extractor (make catalogs-extract) does not look into them.
    words = {
        "email": _("Email address"),
        "name": _("Name (optional)"),
        "language": _("Language"),
        "topics": _("Topics"),
        "agree": _("I agree"),
        "subscribe": _("Subscribe"),
    }
    words = {k: escape(v) for k, v in words.items()}

    def error(name: str) -> str:
        if name not in problems:
            return ""
        return f'<p class="error" id="{name}-error">{escape(_(problems[name]))}</p>\n'

    def described(name: str) -> str:
        return f' aria-describedby="{name}-error" aria-invalid="true"' if name in problems else ""

    chosen_language = values.get("language") or language
    options = "".join(
        f'<option value="{escape(tag)}"{" selected" if tag == chosen_language else ""}>'
        f"{escape(LANGUAGE_NAMES.get(tag.split('-')[0], tag))}</option>"
        for tag in lst.languages
    )
    chosen_topics = set(values.get("topics") or lst.topics)  # all ticked to begin with
    topics = "".join(
        f'<label class="choice"><input type="checkbox" name="topic" value="{escape(tid)}"'
        f"{' checked' if tid in chosen_topics else ''}> {escape(_label(labels, language, lst.languages[0]))}</label>\n"
        for tid, labels in lst.topics.items()
    )
    consent_text, consent_language = lst.consent_in(language)
    parts = [
        f'<form method="post" action="" novalidate>\n'
        f'<div class="field"><label for="email">{words["email"]}</label>\n'
        f'<input type="email" id="email" name="email" required autocomplete="email" maxlength="254" '
        f'value="{escape(values.get("email", ""))}"{described("email")}>\n{error("email")}</div>\n',
        f'<div class="field"><label for="name">{words["name"]}</label>\n'
        f'<input type="text" id="name" name="name" autocomplete="name" maxlength="120" '
        f'value="{escape(values.get("name", ""))}"{described("name")}>\n{error("name")}</div>\n',
    ]
    if len(lst.languages) > 1:
        parts.append(
            f'<div class="field"><label for="language">{words["language"]}</label>\n'
            f'<select id="language" name="language">{options}</select></div>\n'
        )
    else:
        parts.append(f'<input type="hidden" name="language" value="{escape(lst.languages[0])}">\n')
    if topics:
        parts.append(
            f"<fieldset{described('topic')}><legend>{words['topics']}</legend>\n{topics}{error('topic')}</fieldset>\n"
        )
    parts += [
        f'<div class="field consent"><p>{escape(consent_text)}</p>\n'
        f'<label class="choice"><input type="checkbox" name="consent" value="yes" required{described("consent")}> '
        f"{words['agree']}</label>\n{error('consent')}"
        f'<input type="hidden" name="consent_version" value="{escape(lst.consent_version)}">\n'
        f'<input type="hidden" name="consent_language" value="{escape(consent_language)}"></div>\n',
        # Nobody sees this field; bots fill it in.
        '<div class="hp" aria-hidden="true"><label for="website">Website</label>'
        '<input type="text" id="website" name="website" tabindex="-1" autocomplete="off"></div>\n',
        f'<div class="field"><altcha-widget challenge="{escape(base + CHALLENGE)}" name="altcha" '
        f'language="{escape(language.split("-")[0])}" auto="onfocus"></altcha-widget>\n{error("altcha")}</div>\n',
        f'<button class="button" type="submit">{words["subscribe"]}</button>\n</form>',
    ]
    head = f'<script type="module" src="{escape(base + WIDGET)}"></script>\n'
    title = _("Subscribe to %(list_name)s") % {"list_name": lst.name}
    return layout(title, "".join(parts), _footer(_), list_name=lst.name, language=language, head=head)


def _label(labels: dict[str, str], language: str, first: str) -> str:
    found = labels.get(language) or labels.get(language.split("-")[0]) or labels.get(first)
    return found or next(iter(labels.values()))


def check_inbox(list_name: str, language: str) -> str:
    _ = _gettext(language)
    said = _(
        "If this address can receive %(list_name)s, we have just sent it an email with a link. "
        "Open it and confirm to start receiving the newsletter."
    ) % {"list_name": list_name}
    note = _("The link works for 7 days. No email? Look in your spam folder, or sign up again in a few minutes.")
    content = f'<p>{escape(said)}</p>\n<p class="note">{escape(note)}</p>'
    return layout(_("Check your inbox"), content, _footer(_), list_name=list_name, language=language)


def confirm_button(list_name: str, masked_address: str, token: str, language: str) -> str:
    """The GET of a confirmation link: a button that POSTs; nothing changes until it is pressed."""
    _ = _gettext(language)
    question = _("Confirm that %(address)s wants to receive %(list_name)s?") % who(masked_address, list_name)
    query = {"token": token, **({"lang": language} if language != "en" else {})}
    button = escape(_("Confirm my subscription"))
    content = (
        f"<p>{question}</p>\n"
        f'<form method="post" action="{escape("?" + urlencode(query))}">\n'
        f'<input type="hidden" name="token" value="{escape(token)}">\n'
        f'<button class="button" type="submit">{button}</button>\n</form>'
    )
    return layout(_("Confirm your subscription"), content, _footer(_), list_name=list_name, language=language)


def confirmed(list_name: str, masked_address: str, language: str, *, already: bool = False) -> str:
    _ = _gettext(language)
    values = who(masked_address, list_name)
    if already:
        title, said = _("You are already subscribed"), _("%(address)s already receives %(list_name)s.") % values
    else:
        title, said = _("You are subscribed"), _("%(address)s will receive %(list_name)s from now on.") % values
    note = _("Every email has a link to change your preferences or to unsubscribe. You can close this page.")
    content = f'<p>{said}</p>\n<p class="note">{escape(note)}</p>'
    return layout(title, content, _footer(_), list_name=list_name, language=language)


def link_problem(kind: str, language: str) -> str:
    """expired, stale (replaced by a newer signup, or already used up), invalid."""
    _ = _gettext(language)
    titles = {
        "expired": (_("This confirmation link has expired"), _("Links work for 7 days. Please sign up again.")),
        "stale": (
            _("This confirmation link is no longer valid"),
            _("Use the link in the most recent email we sent you, or sign up again."),
        ),
        "invalid": (
            _("This confirmation link is not valid"),
            _("The link is incomplete or was altered. Please copy the whole link from the email into your browser."),
        ),
    }
    title, said = titles.get(kind, titles["invalid"])
    return layout(title, f"<p>{escape(said)}</p>", _footer(_), list_name=None, language=language)


def preferences_form(
    lst,
    language: str,
    subscriber: dict,
    token: str,
    *,
    masked_address: str,
    problems: dict[str, str] | None = None,
    values: dict | None = None,
    saved: bool = False,
) -> str:
    """The preference centre: name, language, topics, and a way out. No JavaScript."""
    _ = _gettext(language)
    problems = problems or {}
    values = values or {
        "name": subscriber.get("name") or "",
        "language": subscriber.get("language") or lst.languages[0],
        "topics": list(subscriber.get("topics") or []),
    }
    words = {
        "name": _("Name (optional)"),
        "language": _("Language"),
        "topics": _("Topics"),
        "save": _("Save my preferences"),
        "leave": _("Unsubscribe from this list"),
        "saved": _("Your preferences are saved."),
    }
    words = {k: escape(v) for k, v in words.items()}
    intro = _("The choices of %(address)s for %(list_name)s.") % who(masked_address, lst.name)

    def error(name: str) -> str:
        return f'<p class="error" id="{name}-error">{escape(_(problems[name]))}</p>\n' if name in problems else ""

    def described(name: str) -> str:
        return f' aria-describedby="{name}-error" aria-invalid="true"' if name in problems else ""

    chosen = set(values.get("topics") or [])
    # A reader from before topics existed gets every topic: that is what they received.
    if not subscriber.get("topics") and not problems and not saved:
        chosen = set(lst.topics)
    topics = "".join(
        f'<label class="choice"><input type="checkbox" name="topic" value="{escape(tid)}"'
        f"{' checked' if tid in chosen else ''}> {escape(_label(labels, language, lst.languages[0]))}</label>\n"
        for tid, labels in lst.topics.items()
    )
    options = "".join(
        f'<option value="{escape(tag)}"{" selected" if tag == values.get("language") else ""}>'
        f"{escape(LANGUAGE_NAMES.get(tag.split('-')[0], tag))}</option>"
        for tag in lst.languages
    )
    hidden = f'<input type="hidden" name="token" value="{escape(token)}">\n'
    parts = [
        f'<p role="status">{words["saved"]}</p>\n' if saved else "",
        f"<p>{intro}</p>\n",
        f'<form method="post" action="">\n{hidden}',
        f'<div class="field"><label for="name">{words["name"]}</label>\n'
        f'<input type="text" id="name" name="name" autocomplete="name" maxlength="120" '
        f'value="{escape(values.get("name") or "")}"{described("name")}>\n{error("name")}</div>\n',
    ]
    if len(lst.languages) > 1:
        parts.append(
            f'<div class="field"><label for="language">{words["language"]}</label>\n'
            f'<select id="language" name="language">{options}</select></div>\n'
        )
    if topics:
        parts.append(
            f"<fieldset{described('topic')}><legend>{words['topics']}</legend>\n{topics}{error('topic')}</fieldset>\n"
        )
    parts += [
        f'<button class="button" type="submit" name="action" value="save">{words["save"]}</button>\n</form>\n',
        f'<form method="post" action="">\n{hidden}'
        f'<button class="button" type="submit" name="action" value="unsubscribe">{words["leave"]}</button>\n</form>',
    ]
    title = _("Your preferences")
    footer = _("Every email has this link: your choices apply from the next issue.")
    return layout(title, "".join(parts), footer, list_name=lst.name, language=language)
