"""The public pages on the Function URL: signup, confirmation, the bot check, and unsubscribing.

Routes, a table (ROUTES: method and path to the function that answers):

    GET  /subscribe/<list>   the list's signup form          POST: sign up (`signup.subscribe`)
    GET  /confirm?token=…    a page with a button            POST: confirm (`signup.confirm`)
    GET  /preferences?token=…  the preference centre         POST: save, or leave (`preferences`)
    GET  /altcha             a proof-of-work challenge (JSON) for the form's bot check
    GET  /altcha.js          the ALTCHA widget, served from here (no CDN)
    anything else            the unsubscribe link of every email (`unsubscribe.Endpoint`), as
                             before: its URL is in every mail already sent, so it keeps any path

Routed by hand rather than with Powertools' LambdaFunctionUrlResolver: importing its
event_handler package (every resolver it has, asyncio, the event data classes) costs about 36 ms
of CPU, a fifth of `import boto3`, paid by whichever signup page comes first to a new container;
with it those cold starts measured 1.56-1.97x `import boto3`, against a goal of 1.5x
(docs/benchmarks.md). What a route needs (the signup module, its pages, altcha, the mail) is
imported by the route that uses it. Any other method on these paths, or a path beside them, gets
the unsubscribe endpoint's answer, as it did from the router's not-found handler.

`Site` is what a container keeps between invocations (lists' records for a few minutes, the
widget's bytes); its AWS clients are injected, and `reset()` forgets all of it.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from . import aws, clock, unsubscribe_pages
from .config import PublicSettings
from .function_url import BadRequest, BodyTooLarge, Request, html_response
from .privacy import address_hash
from .store import lists
from .telemetry import logger, service_metrics
from .unsubscribe import Endpoint, mask_address, page_language
from .unsubscribe_pages import N_, error

MAX_FORM = 8192
LIST_TTL_S = 60.0
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
WIDGET_FILE = "altcha.min.js"
CHALLENGE_TTL_S = 600

# The signup form runs the ALTCHA widget (ours, from 'self'): its proof of work runs in workers
# the widget makes from data: URLs, and it fetches its challenge from here.
FORM_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; worker-src 'self' blob: data:; "
    "style-src 'unsafe-inline'; img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def aws_client(service: str):
    return aws.client(service)


@dataclass
class Site:
    clients: Callable[[str], object] = aws_client
    unsubscribe: Endpoint = field(default_factory=Endpoint)
    _lists: dict[str, tuple[float, dict | None]] = field(default_factory=dict, repr=False)
    _widget: bytes | None = field(default=None, repr=False)

    def reset(self) -> None:
        self._lists.clear()
        self._widget = None
        self.unsubscribe.reset()

    def list_record(self, settings: PublicSettings, list_id: str) -> dict | None:
        now = clock.now()
        cached = self._lists.get(list_id)
        if cached is None or cached[0] < now:
            if len(self._lists) > 100:
                self._lists.clear()
            record = lists.get_list(self.clients("dynamodb"), settings.lists_table, list_id)
            self._lists[list_id] = cached = (now + LIST_TTL_S, record)
        return cached[1]

    def widget(self) -> bytes:
        if self._widget is None:
            with open(os.path.join(STATIC, WIDGET_FILE), "rb") as f:
                self._widget = f.read()
        return self._widget


# --- what the routes need -------------------------------------------------------------------------


def _html(status: int, page: str, *, csp: str | None = None, **extra: str) -> dict:
    headers = {**({"Content-Security-Policy": csp} if csp else {}), **extra}
    if csp == FORM_CSP:
        # The signup form carries no token, and with "no-referrer" browsers post it with
        # `Origin: null`, which the origin check must refuse: its own origin is sent instead.
        headers["Referrer-Policy"] = "same-origin"
    return html_response(status, page, headers=headers)


def _response(status: int, content_type: str, body: str | bytes, headers: dict[str, str]) -> dict:
    """A Function URL response; bytes go base64-encoded, as the payload format requires."""
    encoded = isinstance(body, bytes)
    if encoded:
        import base64

        body = base64.b64encode(body).decode("ascii")
    return {
        "statusCode": status,
        "headers": {**headers, "Content-Type": content_type},
        "body": body,
        "isBase64Encoded": encoded,
    }


def _language(request: Request, form: dict[str, list[str]] | None = None, offered: list[str] | None = None) -> str:
    """The page's language: the link's or form's `lang`, else the browser's first that we have
    words for (among `offered`, the list's languages, when given); else the list's first, or English."""
    from .languages import choose

    hint = request.query.get("lang") or (form or {}).get("lang") or []
    if hint:
        return page_language(hint)
    for part in request.headers.get("accept-language", "").split(",")[:8]:
        tag = part.split(";")[0].strip()
        if offered and tag:
            tag = choose(tag, offered, "")
        if not tag or tag == "*":
            continue
        chosen = page_language([tag])  # English when we have no words in it
        if chosen != "en" or tag.lower().startswith("en"):
            return chosen
    return page_language(offered[:1]) if offered else "en"


def _client(request: Request, event: dict, secret: bytes, settings: PublicSettings):
    from .signup import Client, keyed

    http = (event.get("requestContext") or {}).get("http") or {}
    origin = request.headers.get("origin")
    own = _own_origins(settings, event)
    return Client(
        ip_hash=keyed(secret, "ip", str(http.get("sourceIp") or "")),
        ua_hash=keyed(secret, "user agent", request.headers.get("user-agent", "")),
        origin=origin,
        embedded=bool(origin) and origin.lower() not in own,
    )


def _own_origin(event: dict) -> str | None:
    domain = (event.get("requestContext") or {}).get("domainName")
    return f"https://{domain}".lower() if domain else None


def _own_origins(settings: PublicSettings, event: dict) -> set[str]:
    """The pages' own origins: this Function URL's, and the custom domain's (PublicBaseUrl)."""
    from urllib.parse import urlsplit

    own = {o for o in (_own_origin(event),) if o}
    if settings.public_base_url:
        parts = urlsplit(settings.public_base_url)
        own.add(f"{parts.scheme}://{parts.netloc}".lower())
    return own


def _base_url(settings: PublicSettings, event: dict) -> str:
    """Where the pages are: the configured address (a custom domain), else this Function URL."""
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    return _own_origin(event) or ""


def _keyring(settings: PublicSettings):
    return aws.token_keys(settings.token_secret_parameter, settings.token_grace_days)


def _limits(settings: PublicSettings):
    from .signup import Limits

    return Limits(
        settings.signup_per_client_per_hour,
        settings.signup_per_list_per_hour,
        settings.signup_per_address_per_day,
    )


def _deps(site: Site, settings: PublicSettings, event: dict):
    from .signup import Deps

    def send_confirmation(lst, address, name, language, token) -> bool:
        return _send_confirmation(site, settings, event, lst, address, name, language, token)

    return Deps(
        ddb=site.clients("dynamodb"),
        subscribers_table=settings.subscribers_table,
        suppressions_table=settings.suppressions_table,
        limits_table=settings.limits_table,
        keys=lambda: _keyring(settings),
        send_confirmation=send_confirmation,
        now=clock.now,
        iso=clock.iso,
        limits=_limits(settings),
        altcha=lambda payload, now: _check_altcha(site, settings, payload, now),
        forgotten_id=lambda address: _forgotten_id(settings, address),
    )


def _signup_list(site: Site, settings: PublicSettings, list_id: str):
    from .signup import ListSignup

    return ListSignup.from_record(site.list_record(settings, list_id), _limits(settings))


def _closed(language: str) -> dict:

    page = error(N_("No such signup form"), N_("This list does not take signups here."), language)
    return _html(404, page)


# --- the routes: each answers (site, settings, request, event, path parameters) -------------------


def subscribe_page(site: Site, settings: PublicSettings, req: Request, event: dict, list_id: str) -> dict:
    from . import signup_pages as pages

    lst = _signup_list(site, settings, list_id)
    if lst is None or not lst.open:
        return _closed(_language(req))
    language = _language(req, offered=lst.languages)
    return _html(200, pages.subscribe_form(lst, language), csp=FORM_CSP)


def subscribe(site: Site, settings: PublicSettings, req: Request, event: dict, list_id: str) -> dict:
    from . import signup as su
    from . import signup_pages as pages

    try:
        fields = req.form(MAX_FORM)
    except BodyTooLarge:
        return _html(413, error(N_("Request too large"), N_("This request is larger than a signup can be.")))
    except BadRequest:
        return _html(400, error(N_("Bad request"), N_("This request could not be read.")))
    lst = _signup_list(site, settings, list_id)
    if lst is None:
        return _closed(_language(req, fields))
    form = su.Form.read(fields)
    # Pages (and the confirmation mail) in the language chosen, if we have words for it.
    if form.language:
        language = page_language([lst.language_for(form.language)])
    else:
        language = _language(req, fields, lst.languages)
    d = _deps(site, settings, event)
    client = _client(req, event, _keyring(settings).current().secret, settings)
    outcome = su.subscribe(form, client, lst, d, own_origins=_own_origins(settings, event), language=language)
    _report("signup", outcome.reason, list_id, outcome.address, mailed=outcome.mailed)
    allowed = client.embedded and outcome.reason != "origin"
    cors = {"Access-Control-Allow-Origin": client.origin or "", "Vary": "Origin"} if allowed else {}
    if outcome.page == "check-inbox":
        return _html(outcome.status, pages.check_inbox(lst.name, language), **cors)
    if outcome.page == "form":
        values = {"email": form.email, "name": form.name, "language": form.language, "topics": form.topics}
        page = pages.subscribe_form(lst, language, values=values, problems=outcome.problems)
        return _html(outcome.status, page, csp=FORM_CSP, **cors)
    if outcome.page == "limited":
        page = error(N_("Too many requests"), N_("Please wait a while and try again."), language)
        return _html(429, page, **{"Retry-After": "3600"}, **cors)
    if outcome.page == "forbidden":
        return _html(403, error(N_("Not allowed"), N_("This form cannot be sent from that site."), language))
    return _closed(language)


def _confirmation(site: Site, settings: PublicSettings, req: Request, event: dict, *, post: bool) -> dict:
    from . import signup as su
    from . import signup_pages as pages

    try:
        fields = req.form(MAX_FORM) if post else {}
    except BadRequest:
        fields = {}
    language = _language(req, fields)
    tokens = set(req.query.get("token", []) + fields.get("token", []))
    if len(tokens) != 1:
        return _html(400, pages.link_problem("invalid", language))
    d = _deps(site, settings, event)
    client = _client(req, event, _keyring(settings).current().secret, settings)
    result = su.confirm(tokens.pop(), client, d, post=post)
    _report("confirm", result.reason, result.list_id, result.address)
    if result.page in ("expired", "stale", "invalid"):
        return _html(result.status, pages.link_problem(result.page, language))
    record = site.list_record(settings, result.list_id) or {}
    name = record.get("name") or result.list_id
    masked = mask_address(result.address)
    if result.page == "confirm":
        return _html(200, pages.confirm_button(name, masked, req.query["token"][0], language))
    if result.page == "confirmed" and record.get("welcome"):  # once: only one POST confirms
        _send_welcome(site, settings, event, record, result.subscriber or {}, result.address)
    return _html(200, pages.confirmed(name, masked, language, already=result.page == "already"))


def confirm_page(site: Site, settings: PublicSettings, req: Request, event: dict) -> dict:
    return _confirmation(site, settings, req, event, post=False)


def confirm(site: Site, settings: PublicSettings, req: Request, event: dict) -> dict:
    return _confirmation(site, settings, req, event, post=True)


def _preferences(site: Site, settings: PublicSettings, req: Request, event: dict, *, post: bool) -> dict:
    from . import preferences as prefs
    from . import signup_pages as pages

    try:
        fields = req.form(MAX_FORM) if post else None
    except BadRequest:
        return _html(400, error(N_("Bad request"), N_("This request could not be read.")))
    ring = _keyring(settings)
    who = prefs.read_token(ring, req.query.get("token", []) + (fields or {}).get("token", []))
    lst = _signup_list(site, settings, who[0]) if who else None
    language = _language(req, fields, lst.languages if lst else None)
    client = _client(req, event, ring.current().secret, settings)
    result = prefs.answer(
        site.clients("dynamodb"),
        settings.subscribers_table,
        lst,
        who,
        fields,
        at=clock.iso(),
        client_hash=client.ip_hash,
    )
    _report("preferences", result.reason, result.list_id, result.address)
    if result.page == "saved":  # the answer in the language just chosen, when we have words for it
        language = page_language([result.values["language"]])
    if result.page == "invalid":
        return _html(400, unsubscribe_pages.invalid_link(language))
    record = site.list_record(settings, result.list_id) or {}
    name = record.get("name") or result.list_id
    masked = mask_address(result.address)
    if result.page == "not-subscribed":
        return _html(200, unsubscribe_pages.not_subscribed(name, masked, language))
    if result.page == "unsubscribed":
        return _html(200, unsubscribe_pages.unsubscribed(name, masked, language))
    token = next(iter(set(req.query.get("token", []) + (fields or {}).get("token", []))))
    page = pages.preferences_form(
        lst,
        language,
        result.subscriber or {},
        token,
        masked_address=masked,
        problems=result.problems,
        values=result.values or None,
        saved=result.page == "saved",
    )
    return _html(result.status, page)


def preferences_page(site: Site, settings: PublicSettings, req: Request, event: dict) -> dict:
    return _preferences(site, settings, req, event, post=False)


def preferences_save(site: Site, settings: PublicSettings, req: Request, event: dict) -> dict:
    return _preferences(site, settings, req, event, post=True)


def challenge(site: Site, settings: PublicSettings, req: Request, event: dict) -> dict:
    body = json.dumps(_new_challenge(settings, _keyring(settings).current().secret))
    headers = {"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"}
    return _response(200, "application/json", body, headers)


def widget(site: Site, settings: PublicSettings, req: Request, event: dict) -> dict:
    headers = {
        "Cache-Control": "public, max-age=86400",
        # A module script is fetched with CORS: embedding sites load it too.
        "Access-Control-Allow-Origin": "*",
        "X-Content-Type-Options": "nosniff",
    }
    body = site.widget()
    if "gzip" in req.headers.get("accept-encoding", ""):
        import zlib

        gzip = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
        body = gzip.compress(body) + gzip.flush()
        headers["Content-Encoding"] = "gzip"
    return _response(200, "text/javascript; charset=utf-8", body, headers)


Route = Callable[..., dict]
# (method, path) -> the route; the one path with a parameter is named by LIST_PATH's pattern.
ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/subscribe/<list_id>"): subscribe_page,
    ("POST", "/subscribe/<list_id>"): subscribe,
    ("GET", "/confirm"): confirm_page,
    ("POST", "/confirm"): confirm,
    ("GET", "/preferences"): preferences_page,
    ("POST", "/preferences"): preferences_save,
    ("GET", "/altcha"): challenge,
    ("GET", "/altcha.js"): widget,
}
# A list id: the characters a path segment may hold (RFC 3986's unreserved and sub-delims, and
# the ones gateways decode), one segment.
LIST_PATH = re.compile(r"^/subscribe/(?P<list_id>[-._~()'!*:@,;=+&$%<> \[\]{}|^\w]+)$")


def route(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route for a request and its path parameters; None: not a signup page."""
    if match := LIST_PATH.match(path):
        found = ROUTES.get((method, "/subscribe/<list_id>"))
        return (found, match.groupdict()) if found else None
    found = ROUTES.get((method, path))
    return (found, {}) if found else None


SIGNUP_PATHS = ("/confirm", "/preferences", "/altcha", "/altcha.js")


def is_signup_path(path: str) -> bool:
    return path in SIGNUP_PATHS or path.startswith("/subscribe/")


def handle(site: Site, event, settings: PublicSettings) -> dict:
    """One invocation. The unsubscribe link of every email (any other path) is answered by the
    unsubscribe endpoint directly, as is a signup path with a method it does not take. A signup
    page sees the request rebuilt from what `Request` could read, every field of the type it
    expects; whatever cannot be read gets the unsubscribe endpoint's 400."""
    try:
        request = Request.from_event(event)
    except BadRequest:
        request = None
    if request is None or not is_signup_path(request.path):
        reply = site.unsubscribe.answer(event, settings)
        return html_response(reply.status, reply.page, head=reply.head, headers=reply.headers)
    clean = _clean_event(event, request)
    found = route(request.method, request.path)
    if found is None:
        reply = site.unsubscribe.answer(clean, settings)
        return html_response(reply.status, reply.page, head=reply.head, headers=reply.headers)
    answer, params = found
    return answer(site, settings, Request.from_event(clean), clean, **params)


def _clean_event(event: dict, request: Request) -> dict:
    """The event as the signup pages read it: what `request` holds, and the request context's
    domain, id and source IP only when they are strings."""
    context_in = event.get("requestContext") if isinstance(event.get("requestContext"), dict) else {}
    http_in = context_in.get("http") if isinstance(context_in.get("http"), dict) else {}

    def text(value) -> str:
        return value if isinstance(value, str) else ""

    raw_query = event.get("rawQueryString")
    return {
        "version": "2.0",
        "rawPath": request.path,
        "rawQueryString": raw_query if isinstance(raw_query, str) else urlencode(request.query, doseq=True),
        "headers": request.headers,
        "queryStringParameters": {k: ",".join(v) for k, v in request.query.items()} or None,
        "requestContext": {
            "domainName": text(context_in.get("domainName")),
            "requestId": text(context_in.get("requestId")),
            "stage": "$default",
            "http": {"method": request.method, "path": request.path, "sourceIp": text(http_in.get("sourceIp"))},
        },
        "body": request.raw_body or None,
        "isBase64Encoded": request.base64_body,
    }


# --- the bot check and the mail -------------------------------------------------------------------


def _altcha_keys(secret: bytes) -> tuple[bytes, bytes]:
    import hashlib
    import hmac

    return (
        hmac.new(secret, b"newsletter altcha challenge v1", hashlib.sha256).digest(),
        hmac.new(secret, b"newsletter altcha key v1", hashlib.sha256).digest(),
    )


def _new_challenge(settings: PublicSettings, secret: bytes) -> dict:
    import secrets

    from altcha import create_challenge

    challenge_key, solution_key = _altcha_keys(secret)
    half = max(1, settings.altcha_max_number // 2)
    challenge = create_challenge(
        "PBKDF2/SHA-256",
        settings.altcha_cost,
        counter=half + secrets.randbelow(half),  # work the browser does: about `counter` derivations
        expires_at=int(time.time()) + CHALLENGE_TTL_S,
        hmac_secret=challenge_key,
        hmac_key_secret=solution_key,
    )
    return challenge.to_dict()


def _check_altcha(site: Site, settings: PublicSettings, payload: str, now: float) -> str | None:
    """None when the proof of work is genuine, unexpired and not used before; else what to say."""
    from altcha import verify_solution

    from . import signup_pages
    from .store import limits

    if not payload:
        return signup_pages.N_("Please complete the check that you are not a robot.")
    secret = aws.token_keys(settings.token_secret_parameter, settings.token_grace_days).current().secret
    challenge_key, solution_key = _altcha_keys(secret)
    try:
        result = verify_solution(payload, challenge_key, hmac_key_secret=solution_key)
    except (ValueError, TypeError, KeyError):
        result = None
    if result is None or not result.verified:
        return signup_pages.N_("The check that you are not a robot failed or expired. Please try again.")
    signature = json.loads(_b64(payload))["challenge"]["signature"]
    if not limits.once(site.clients("dynamodb"), settings.limits_table, f"altcha#{signature}", now + CHALLENGE_TTL_S):
        return signup_pages.N_("The check that you are not a robot failed or expired. Please try again.")
    return None


def _b64(payload: str) -> str:
    import base64

    return base64.b64decode(payload).decode("utf-8")


def _send_confirmation(site: Site, settings: PublicSettings, event: dict, lst, address, name, language, token) -> bool:
    from . import signup_mail
    from .store import ses as ses_adapter

    record = site.list_record(settings, lst.list_id) or {}
    from_address = record.get("from_address") or settings.sender_address
    raw = signup_mail.build(
        list_name=lst.name,
        from_name=record.get("from_name") or settings.sender_name,
        from_address=from_address,
        address=address,
        name=name,
        language=language,
        url=signup_mail.confirm_url(_base_url(settings, event), token, language),
    )
    answer = ses_adapter.send_email(
        site.clients("sesv2"),
        raw,
        address,
        configuration_set=settings.configuration_set,
        tags={"list": lst.list_id, "kind": "confirmation"},
        sender=from_address,
    )
    if answer.kind != ses_adapter.SENT:
        logger.warning("confirmation mail not sent", extra={"answer": answer.kind, "code": answer.code})
    return answer.kind == ses_adapter.SENT


def _forgotten_id(settings: PublicSettings, address: str) -> str:
    from .erasure import forgotten_id

    return forgotten_id(aws.erasure_key(settings.token_secret_parameter), address)


def _send_welcome(site: Site, settings: PublicSettings, event: dict, record: dict, subscriber: dict, address: str):
    from . import signup_mail, tokens
    from .languages import choose
    from .message import preferences_url
    from .store import ses as ses_adapter

    welcome = record["welcome"]
    languages = list(record.get("languages") or welcome)
    language = choose(
        subscriber.get("language"), list(welcome), languages[0] if languages[0] in welcome else next(iter(welcome))
    )
    key = aws.token_keys(settings.token_secret_parameter, settings.token_grace_days).current()
    token = tokens.sign(key.secret, record["list_id"], address, key_version=key.version)
    base = _base_url(settings, event)
    hint = f"&lang={language}" if language != "en" else ""
    from_address = record.get("from_address") or settings.sender_address
    raw = signup_mail.build_welcome(
        welcome=welcome[language],
        list_id=record["list_id"],
        list_name=record.get("name") or record["list_id"],
        from_name=record.get("from_name") or settings.sender_name,
        from_address=from_address,
        address=address,
        name=subscriber.get("name") or "",
        language=language,
        unsubscribe_url=f"{base}/?token={token}{hint}",
        preferences_url=preferences_url(f"{base}/preferences", token, language),
    )
    answer = ses_adapter.send_email(
        site.clients("sesv2"),
        raw,
        address,
        configuration_set=settings.configuration_set,
        tags={"list": record["list_id"], "kind": "welcome"},
        sender=from_address,
    )
    if answer.kind != ses_adapter.SENT:
        logger.warning("welcome mail not sent", extra={"answer": answer.kind, "code": answer.code})


def _report(what: str, reason: str, list_id: str | None, address: str | None, **extra) -> None:
    # The outcome, the list and a keyed hash: never the address, the token, the IP or the event.
    logger.info(
        f"{what} {reason}",
        extra={
            "outcome": reason,
            "list_id": list_id,
            **({"address_hash": address_hash(address)} if address else {}),
            **extra,
        },
    )
    metric = {"signup": "Signup", "confirm": "Confirmation", "preferences": "Preferences"}[what]
    service_metrics({f"{metric}{''.join(p.title() for p in reason.split(':')[0].split('-'))}": 1})
