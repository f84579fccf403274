"""Checks of an issue's translations against its default language, for `newsletter preview`.

Validation already refuses a translation that is not the same issue (another structure, a tag
given twice); these find what validation cannot call wrong but a reader would notice: a language
the list reads that the issue lacks, text left untranslated, and links, downloads and dates that
point elsewhere or say another day in one language without saying why.

A translation says that a link or download is its language's own by naming the language in the
URL (`/fr/`, `-fr.pdf`, `?lang=fr`) or, for a download, in its `language`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from pydantic import BaseModel

from newsletter.issue import Content, Issue
from newsletter.languages import check_tag, choose

URL_FIELDS = frozenset({"url", "src"})
DATE_FIELDS = frozenset({"when", "deadline"})
# Names and addresses read the same in every language.
SAME_IN_EVERY_LANGUAGE = frozenset({"footer.organisation", "footer.postal_address"})
# Fewer words than this may well be a name or an acronym ("ICMPD", "Budapest Process").
UNTRANSLATED_MIN_WORDS = 3
SHOWN = 4  # paths listed in one finding before "and N more"


@dataclass(frozen=True)
class Leaf:
    path: str
    name: str  # the field's name: url, when, title, ...
    default: str | None
    translated: str | None


def leaves(default: BaseModel, translated: BaseModel, path: str = "") -> Iterator[Leaf]:
    """Every text field of the two, side by side (lists pairwise, as far as both go)."""
    shared = type(translated).model_fields
    for name in type(default).model_fields:
        if name in ("language", "downloads") or name not in shared:
            continue  # downloads are a set each language orders its own way: see differing_downloads
        a, b = getattr(default, name), getattr(translated, name)
        here = f"{path}.{name}" if path else name
        if isinstance(a, BaseModel) or isinstance(b, BaseModel):
            if a is not None and b is not None:
                yield from leaves(a, b, here)
        elif isinstance(a, list):
            for i, (x, y) in enumerate(zip(a, b or [], strict=False)):
                yield from leaves(x, y, f"{here}[{i}]")
        elif isinstance(a, str) or isinstance(b, str):
            yield Leaf(here, name, a, b)


def names_language(url: str, language: str) -> bool:
    """Whether a URL says it is `language`'s: a path segment, a file-name part or a query value."""
    primary = language.split("-")[0].lower()  # pt-BR's pages may well say /pt/
    after_host = re.sub(r"^[a-z][a-z0-9+.-]*://[^/?#]*", "", url, flags=re.I)
    return any(part.lower() == primary for part in re.split(r"[/?#&=._-]+", after_host))


def _words(text: str) -> int:
    return len(re.findall(r"[^\W\d_]+", text))


def _listed(paths: list[str]) -> str:
    more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
    return ", ".join(paths[:SHOWN]) + more


def _date(value: str | None):
    """The structured date a `when`/`deadline` value holds, else None (free text, or nothing)."""
    if not value:
        return None
    try:
        from newsletter import dates
    except ImportError:  # pragma: no cover - dates ship with the package
        return None
    try:
        return dates.parse(value)
    except ValueError:
        return None


Problems = list[tuple[str, str]]  # (level, message)


def untranslated(issue: Issue, translation: Content, language: str) -> Problems:
    same = [
        leaf.path
        for leaf in leaves(issue, translation)
        if leaf.name not in URL_FIELDS | DATE_FIELDS
        and leaf.path not in SAME_IN_EVERY_LANGUAGE
        and leaf.default
        and leaf.default == leaf.translated
        and _words(leaf.default) >= UNTRANSLATED_MIN_WORDS
    ]
    if not same:
        return []
    n = len(same)
    said = f"{n} text{'s' * (n != 1)} read{'s' * (n == 1)} as in {issue.language} (untranslated?): {_listed(same)}"
    return [("warning", said)]


def differing_links(issue: Issue, translation: Content, language: str) -> Problems:
    out: Problems = []
    for leaf in leaves(issue, translation):
        if leaf.name not in URL_FIELDS or not leaf.default or not leaf.translated or leaf.default == leaf.translated:
            continue
        if names_language(leaf.translated, language):
            continue
        out.append(
            (
                "warning",
                f"{leaf.path} leads elsewhere than in {issue.language} ({leaf.translated} instead of "
                f"{leaf.default}) without naming {language}: a mistake? If not, name {language} in the URL",
            )
        )
    return out


def differing_downloads(issue: Issue, translation: Content, language: str) -> Problems:
    """A download one language offers and the other does not, with no `language` to say why."""
    out: Problems = []
    for i, (a, b) in enumerate(zip(issue.sections, translation.sections, strict=False)):
        for j, (x, y) in enumerate(zip(a.items, b.items, strict=False)):
            path = f"sections[{i}].items[{j}].downloads"
            mine, theirs = {d.url: d for d in x.downloads}, {d.url: d for d in y.downloads}
            only = [(theirs[u], language) for u in theirs.keys() - mine.keys()]
            only += [(mine[u], issue.language) for u in mine.keys() - theirs.keys()]
            for d, where in sorted(only, key=lambda pair: pair[0].url):
                if d.language is None and not names_language(d.url, where):
                    said = f"{path}: {d.url} is offered only in {where}, and says no language: give its `language`"
                    out.append(("warning", said))
    return out


def differing_dates(issue: Issue, translation: Content, language: str) -> Problems:
    out: Problems = []
    for leaf in leaves(issue, translation):
        if leaf.name not in DATE_FIELDS or leaf.default == leaf.translated:
            continue
        if not leaf.default or not leaf.translated:
            where = issue.language if leaf.default else language
            out.append(("warning", f"{leaf.path} is given only in {where}"))
            continue
        mine, theirs = _date(leaf.default), _date(leaf.translated)
        if mine is not None and theirs is not None:
            said = f"{leaf.path} says {leaf.translated!r}, but {leaf.default!r} in {issue.language}: another day"
            out.append(("error", said))
        elif mine is not None:
            out.append(
                (
                    "warning",
                    f"{leaf.path} is free text ({leaf.translated!r}) where {issue.language} has a date "
                    f"({leaf.default!r}), which would be written for {language} readers by itself",
                )
            )
    return out


def fallbacks(issue: Issue, audience: Mapping[str, int]) -> tuple[Problems, str]:
    """Readers whose language the issue lacks, by language, and who gets what."""
    gets: Counter[str] = Counter()
    missing: Counter[str] = Counter()
    for tag, n in audience.items():
        chosen = choose(tag, issue.languages, issue.language)
        gets[chosen] += n
        try:
            primary = check_tag(tag).split("-")[0] if tag else ""
        except ValueError:
            primary = ""
        if chosen == issue.language and primary != issue.language.split("-")[0]:
            missing[primary or "(none)"] += n

    def readers(n: int, who: str = "") -> str:
        return f"{n} reader{who} gets" if n == 1 else f"{n} readers{who} get"

    out: Problems = [
        ("warning", f"no {lang} variant: {readers(n)} {issue.language} instead")
        for lang, n in missing.most_common()
        if lang != "(none)"
    ]
    if missing["(none)"]:
        n = missing["(none)"]
        out.append(("info", f"{readers(n, ' with no or an unknown language')} {issue.language}"))
    summary = ", ".join(f"{lang} {gets[lang]}" for lang in issue.languages)
    return out, f"{sum(audience.values())} active readers: {summary}"


def check(issue: Issue, audience: Mapping[str, int] | None) -> list[tuple[str | None, str, Problems, str]]:
    """(language, rule, problems, what it says when there are none), for every translation check."""
    rules: list[tuple[str | None, str, Problems, str]] = []
    if audience is None:
        note = "readers not counted: with --local or --stack, preview counts who falls back to the default"
        rules.append((None, "languages", [("info", note)], ""))
    else:
        problems, summary = fallbacks(issue, audience)
        rules.append((None, "languages", [*problems, ("info", summary)] if problems else [], summary))
    for t in issue.translations:
        lang = t.language
        rules += [
            (lang, "untranslated", untranslated(issue, t, lang), "every text translated"),
            (lang, "links-per-language", differing_links(issue, t, lang), "links as the default's, or named"),
            (lang, "downloads-per-language", differing_downloads(issue, t, lang), "the same downloads, or named"),
            (lang, "dates-per-language", differing_dates(issue, t, lang), "the same dates"),
        ]
    return rules
