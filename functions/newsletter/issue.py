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
    field_validator,
)

from . import headers, jsontext

SCHEMA_VERSION = 1

# Issue and list ids end up in S3 keys, List-Id headers and SES message tags, whose values
# allow only ASCII letters, digits, '_' and '-'.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
Ident = Annotated[str, StringConstraints(pattern=ID_PATTERN)]

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


Line = Annotated[str, AfterValidator(_one_line)]
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
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")] | None = None


class SectionItem(Model):
    """An entry of a side section: a vacancy, a publication, a call for proposals, an event."""

    title: Annotated[Line, Field(max_length=300)] | None = None
    subtitle: Annotated[Line, Field(max_length=300)] | None = None
    body: Markdown | None = None
    url: Url | None = None
    # Events and calls carry dates; free text so that "15-17 September 2015" fits.
    when: Annotated[Line, Field(max_length=120)] | None = None
    where: Annotated[Line, Field(max_length=200)] | None = None
    deadline: Annotated[Line, Field(max_length=120)] | None = None
    downloads: Annotated[list[Download], Field(max_length=20)] = []
    links: Annotated[list[Link], Field(max_length=10)] = []


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


class Issue(Model):
    """One issue of a newsletter, as uploaded to `issues/<issue_id>.json`."""

    schema_version: Literal[1] = SCHEMA_VERSION
    issue_id: Ident = Field(description="Unique, stable id; once sent, never sent again.")
    list_id: Ident = Field(alias="list", description="Id of the mailing list that receives the issue.")
    subject: Annotated[Line, Field(max_length=200)]
    preheader: Annotated[Line, Field(max_length=250)] | None = None
    title: Annotated[Line, Field(max_length=200)] = Field(description="Heading of the issue.")
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")] = "en"
    view_in_browser_text: Annotated[Line, Field(max_length=200)] = "Not displayed properly? View it in your browser"
    toc_heading: Annotated[Line, Field(max_length=80)] | None = Field(
        default="In this issue", description="Heading of the list of contents; null hides it."
    )
    spotlight: Spotlight | None = None
    news: Annotated[list[NewsItem], Field(max_length=40)] = []
    read_more: Link | None = None
    sections: Annotated[list[Section], Field(max_length=12)] = []
    footer: Footer
    reply_to: (
        Annotated[str, StringConstraints(pattern=headers.ADDRESS_PATTERN), AfterValidator(headers.validate_address)]
        | None
    ) = Field(default=None, description="One plain email address (ASCII local part) for replies.")


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
        return Issue.model_validate(data)
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
