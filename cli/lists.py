"""`newsletter lists`: a list's document (name, languages, topics, consent text, signup settings)
put into ListsTable, shown, and its signup form as a snippet for another site's page.

Plain functions over a boto3 DynamoDB client; the app (cli/app.py) prints.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from newsletter.store import lists

from .stack import CliError


def read_document(path: Path):
    """The list document, validated (CliError naming each problem and where)."""
    from pydantic import ValidationError

    from newsletter.mailing_list import MailingList

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CliError(f"{path} is not JSON: {exc}") from None
    try:
        return MailingList.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc'])) or '(document)'}: {e['msg']}" for e in exc.errors()]
        raise CliError(f"{path} is not a valid list document:\n  " + "\n  ".join(problems)) from None


def put(ddb, table: str, document) -> dict:
    """Store the document as the list's record; what the list already had and the document does
    not say (its sender, set at import) is kept."""
    existing = lists.get_list(ddb, table, document.list_id) or {}
    record = {**existing, **document.record()}
    lists.put_list(ddb, table, **{k: v for k, v in record.items() if k != "list_id"}, list_id=document.list_id)
    return record


def form_snippet(public_url: str, record: dict) -> str:
    """An HTML form for another site's page: it posts to the list's signup route (the site's
    origin must be in the list's `signup.origins`), with the bot check served from the stack."""
    base = public_url.rstrip("/")
    list_id = record["list_id"]
    consent = record.get("consent") or {}
    languages = record.get("languages") or ["en"]
    first = languages[0]
    text = (consent.get("text") or {}).get(first, "")
    topics = "".join(
        f'  <label><input type="checkbox" name="topic" value="{escape(t["id"])}" checked> '
        f"{escape((t.get('labels') or {}).get(first) or t['id'])}</label>\n"
        for t in record.get("topics") or []
    )
    return (
        f"<!-- {escape(record.get('name') or list_id)}: signup form (newsletter lists form {list_id}) -->\n"
        f'<script type="module" src="{escape(base)}/altcha.js"></script>\n'
        f'<form method="post" action="{escape(base)}/subscribe/{escape(list_id)}">\n'
        '  <label>Email <input type="email" name="email" required autocomplete="email"></label>\n'
        '  <label>Name <input type="text" name="name" autocomplete="name"></label>\n'
        f'  <input type="hidden" name="language" value="{escape(first)}">\n'
        f"{topics}"
        f"  <p>{escape(text)}</p>\n"
        '  <label><input type="checkbox" name="consent" value="yes" required> I agree</label>\n'
        f'  <input type="hidden" name="consent_version" value="{escape(str(consent.get("version") or ""))}">\n'
        f'  <input type="hidden" name="consent_language" value="{escape(first)}">\n'
        '  <div style="position:absolute;left:-10000px" aria-hidden="true">'
        '<input type="text" name="website" tabindex="-1" autocomplete="off"></div>\n'
        f'  <altcha-widget challenge="{escape(base)}/altcha" name="altcha"></altcha-widget>\n'
        '  <button type="submit">Subscribe</button>\n'
        "</form>\n"
    )
