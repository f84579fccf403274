"""Dates in an issue: a section item's `when` and `deadline`, shown in each reader's language.

A value that starts like an ISO 8601 date (YYYY-MM-DD) must be one: a date (`2015-09-15`), a
date-time with its UTC offset (`2015-09-15T10:00+02:00`, `Z` for UTC), or an interval of two
dates or two date-times (`2015-09-15/2015-09-17`). Anything else is free text, shown as written.
`parse` is plain Python (the issue model validates with it); `format` uses Babel, imported only
when a structured value is formatted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from babel import Locale

_LOOKS_ISO = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?(Z|[+-]\d{2}:?\d{2})?", re.I)
_SPACED = re.compile(r"\d{4}-\d{2}-\d{2} +\d{2}:\d{2}\S*")

_EXPECTED = (
    "write a date (2015-09-15), a date-time with its UTC offset (2015-09-15T10:00+02:00), an interval "
    "(2015-09-15/2015-09-17), or free text that does not start with YYYY-MM-DD"
)


@dataclass(frozen=True)
class When:
    """A structured `when` or `deadline`: one date or date-time (`end` None), or an interval."""

    start: date | datetime
    end: date | datetime | None = None

    @property
    def has_time(self) -> bool:
        return isinstance(self.start, datetime)


def parse(value: str) -> When | None:
    """The structured value of `value`, None for free text, or ValueError saying what is wrong
    with a value that starts like an ISO 8601 date."""
    value = value.strip()
    if not _LOOKS_ISO.match(value):
        return None
    parts = value.split("/")
    if len(parts) > 2:
        raise ValueError(f"starts like an ISO 8601 date but is not one: {_EXPECTED}")
    if len(parts) == 1:
        return When(_one(value))
    start, end = _one(parts[0]), _one(parts[1], "the interval's end")
    if isinstance(start, datetime) != isinstance(end, datetime):
        raise ValueError("an interval's two ends must both be dates or both be date-times with a UTC offset")
    if end < start:
        raise ValueError(f"the interval ends ({parts[1]}) before it starts ({parts[0]})")
    return When(start, end)


def _one(text: str, what: str = "") -> date | datetime:
    """One date or date-time (the whole value, or an interval's end)."""
    if match := _DATE.fullmatch(text):
        try:
            return date(*map(int, match.groups()))
        except ValueError as exc:
            raise ValueError(f"{text} is not a date: {exc}") from None
    match = _DATETIME.fullmatch(text)
    if match is None:
        if _SPACED.fullmatch(text):
            raise ValueError(f"{text}: separate the date and the time with a T (2015-09-15T10:00+02:00)")
        if what:
            raise ValueError(f"{what} ({text}) is not a date or a date-time: write both ends in full")
        raise ValueError(f"starts like an ISO 8601 date but is not one: {_EXPECTED}")
    year, month, day, hour, minute, second, offset = match.groups()
    if offset is None:
        raise ValueError(
            f"{text} has no UTC offset: add the one its time is in ({text}+02:00, or {text}Z for UTC), "
            "else readers in other time zones cannot tell when it is"
        )
    try:
        when = datetime.combine(date(int(year), int(month), int(day)), time(int(hour), int(minute), int(second or 0)))
    except ValueError as exc:
        raise ValueError(f"{text} is not a date-time: {exc}") from None
    if offset.upper() == "Z":
        return when.replace(tzinfo=UTC)
    sign = -1 if offset[0] == "-" else 1
    hours, minutes = int(offset[1:3]), int(offset[-2:])
    if hours > 23 or minutes > 59:
        raise ValueError(f"{text}: the UTC offset {offset} is out of range (-23:59 to +23:59)")
    return when.replace(tzinfo=timezone(sign * timedelta(hours=hours, minutes=minutes)))


def format(value: str | None, language: str = "en") -> str:
    """`value` as readers of `language` (a BCP 47 tag) read it: a structured date in their
    locale's words, free text as written."""
    if not value:
        return ""
    when = parse(value)
    if when is None:
        return value
    return _format(when, _locale(language))


@cache
def _locale(language: str) -> Locale:
    """Babel's locale for a tag (`pt-BR` → pt_BR), else its primary language's, else English."""
    from babel import Locale, UnknownLocaleError

    parts = language.replace("_", "-").split("-")
    for candidate in ("_".join(parts), parts[0], "en"):
        try:
            return Locale.parse(candidate)
        except (UnknownLocaleError, ValueError):
            continue
    raise AssertionError("Babel has no English locale")  # pragma: no cover


def _format(when: When, locale: Locale) -> str:
    from babel.dates import format_date, format_interval

    start, end = when.start, when.end
    if not when.has_time:
        if end is None or end == start:
            return format_date(start, "long", locale=locale)
        return format_interval(start, end, skeleton="yMMMd", locale=locale)
    if end is None or (end == start and end.utcoffset() == start.utcoffset()):
        return _date_time(start, locale)
    if start.date() == end.date() and start.utcoffset() == end.utcoffset():
        # One day, one offset: the date once, then the times ("10:00 – 17:30") and the offset once.
        short = re.sub(r"'[^']*'", "", locale.time_formats["short"].pattern)  # quoted text is literal
        skeleton = "hm" if "h" in short else "Hm"
        times = format_interval(start, end, skeleton=skeleton, locale=locale)
        return _combine(locale, format_date(start, "long", locale=locale), _zoned(times, start, locale))
    return (
        locale.interval_formats[None].replace("{0}", _date_time(start, locale)).replace("{1}", _date_time(end, locale))
    )


def _date_time(value: datetime, locale: Locale) -> str:
    """A date-time in its own offset: the long date, the short time and the offset named
    (`GMT+02:00`), as the locale joins them."""
    from babel.dates import format_date, format_time

    time_text = _zoned(format_time(value, "short", locale=locale), value, locale)
    return _combine(locale, format_date(value, "long", locale=locale), time_text)


def _zoned(time_text: str, value: datetime, locale: Locale) -> str:
    """The time with its offset, on the side the locale's long time format puts a zone."""
    from babel.dates import format_datetime

    zone = format_datetime(value, "ZZZZ", locale=locale)  # localized GMT format: GMT+02:00, UTC+02:00
    zone_first = locale.time_formats["long"].pattern.lstrip().startswith("z")  # zh: "z HH:mm:ss"
    return f"{zone} {time_text}" if zone_first else f"{time_text} {zone}"


def _combine(locale: Locale, date_text: str, time_text: str) -> str:
    # What Babel's format_datetime does with the locale's pattern ("{1}, {0}", "{1} 'at' {0}").
    pattern = str(locale.datetime_formats["long"]).replace("'", "")
    return pattern.replace("{0}", time_text).replace("{1}", date_text)
