"""The list document: what a list is called, what readers may choose, what they consent to, and
how signing up is guarded. `newsletter lists put LIST.json` validates it here and stores it in
ListsTable; the public pages read that record (never this module: no pydantic on their cold start).

    {
      "list": "infomail",
      "name": "ICMPD Infomail",
      "languages": ["en", "fr", "pt"],
      "topics": [{"id": "news", "labels": {"en": "News", "fr": "Actualités", "pt": "Notícias"}}],
      "consent": {"version": "2026-01", "text": {"en": "I agree to receive ...", "fr": "..."}},
      "signup": {"open": true, "origins": ["https://www.icmpd.org"]}
    }
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from . import headers
from .issue import ID_PATTERN, Ident, LanguageTag, Line, Rollout, TopicId


def _origin(value: str) -> str:
    import re

    if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", value):
        raise ValueError("must be an origin: scheme and host (and port), e.g. https://www.example.org, no path")
    return value.lower()


Origin = Annotated[str, AfterValidator(_origin)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Topic(Model):
    id: TopicId
    labels: dict[LanguageTag, Annotated[Line, Field(max_length=80)]] = Field(
        description="What the topic is called, per language; the list's first language is required."
    )


class Consent(Model):
    version: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,32}$")] = Field(
        description="Change it whenever the text changes: every consent records the version it was given to."
    )
    text: dict[LanguageTag, Annotated[str, StringConstraints(min_length=10, max_length=2000)]]


class Welcome(Model):
    """The mail a reader gets once, when they confirm: a subject and a Markdown body, per language."""

    subject: Annotated[Line, Field(max_length=200)]
    body: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]


class Signup(Model):
    open: bool = Field(default=True, description="Whether the public signup form takes new readers.")
    origins: Annotated[list[Origin], Field(max_length=20)] = Field(
        default=[], description="Other sites whose pages may embed the form (CORS)."
    )
    per_client_per_hour: Annotated[int, Field(ge=1, le=10_000)] | None = None
    per_list_per_hour: Annotated[int, Field(ge=1, le=1_000_000)] | None = None


class MailingList(Model):
    list_id: Ident = Field(alias="list")
    name: Annotated[Line, Field(max_length=120)]
    languages: Annotated[list[LanguageTag], Field(min_length=1, max_length=30)] = ["en"]
    topics: Annotated[list[Topic], Field(max_length=30)] = []
    consent: Consent
    signup: Signup = Signup()
    welcome: dict[LanguageTag, Welcome] = Field(
        default={}, description="Optional: the welcome mail per language (the list's first language required)."
    )
    rollout: Rollout | None = Field(
        default=None, description="Optional: how every issue of the list is rolled out (an issue may say otherwise)."
    )
    from_name: Annotated[Line, Field(max_length=120)] | None = None
    from_address: (
        Annotated[str, StringConstraints(pattern=headers.ADDRESS_PATTERN), AfterValidator(headers.validate_address)]
        | None
    ) = None

    @field_validator("languages")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len({v.lower() for v in value}) != len(value):
            raise ValueError("a language is given twice")
        return value

    @model_validator(mode="after")
    def _every_language_said(self) -> MailingList:
        first = self.languages[0]
        problems = []
        if first not in self.consent.text:
            problems.append(f"consent.text: no text in {first}, the list's first language")
        for n, topic in enumerate(self.topics):
            if first not in topic.labels:
                problems.append(f"topics[{n}].labels: no label in {first}, the list's first language")
        if self.welcome and first not in self.welcome:
            problems.append(f"welcome: no mail in {first}, the list's first language")
        ids = [t.id for t in self.topics]
        if len(set(ids)) != len(ids):
            problems.append("topics: a topic id is given twice")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def record(self) -> dict:
        """What ListsTable keeps: the document, with each consent text's hash beside it."""
        values = self.model_dump(mode="json", by_alias=False, exclude_none=True)
        if self.rollout:
            values["rollout"] = self.rollout.plan()
        values["consent"]["hash"] = {
            lang: hashlib.sha256(text.encode("utf-8")).hexdigest() for lang, text in self.consent.text.items()
        }
        if self.welcome:
            # Rendered here, once: the public function only fills in the reader's links.
            from .content import to_html, to_text

            values["welcome"] = {
                lang: {"subject": w.subject, "html": str(to_html(w.body)), "text": to_text(w.body, 76)}
                for lang, w in self.welcome.items()
            }
        return values


__all__ = ["ID_PATTERN", "MailingList", "Topic", "Consent", "Signup", "Welcome"]
