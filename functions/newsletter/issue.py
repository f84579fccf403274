"""The issue document: what an editor uploads to publish one issue of a newsletter.

The pydantic model is the format's single definition; `schema/issue.schema.json` is generated
from it (`make schema`). Bodies are Markdown (CommonMark, raw HTML switched off), so content can
carry links and emphasis but never markup of its own.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from . import dates, headers, jsontext

SCHEMA_VERSION = 1

# Issue and list ids end up in S3 keys, List-Id headers and SES message tags, whose values
# allow only ASCII letters, digits, '_' and '-'.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
Ident = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
# A list's topics (news, vacancies, ...): what readers choose, and what an issue may be sent to.
TopicId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Private-use markers are how the renderer leaves room for per-recipient values; content may not
# forge them.
_MARKERS = re.compile(r"[\ue000\ue001]")


def _one_line(value: str) -> str:
    # The header rule (headers.py), for every one-line field: a subject, a preheader and a title
    # may all end up in a header or a subject line, and the message builder applies it too.
    if _MARKERS.search(value):
        raise ValueError("contains reserved characters U+E000/U+E001")
    why = headers.refused(value)
    if why:
        raise ValueError(why)
    if _CONTROL.search(value):  # a tab: harmless in a header, but not in a one-line field
        raise ValueError("must be a single line of text: it contains a tab or a control character")
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def _text(value: str) -> str:
    if _MARKERS.search(value):
        raise ValueError("contains reserved characters U+E000/U+E001")
    if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", value):
        raise ValueError("contains control characters")
    return value


def _url(value: str) -> str:
    value = value.strip()
    if _CONTROL.search(value) or " " in value:
        raise ValueError("must be a URL without spaces or line breaks")
    scheme = value.split(":", 1)[0].lower() if ":" in value else ""
    if scheme not in ("https", "http", "mailto"):
        raise ValueError("must be an https, http or mailto URL")
    if scheme in ("https", "http") and not re.match(r"^https?://[^/?#\s]+", value, re.I):
        raise ValueError("must be an absolute URL with a host")
    return value


def _language(value: str) -> str:
    from .languages import check_tag

    return check_tag(value)


Line = Annotated[str, AfterValidator(_one_line)]
LanguageTag = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$"),
    AfterValidator(_language),
    Field(description="A BCP 47 language tag: an ISO 639-1 language, then an optional script or region (pt-BR)."),
]
Markdown = Annotated[str, AfterValidator(_text)]
Url = Annotated[str, AfterValidator(_url)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Link(Model):
    """A link as shown in a row under a news item ('Find out more | Visit our page')."""

    text: Annotated[Line, Field(max_length=200)]
    url: Url


class Image(Model):
    src: Url
    alt: Annotated[str, Field(max_length=300)] = Field(
        default="", description="Alternative text; empty only for decorative images."
    )
    width: Annotated[int, Field(ge=1, le=600)] | None = None


class Spotlight(Model):
    """The highlighted theme at the top of an issue."""

    label: Annotated[Line, Field(max_length=80)] = "In the spotlight"
    title: Annotated[Line, Field(max_length=300)]
    body: Markdown | None = None
    url: Url | None = None
    image: Image | None = None


class NewsItem(Model):
    title: Annotated[Line, Field(max_length=300)]
    body: Markdown
    links: Annotated[list[Link], Field(max_length=10)] = []
    image: Image | None = None


class Download(Model):
    """One language version of a publication."""

    label: Annotated[Line, Field(max_length=80, description="Shown text, e.g. 'English'.")]
    url: Url
    language: LanguageTag | None = None


class SectionItem(Model):
    """An entry of a side section: a vacancy, a publication, a call for proposals, an event."""

    title: Annotated[Line, Field(max_length=300)] | None = None
    subtitle: Annotated[Line, Field(max_length=300)] | None = None
    body: Markdown | None = None
    url: Url | None = None
    # Events and calls carry dates: ISO 8601, formatted for each reader's language (dates.py), or
    # free text shown as written, so that "15-17 September 2015" still fits.
    when: Annotated[Line, Field(max_length=120)] | None = Field(
        default=None,
        description="When it takes place: an ISO 8601 date (2015-09-15), date-time with its UTC offset "
        "(2015-09-15T10:00+02:00) or interval (2015-09-15/2015-09-17), shown in each reader's language; "
        "or free text (not starting with YYYY-MM-DD), shown as written.",
    )
    where: Annotated[Line, Field(max_length=200)] | None = None
    deadline: Annotated[Line, Field(max_length=120)] | None = Field(
        default=None,
        description="The closing date, written like `when`: ISO 8601, shown in each reader's language; "
        "or free text, shown as written.",
    )
    downloads: Annotated[list[Download], Field(max_length=20)] = []
    links: Annotated[list[Link], Field(max_length=10)] = []

    @field_validator("when", "deadline")
    @classmethod
    def _date(cls, value: str | None) -> str | None:
        if value is not None:
            dates.parse(value)  # ValueError says what is wrong with a value that starts like a date
        return value


SectionKind = Literal["vacancies", "publications", "calls", "events", "other"]


class Section(Model):
    kind: SectionKind
    title: Annotated[Line, Field(max_length=120)]
    intro: Markdown | None = None
    items: Annotated[list[SectionItem], Field(max_length=50)] = []
    # Shown when a section has no items ("No open vacancies at the moment").
    empty_text: Annotated[Line, Field(max_length=200)] | None = None
    link: Link | None = None


class Footer(Model):
    organisation: Annotated[Line, Field(max_length=200)]
    postal_address: Annotated[str, Field(min_length=1, max_length=500)] = Field(
        description="Physical postal address; required by anti-spam law (CAN-SPAM, CASL)."
    )
    text: Markdown | None = None
    links: Annotated[list[Link], Field(max_length=10)] = []

    @field_validator("postal_address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _text(value).strip() or _one_line(value)


class Rollout(Model):
    """Staged sending: a share of the list first, then a wait while SES feedback comes in, then the
    rest of the list only if that cohort's hard bounce and complaint rates stayed within the limits
    (else the issue pauses with the reason; `newsletter resume` sends the rest anyway)."""

    share_percent: Annotated[float, Field(ge=0.1, le=50)] = Field(
        description="The share of the list sent first (a random sample, the same for the same issue and list)."
    )
    wait_minutes: Annotated[int, Field(ge=0, le=2880)] = Field(
        default=30, description="How long after the cohort is sent its feedback is waited for before the verdict."
    )
    max_bounce_rate_percent: Annotated[float, Field(gt=0, le=100)] = Field(
        default=5.0, description="The cohort's hard bounces per message sent above which the rest is held."
    )
    max_complaint_rate_percent: Annotated[float, Field(gt=0, le=100)] = Field(
        default=0.1, description="The cohort's complaints per message sent above which the rest is held."
    )

    def plan(self) -> dict:
        """As the issue's record keeps it (DynamoDB numbers are decimals, never floats)."""
        from decimal import Decimal

        def number(v: float) -> Decimal:  # 5.0 as 5, 0.10 as 0.1: as an editor writes them
            d = Decimal(str(v))
            return d.quantize(Decimal(1)) if d == d.to_integral_value() else d.normalize()

        return {k: number(v) if isinstance(v, float) else v for k, v in self.model_dump().items()}


class Content(Model):
    """Everything a reader reads: the default language's, and each translation's."""

    subject: Annotated[Line, Field(max_length=200)]
    preheader: Annotated[Line, Field(max_length=250)] | None = None
    title: Annotated[Line, Field(max_length=200)] = Field(description="Heading of the issue.")
    view_in_browser_text: Annotated[Line, Field(max_length=200)] = "Not displayed properly? View it in your browser"
    toc_heading: Annotated[Line, Field(max_length=80)] | None = Field(
        default="In this issue", description="Heading of the list of contents; null hides it."
    )
    spotlight: Spotlight | None = None
    news: Annotated[list[NewsItem], Field(max_length=40)] = []
    read_more: Link | None = None
    sections: Annotated[list[Section], Field(max_length=12)] = []
    footer: Footer


class Translation(Content):
    """The issue in one more language: the same structure as the default (the same news items,
    sections, items and links, in the same order), every text translated; a link's target and a
    download may differ. A translator can keep one in a file of its own (`2015-07.fr.json` next to
    `2015-07.json`): `newsletter publish` adds it to the document it uploads."""

    language: LanguageTag


class Issue(Content):
    """One issue of a newsletter, as uploaded to `issues/<issue_id>.json`."""

    schema_version: Literal[1] = SCHEMA_VERSION
    issue_id: Ident = Field(description="Unique, stable id; once sent, never sent again.")
    list_id: Ident = Field(alias="list", description="Id of the mailing list that receives the issue.")
    language: LanguageTag = Field(default="en", description="The default language: readers of any other get it.")
    translations: Annotated[list[Translation], Field(max_length=30)] = Field(
        default=[], description="The issue in other languages; each reader gets theirs (else the default)."
    )
    reply_to: (
        Annotated[str, StringConstraints(pattern=headers.ADDRESS_PATTERN), AfterValidator(headers.validate_address)]
        | None
    ) = Field(default=None, description="One plain email address (ASCII local part) for replies.")
    topics: Annotated[list[TopicId], Field(max_length=30)] = Field(
        default=[],
        description="Send only to readers who chose at least one of these of the list's topics (a reader who "
        "never chose any gets every issue); none: the whole list.",
    )
    archive: bool = Field(
        default=True,
        description="List the issue in its list's public archive and Atom feed once it is sent; false keeps it "
        "out (its web version is still published).",
    )
    rollout: Rollout | Literal[False] | None = Field(
        default=None,
        description="Send to a share of the list first and judge its feedback before the rest (staged sending); "
        "false sends to the whole list at once even if the list asks for a rollout; none: the list's rollout, if any.",
    )
    # Before send_at, which is read in it (a validator sees the fields declared before its own).
    time_zone: str | None = Field(
        default=None,
        description="The IANA time zone (Europe/Vienna) send_at is written in when it has no UTC offset; with an "
        "offset, it must agree with it.",
    )
    send_at: str | None = Field(
        default=None,
        description="When the send starts (the issue is scheduled until then): an ISO 8601 date-time with its UTC "
        "offset (2026-03-02T09:00+01:00), or a local date-time (2026-03-02T09:00) with time_zone; at least 2 "
        "minutes ahead at upload, and at most the stack's ScheduleMaxDays. None: at once.",
    )

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str | None) -> str | None:
        from .schedule import check_zone

        return None if value is None else check_zone(value)

    @field_validator("send_at")
    @classmethod
    def _send_at(cls, value: str | None, info: ValidationInfo) -> str | None:
        from .schedule import parse_send_at

        if value is None:
            return None
        if "time_zone" not in info.data:
            return value.strip()  # the time zone is wrong (said there): the time cannot be read without it
        parse_send_at(value, info.data["time_zone"])  # ValueError says what is wrong
        return value.strip()

    @property
    def send_at_utc(self):
        """When the send starts (an aware datetime in UTC), or None: at once."""
        from .schedule import parse_send_at

        return parse_send_at(self.send_at, self.time_zone) if self.send_at else None

    @property
    def languages(self) -> list[str]:
        """The default language first, then the translations', as the document lists them."""
        return [self.language, *(t.language for t in self.translations)]

    def variant(self, language: str) -> Issue:
        """The issue as the readers of `language` (one of `languages`) read it."""
        if language == self.language:
            return self.model_copy(update={"translations": []})
        for t in self.translations:
            if t.language == language:
                text = {name: getattr(t, name) for name in Content.model_fields}
                return self.model_copy(update={**text, "language": language, "translations": []})
        raise KeyError(language)


def json_schema() -> dict:
    """The JSON Schema shipped as `schema/issue.schema.json`."""
    schema = Issue.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/newsletter-mailer/schema/issue.schema.json"
    return schema


# --- Reading an uploaded document -------------------------------------------------------------


class InvalidIssue(ValueError):
    """An uploaded document that cannot be published; `problems` say what is wrong and where."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive (or an Office document)",
    b"\x1f\x8b": "a gzip archive",
    b"\xff\xfe": "UTF-16 text (save it as UTF-8)",
    b"\xfe\xff": "UTF-16 text (save it as UTF-8)",
}


def field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def parse_document(raw: bytes, *, max_bytes: int) -> Issue:
    """Decode, parse and validate an uploaded issue document, or raise InvalidIssue."""
    import json

    if len(raw) > max_bytes:
        raise InvalidIssue([f"(document): larger than the limit of {max_bytes} bytes"])
    if not raw.strip():
        raise InvalidIssue(["(document): the file is empty"])
    for magic, kind in _MAGIC.items():
        if raw.startswith(magic):
            raise InvalidIssue([f"(document): this is not a JSON document: it looks like {kind}"])
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 byte order mark is harmless
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start].decode("utf-8", "replace")
        line, col = _line_col(before, len(before))
        raise InvalidIssue(
            [f"(document): not valid UTF-8 at byte {exc.start} (line {line}, column {col}); save the file as UTF-8"]
        ) from None
    try:
        data = jsontext.loads(text)
    except jsontext.TooDeep as exc:
        raise InvalidIssue([f"line {exc.lineno}, column {exc.colno}: nested too deeply: {exc}"]) from None
    except json.JSONDecodeError as exc:
        raise InvalidIssue([f"line {exc.lineno}, column {exc.colno}: JSON syntax error: {exc.msg}"]) from None
    if not isinstance(data, dict):
        kind = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
        raise InvalidIssue([f"(document): must be a JSON object, not {kind.get(type(data), 'null')}"])
    from pydantic import ValidationError

    try:
        issue = Issue.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field (check its spelling against the issue format)"
            elif err["type"] == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == ID_PATTERN:
                msg = "must be 1 to 64 letters, digits, '-' or '_', starting with a letter or digit"
            elif (
                err["type"] == "string_pattern_mismatch"
                and err.get("ctx", {}).get("pattern") == headers.ADDRESS_PATTERN
            ):
                msg = (
                    "must be one plain email address: ASCII letters, digits and .!#$%&'*+/=?^_`{|}~- before "
                    "the @, a domain after it; no name, comma or angle brackets"
                )
            if err["type"] not in ("missing", "extra_forbidden") and isinstance(err.get("input"), (str, int, float)):
                shown = repr(err["input"])
                msg += f" (got {shown[:60] + '...' if len(shown) > 60 else shown})"
            problems.append(f"{field_path(err['loc'])}: {msg}")
        raise InvalidIssue(problems) from None
    problems = translation_problems(issue)
    if problems:
        raise InvalidIssue(problems)
    return issue


def translation_problems(issue: Issue) -> list[str]:
    """What keeps the translations from being the same issue as the default: a language given
    twice (or the default's again), or a structure that differs (sections, items, links)."""
    problems, seen = [], {issue.language.lower(): "language"}
    for n, t in enumerate(issue.translations):
        where = f"translations[{n}]"
        if t.language.lower() in seen:
            problems.append(f"{where}.language: {t.language!r} is already the language of {seen[t.language.lower()]}")
            continue
        seen[t.language.lower()] = where
        problems += [f"{where}.{p}" for p in _shape_differences(issue, t)]
    return problems


def _shape_differences(default: Content, other: Content) -> list[str]:
    out = []

    def count(path: str, mine, theirs, what: str) -> bool:
        if len(mine) != len(theirs):
            out.append(f"{path}: {len(theirs)} {what} here, {len(mine)} in the default language")
            return False
        return True

    def present(path: str, mine, theirs) -> None:
        if (mine is None) != (theirs is None):
            out.append(f"{path}: {'missing' if theirs is None else 'not in the default language'}")

    present("spotlight", default.spotlight, other.spotlight)
    present("read_more", default.read_more, other.read_more)
    if count("news", default.news, other.news, "news items"):
        for i, (a, b) in enumerate(zip(default.news, other.news, strict=True)):
            count(f"news[{i}].links", a.links, b.links, "links")
            present(f"news[{i}].image", a.image, b.image)
    if count("sections", default.sections, other.sections, "sections"):
        for i, (a, b) in enumerate(zip(default.sections, other.sections, strict=True)):
            if a.kind != b.kind:
                out.append(f"sections[{i}].kind: {b.kind!r}, the default language has {a.kind!r} here")
            present(f"sections[{i}].link", a.link, b.link)
            if count(f"sections[{i}].items", a.items, b.items, "items"):
                for j, (x, y) in enumerate(zip(a.items, b.items, strict=True)):
                    count(f"sections[{i}].items[{j}].links", x.links, y.links, "links")
    count("footer.links", default.footer.links, other.footer.links, "links")
    return out
