"""Unsubscribing through the signed link in every email (and RFC 8058 one-click).

The link carries a token naming one list and one address (`tokens`), so it can unsubscribe that
address from that list and nothing else. A GET only shows a confirmation page: link scanners and
mail previews follow GETs, so a GET never changes anything. A POST (the page's button, or a mail
provider's one-click `List-Unsubscribe=One-Click`) moves the subscriber from `active` to
`unsubscribed`, once; repeating it, or a token for an address that is not subscribed, gets the same
answer and changes nothing, so the answer never tells whether an address is on a list.

The link may also carry `issue=<id>`, unsigned: a hint for statistics only. It is counted (the
issue's `unsubscribed` counter) when it is well formed, names an issue sent to the token's list,
and the POST really unsubscribed someone.

`Endpoint` answers one Function URL request: the method, the body's size and encoding, then
`respond`, logging the outcome and emitting its metrics. What a container keeps between
invocations (the lists' display names, for LIST_NAME_TTL seconds) lives in it, and `reset()`
forgets it; the AWS clients are injected (`clients`: service name → boto3 client).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from . import aws, clock, tokens
from . import unsubscribe_pages as pages
from .config import PublicSettings
from .function_url import BadRequest, BodyTooLarge, Request
from .privacy import address_hash, normalise_address
from .store import issues, lists, subscribers
from .telemetry import issue_metrics, logger, service_metrics

MAX_BODY = 4096  # a one-click body is 26 bytes; the page's form a few hundred
ALLOWED = "GET, HEAD, POST"
LIST_NAME_TTL = 300.0  # seconds a list's display name is reused
LIST_NAMES_KEPT = 100  # display names a container keeps
# issue.ID_PATTERN, repeated here so that this function never imports pydantic (a test compares).
ISSUE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
ISSUE_COUNTER = "unsubscribed"


class InvalidLink(ValueError):
    """No token, more than one, or one we did not sign (forged, truncated, edited, old format)."""


@dataclass(frozen=True)
class Link:
    list_id: str
    address: str
    token: str
    issue_id: str | None  # the unsigned statistics hint, when well formed


@dataclass(frozen=True)
class Deps:
    """What the endpoint needs from outside: storage, settings, the token secret, names, the clock."""

    ddb: object
    subscribers_table: str
    issues_table: str
    secret: Callable[[], object]  # the keys (or one secret), asked for only once a token is there to check
    list_name: Callable[[str], str | None]
    now: Callable[[], str]
    # The subscriber's status (None: not on the list), for the GET page: one who left is told so.
    status: Callable[[str, str], str | None] | None = None


@dataclass(frozen=True)
class Result:
    status: int
    page: str
    outcome: str  # invalid | shown | not-subscribed | unsubscribed | unchanged
    list_id: str | None = None
    address_hash: str | None = None
    reason: str | None = None  # why a link was refused (never an address)
    issue_counted: str | None = None


def mask_address(address: str) -> str:
    """j***@example.com: enough for its owner to recognise, too little to harvest."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def read_link(token_values: list[str], issue_values: list[str], secret: Callable[[], bytes]) -> Link:
    """The link's list, address and issue hint; InvalidLink unless it carries one genuine token."""
    distinct = set(token_values)
    if not distinct or distinct == {""}:
        raise InvalidLink("no token")
    if len(distinct) > 1:
        raise InvalidLink("more than one token")
    (token,) = distinct
    try:
        list_id, address = tokens.verify(secret(), token)
    except tokens.InvalidToken as exc:
        raise InvalidLink(str(exc)) from exc
    hints = set(issue_values)
    issue_id = hints.pop() if len(hints) == 1 else None
    if issue_id is not None and not ISSUE_ID.fullmatch(issue_id):
        issue_id = None  # a malformed hint is dropped; the signed part is what counts
    return Link(list_id, normalise_address(address), token, issue_id)


def page_language(values: list[str]) -> str:
    """The page's language: the link's unsigned `lang` hint (the language the reader was mailed
    in), when it is one tag of a language; else English."""
    import gettext

    from .catalogs import translations
    from .languages import check_tag

    try:
        tag = check_tag(values[0]) if len(values) == 1 and len(values[0]) <= 35 else "en"
    except ValueError:
        return "en"
    # A language without a catalog reads English: the page then says it is English.
    return tag if isinstance(translations(tag), gettext.GNUTranslations) else "en"


def respond(
    method: str,
    token_values: list[str],
    issue_values: list[str],
    deps: Deps,
    *,
    one_click: bool = False,
    language: str = "en",
) -> Result:
    """GET/HEAD: the confirmation page. POST: unsubscribe, then the "You are unsubscribed" page,
    in `language` (the link's hint)."""
    try:
        link = read_link(token_values, issue_values, deps.secret)
    except InvalidLink as exc:
        return Result(400, pages.invalid_link(language), "invalid", reason=str(exc))
    seen = dict(list_id=link.list_id, address_hash=address_hash(link.address))
    name = deps.list_name(link.list_id) or link.list_id
    masked = mask_address(link.address)
    if method != "POST":
        if deps.status is not None and deps.status(link.list_id, link.address) != subscribers.ACTIVE:
            return Result(200, pages.not_subscribed(name, masked, language), "not-subscribed", **seen)
        return Result(200, pages.confirm(name, masked, link.token, link.issue_id, language), "shown", **seen)

    changed = subscribers.unsubscribe(
        deps.ddb,
        deps.subscribers_table,
        link.list_id,
        link.address,
        deps.now(),
        unsubscribed_via="one-click" if one_click else "page",
    )
    counted = None
    if changed and link.issue_id:
        if issues.count_for_list(deps.ddb, deps.issues_table, link.issue_id, link.list_id, ISSUE_COUNTER):
            counted = link.issue_id
    outcome = "unsubscribed" if changed else "unchanged"
    return Result(200, pages.unsubscribed(name, masked, language), outcome, **seen, issue_counted=counted)


# --- the Function URL endpoint ----------------------------------------------------------------------


def aws_client(service: str):
    return aws.client(service)  # looked up at each call: the environment decides (aws.py)


@dataclass(frozen=True)
class Reply:
    """What the endpoint answers: an HTML page (headers only for a HEAD)."""

    status: int
    page: str
    head: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Endpoint:
    clients: Callable[[str], object] = aws_client
    _list_names: dict[str, tuple[float, str | None]] = field(default_factory=dict, repr=False)

    def reset(self) -> None:
        """Forget what the container knows: a new container."""
        self._list_names.clear()

    def list_name(self, settings: PublicSettings, list_id: str) -> str | None:
        """The list's display name, read at most every LIST_NAME_TTL seconds."""
        now = clock.now()
        cached = self._list_names.get(list_id)
        if cached is None or cached[0] < now:
            if len(self._list_names) > LIST_NAMES_KEPT:
                self._list_names.clear()
            record = lists.get_list(self.clients("dynamodb"), settings.lists_table, list_id)
            self._list_names[list_id] = cached = (now + LIST_NAME_TTL, (record or {}).get("name"))
        return cached[1]

    def answer(self, event: dict, settings: PublicSettings) -> Reply:
        """One Function URL event: refused (bad request, method, size), or `respond`'s page."""
        try:
            request = Request.from_event(event)
        except BadRequest as exc:
            return _refused(400, "bad-request", pages.invalid_link(), str(exc))
        if request.method not in ("GET", "HEAD", "POST"):
            page = pages.error(
                pages.N_("Method not allowed"), pages.N_("This address only answers GET and POST requests.")
            )
            return _refused(405, "method-not-allowed", page, request.method[:16], Allow=ALLOWED)
        form: dict[str, list[str]] = {}
        if request.method == "POST":
            try:
                form = request.form(MAX_BODY)
            except BodyTooLarge as exc:
                page = pages.error(
                    pages.N_("Request too large"), pages.N_("This request is larger than an unsubscribe can be.")
                )
                return _refused(413, "too-large", page, str(exc))
            except BadRequest as exc:
                return _refused(400, "bad-request", pages.invalid_link(), str(exc))

        deps = Deps(
            ddb=self.clients("dynamodb"),
            subscribers_table=settings.subscribers_table,
            issues_table=settings.issues_table,
            secret=lambda: aws.token_keys(settings.token_secret_parameter, settings.token_grace_days),
            list_name=lambda list_id: self.list_name(settings, list_id),
            now=clock.iso,
            status=lambda list_id, address: subscribers.status_of(
                self.clients("dynamodb"), settings.subscribers_table, list_id, address
            ),
        )
        # The body is read (and its size and encoding checked) only for a POST: a GET or HEAD that
        # carries one, however large or malformed, is answered as if it had none.
        one_click = request.method == "POST" and (
            form.get("List-Unsubscribe") == ["One-Click"]
            or (request.content_type == "multipart/form-data" and b'name="List-Unsubscribe"' in request.body(MAX_BODY))
        )
        result = respond(
            request.method,
            request.query.get("token", []) + form.get("token", []),
            request.query.get("issue", []) + form.get("issue", []),
            deps,
            one_click=one_click,
            language=page_language(request.query.get("lang", []) or form.get("lang", [])),
        )
        _report(result, request.method, one_click)
        return Reply(result.status, result.page, head=request.method == "HEAD")


def _refused(status: int, outcome: str, page: str, reason: str | None = None, **headers: str) -> Reply:
    logger.info("unsubscribe refused", extra={"outcome": outcome, **({"reason": reason} if reason else {})})
    return Reply(status, page, headers=headers)


def _report(result: Result, method: str, one_click: bool) -> None:
    # The outcome, the list and a hash: never the address, the token or the event.
    logger.info(
        "unsubscribe " + result.outcome,
        extra={
            "outcome": result.outcome,
            "method": method,
            "list_id": result.list_id,
            "address_hash": result.address_hash,
            "one_click": one_click,
            **({"reason": result.reason} if result.reason else {}),
            **({"issue_id": result.issue_counted} if result.issue_counted else {}),
        },
    )
    # Without an issue dimension too: the links carry no issue hint unless the sender adds one.
    service_metrics(
        {
            "Unsubscribed": int(result.outcome == "unsubscribed"),
            "UnsubscribeLinkInvalid": int(result.outcome == "invalid"),
        }
    )
    if result.issue_counted:
        issue_metrics(result.issue_counted, {"Unsubscribed": 1})
