"""Signing up with double opt-in: the public form's request checked, recorded, confirmed.

`subscribe` takes one POST of the signup form. In order: the list must take signups and the
request come from an origin it allows; the honeypot field must be empty (a bot that fills it is
answered as if it succeeded); the client (a keyed hash of its IP) and the list must be under their
hourly limits; the ALTCHA proof of work must be genuine, fresh and unused; the fields must be
valid. Then the answer is always the same "check your inbox" page, whether the address is new,
pending, active, unsubscribed or suppressed, so nobody can probe who is on a list. Behind it: a
suppressed, bounced or complained address gets nothing; an active one nothing; a new, pending or
unsubscribed one a confirmation mail, at most one per RESEND_AFTER_S and a few a day.

`confirm` makes a signup active, through a signed, expiring token (`tokens.sign_for`). A GET of
the link only shows a button: mail scanners follow links, and must confirm nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from . import tokens
from .catalogs import N_
from .privacy import normalise_address
from .store import limits, signups, suppressions

PENDING_TTL_S = 7 * 86400  # the confirmation link's life, and an unconfirmed signup's
RESEND_AFTER_S = 600  # one confirmation mail per address per 10 minutes, whatever is posted
HOUR, DAY = 3600, 86400
MAX_NAME = 120
MAX_TOPICS = 30
CONFIRM = "confirm"


@dataclass(frozen=True)
class Limits:
    per_client_per_hour: int = 10
    per_list_per_hour: int = 1000
    per_address_per_day: int = 3


@dataclass(frozen=True)
class ListSignup:
    """What a list record says about signing up (mailing_list.MailingList.record())."""

    list_id: str
    name: str
    open: bool
    languages: list[str]
    topics: dict[str, dict[str, str]]  # id -> language -> label
    consent_version: str
    consent_text: dict[str, str]
    consent_hash: dict[str, str]
    origins: list[str]
    limits: Limits

    @classmethod
    def from_record(cls, record: dict | None, defaults: Limits) -> ListSignup | None:
        """None unless the list exists and has a consent text (no consent, no signup form)."""
        if not record or not (record.get("consent") or {}).get("text"):
            return None
        signup = record.get("signup") or {}
        consent = record["consent"]
        return cls(
            list_id=record["list_id"],
            name=record.get("name") or record["list_id"],
            open=bool(signup.get("open", True)),
            languages=list(record.get("languages") or ["en"]),
            topics={t["id"]: dict(t.get("labels") or {}) for t in record.get("topics") or []},
            consent_version=str(consent.get("version") or ""),
            consent_text=dict(consent["text"]),
            consent_hash=dict(consent.get("hash") or {}),
            origins=[o.lower() for o in signup.get("origins") or []],
            limits=Limits(
                per_client_per_hour=int(signup.get("per_client_per_hour") or defaults.per_client_per_hour),
                per_list_per_hour=int(signup.get("per_list_per_hour") or defaults.per_list_per_hour),
                per_address_per_day=defaults.per_address_per_day,
            ),
        )

    def language_for(self, wanted: str | None) -> str:
        """One of the list's languages for a reader who asked for `wanted` (else its first)."""
        from .languages import choose

        return choose(wanted, self.languages, self.languages[0])

    def consent_in(self, language: str) -> tuple[str, str]:
        """(the consent text shown in `language`, its language)."""
        if language in self.consent_text:
            return self.consent_text[language], language
        first = self.languages[0]
        return self.consent_text.get(first) or next(iter(self.consent_text.values())), first


@dataclass(frozen=True)
class Client:
    """Who is asking, as the consent record keeps it: keyed hashes, never the IP or agent."""

    ip_hash: str
    ua_hash: str
    origin: str | None  # the Origin header, when the browser sent one
    embedded: bool  # posted from another site's page (the embeddable form)


@dataclass(frozen=True)
class Form:
    email: str
    name: str
    language: str
    topics: list[str]
    consent: bool
    consent_version: str
    consent_language: str
    altcha: str
    honeypot: str

    @classmethod
    def read(cls, fields: dict[str, list[str]]) -> Form:
        def one(name: str) -> str:
            values = fields.get(name) or [""]
            return values[0].strip()

        return cls(
            email=one("email"),
            name=one("name"),
            language=one("language"),
            topics=list(dict.fromkeys(t.strip() for t in fields.get("topic", []) if t.strip()))[: MAX_TOPICS + 1],
            consent=one("consent") in ("yes", "on", "1", "true"),
            consent_version=one("consent_version"),
            consent_language=one("consent_language"),
            altcha=one("altcha"),
            honeypot=one("website"),
        )


@dataclass(frozen=True)
class Outcome:
    """What to answer: `page` (check-inbox, form, closed, forbidden, limited) and why, for metrics."""

    status: int
    page: str
    reason: str  # accepted, honeypot, limited-client, limited-list, bot, invalid, closed, origin
    problems: dict[str, str] = field(default_factory=dict)  # form field -> what is wrong
    mailed: bool = False
    address: str | None = None  # for a keyed hash in the log line; never logged in clear


@dataclass(frozen=True)
class Deps:
    ddb: object
    subscribers_table: str
    suppressions_table: str
    limits_table: str
    keys: Callable[[], object]  # the token KeyRing (keys.KeyRing)
    send_confirmation: Callable[[ListSignup, str, str, str, str], bool]  # list, address, name, language, token
    now: Callable[[], float]
    iso: Callable[[], str]
    limits: Limits = Limits()
    altcha: Callable[[str, float], str | None] | None = None  # payload, now -> None if genuine, else why
    # The suppression key of an erased address (erasure.forgotten_id); None: nobody was erased.
    forgotten_id: Callable[[str], str] | None = None


def keyed(secret: bytes, label: str, value: str) -> str:
    """A keyed hash of a value we must not keep (an IP, a user agent): 32 hex digits."""
    key = hmac.new(secret, f"newsletter {label} v1".encode(), hashlib.sha256).digest()
    return hmac.new(key, value.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:32]


def check_address(value: str) -> str:
    """The address as we keep it (one spelling, ASCII: SES sends to nothing else), or ValueError.
    email-validator's verdict, with the rules `newsletter subscribers import` applies; a plain
    address (`plain_address`) is one it accepts, so it is not loaded for that."""
    if not value:
        raise ValueError(N_("Please enter your email address."))
    if len(value) > 254:
        raise ValueError(N_("This email address is too long."))
    plain = plain_address(value)
    if plain is not None:
        return plain
    from email_validator import EmailNotValidError, validate_email

    try:
        found = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        raise ValueError(N_("This is not a valid email address.")) from None
    return normalise_address(found.ascii_email or found.normalized)


# The form nearly every address has: RFC 5322 atoms joined by dots before the @, ASCII letters,
# digits and hyphens after it. email-validator accepts such an address unless its domain breaks a
# rule checked below, and changes nothing in it but the domain's case; importing it compiles
# patterns for internationalised addresses that cost about 20 ms, a tenth of the public
# function's cold start. tests/test_signup.py holds the two to the same verdicts.
_ATEXT = r"[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]"
_PLAIN = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*@[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z])?")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
# email-validator's SPECIAL_USE_DOMAIN_NAMES (a test compares): never accepted, nor their subdomains.
SPECIAL_USE = ("arpa", "invalid", "local", "localhost", "onion", "test")


def plain_address(value: str) -> str | None:
    """`value` as check_address keeps it, when it is a plain address email-validator accepts;
    None when only email-validator can tell (it may accept it, or not)."""
    if len(value) > 254 or not _PLAIN.fullmatch(value):  # too long: email-validator says by how much
        return None
    local, domain = value.split("@")
    domain = domain.lower()
    labels = domain.split(".")
    if (
        len(labels) < 2  # a domain without a dot is not deliverable
        or len(domain) > 253
        or "xn--" in domain  # Punycode: email-validator decodes and checks it
        or any(len(label) > 63 or label[2:4] == "--" or not _LABEL.fullmatch(label) for label in labels)
        or any(domain == name or domain.endswith("." + name) for name in SPECIAL_USE)
    ):
        return None
    return normalise_address(f"{local}@{domain}")


_NAME_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ue000\ue001<>@]")


def name_problem(name: str) -> str | None:
    if len(name) > MAX_NAME:
        return N_("This name is too long.")
    if _NAME_UNSAFE.search(name) or "=?" in name:
        # It goes into the confirmation mail's To header and every issue's greeting.
        return N_("A name may not contain line breaks, control characters, @, < or >.")
    return None


def topics_problem(topics: list[str], lst: ListSignup) -> str | None:
    if len(topics) > MAX_TOPICS or any(t not in lst.topics for t in topics):
        return N_("Please choose among the topics shown.")
    if lst.topics and not topics:
        return N_("Please choose at least one topic.")
    return None


def check_form(form: Form, lst: ListSignup) -> tuple[dict[str, str], str | None]:
    """Problems by field (messages to show, untranslated msgids), and the address when valid."""
    problems: dict[str, str] = {}
    address = None
    try:
        address = check_address(form.email)
    except ValueError as exc:
        problems["email"] = str(exc)
    if why := name_problem(form.name):
        problems["name"] = why
    if why := topics_problem(form.topics, lst):
        problems["topic"] = why
    if not form.consent:
        problems["consent"] = N_("Please confirm that you agree, or we cannot send you anything.")
    elif form.consent_version != lst.consent_version:
        problems["consent"] = N_("The terms have changed since this page was loaded: please read them again.")
    return problems, address


def allowed_origin(lst: ListSignup, origin: str | None, own: set[str]) -> bool:
    """A POST from our own pages, from a site the list names, or with no Origin at all (older
    browsers, scripts: the other checks still hold). "null" (a sandbox, a file) is no site."""
    if origin is None:
        return True
    return origin.lower() in own | set(lst.origins)


def suppressed(deps: Deps, address: str) -> bool:
    """Bounced, complained, suppressed by hand, or erased (a keyed hash of the address)."""
    if suppressions.is_suppressed(deps.ddb, deps.suppressions_table, address):
        return True
    return deps.forgotten_id is not None and suppressions.is_suppressed(
        deps.ddb, deps.suppressions_table, deps.forgotten_id(address)
    )


def subscribe(
    form: Form, client: Client, lst: ListSignup, deps: Deps, *, own_origins: set[str], language: str | None = None
) -> Outcome:
    """One POST of the form; `language`: the one the answer and the confirmation mail speak
    (default: the reader's, among the list's)."""
    if not lst.open:
        return Outcome(404, "closed", "closed")
    if not allowed_origin(lst, client.origin, own_origins):
        return Outcome(403, "forbidden", "origin")
    now = deps.now()
    if form.honeypot:  # only bots fill a field nobody sees: tell them it worked
        return Outcome(200, "check-inbox", "honeypot")
    limit = lst.limits
    if not limits.take(deps.ddb, deps.limits_table, f"client#{client.ip_hash}", limit.per_client_per_hour, HOUR, now):
        return Outcome(429, "limited", "limited-client")
    if not limits.take(deps.ddb, deps.limits_table, f"list#{lst.list_id}", limit.per_list_per_hour, HOUR, now):
        return Outcome(429, "limited", "limited-list")
    why = deps.altcha(form.altcha, now) if deps.altcha else None
    if why is not None:
        return Outcome(400, "form", "bot", {"altcha": why})
    problems, address = check_form(form, lst)
    if problems or address is None:
        return Outcome(400, "form", "invalid", problems)

    accepted = Outcome(200, "check-inbox", "accepted", address=address)
    if suppressed(deps, address):
        return accepted
    reader_language = lst.language_for(form.language or form.consent_language)
    text, text_language = lst.consent_in(form.consent_language or reader_language)
    ring = deps.keys()
    key = ring.current()
    request = signups.Request(
        signup_id=secrets.token_urlsafe(12),
        at=deps.iso(),
        now=int(now),
        name=form.name,
        language=reader_language,
        topics=form.topics,
        consent={
            "method": "embedded-form" if client.embedded else "form",
            "text_version": lst.consent_version,
            "text_language": text_language,
            "text_hash": lst.consent_hash.get(text_language) or hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "language": reader_language,
            "ip_hash": client.ip_hash,
            "ua_hash": client.ua_hash,
            "hash_key_version": key.version,
            **({"origin": client.origin} if client.embedded and client.origin else {}),
        },
    )
    outcome, signup_id = signups.request(
        deps.ddb,
        deps.subscribers_table,
        lst.list_id,
        address,
        request,
        pending_ttl_s=PENDING_TTL_S,
        resend_after_s=RESEND_AFTER_S,
    )
    if signup_id is None:
        return accepted
    address_key = f"address#{keyed(key.secret, 'address', lst.list_id + ' ' + address)}"
    if not limits.take(deps.ddb, deps.limits_table, address_key, limit.per_address_per_day, DAY, now):
        return accepted
    token = tokens.sign_for(
        key.secret,
        CONFIRM,
        lst.list_id,
        address,
        expires_at=int(now) + PENDING_TTL_S,
        ref=signup_id,
        key_version=key.version,
    )
    mailed = deps.send_confirmation(lst, address, form.name, language or reader_language, token)
    return Outcome(200, "check-inbox", "accepted", mailed=mailed, address=address)


# --- confirming ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Confirmation:
    status: int
    page: str  # confirm (the GET's button), confirmed, already, stale, expired, invalid
    reason: str
    list_id: str | None = None
    address: str | None = None
    subscriber: dict | None = None


def read_confirmation(keys, token: str, now: float) -> tokens.Claims | Confirmation:
    try:
        return tokens.verify_for(keys, token, CONFIRM, now)
    except tokens.ExpiredToken:
        return Confirmation(410, "expired", "expired")
    except tokens.InvalidToken as exc:
        return Confirmation(400, "invalid", f"invalid: {exc}")


def confirm(token: str, client: Client, deps: Deps, *, post: bool) -> Confirmation:
    """GET: the page with the button (nothing changes). POST: the signup becomes a subscription."""
    claims = read_confirmation(deps.keys(), token, deps.now())
    if isinstance(claims, Confirmation):
        return claims
    seen = dict(list_id=claims.list_id, address=claims.address)
    if not post:
        return Confirmation(200, "confirm", "shown", **seen)
    if suppressed(deps, claims.address):
        return Confirmation(410, "stale", "suppressed", **seen)
    outcome, subscriber = signups.confirm(
        deps.ddb,
        deps.subscribers_table,
        claims.list_id,
        claims.address,
        claims.ref,
        at=deps.iso(),
        now=int(deps.now()),
        confirmation={"ip_hash": client.ip_hash, "ua_hash": client.ua_hash},
    )
    if outcome == signups.CONFIRMED:
        return Confirmation(200, "confirmed", "confirmed", subscriber=subscriber, **seen)
    if outcome == signups.ALREADY_CONFIRMED:
        return Confirmation(200, "already", "already", subscriber=subscriber, **seen)
    return Confirmation(410, "stale", "stale", **seen)
