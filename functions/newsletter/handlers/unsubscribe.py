"""Function URL → the unsubscribe confirmation page (GET, HEAD) or the unsubscribe (POST, RFC 8058).

Kept light for a fast cold start: no Jinja2, no pydantic, no web framework (see function_url).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from .. import aws, privacy
from .. import unsubscribe_pages as pages
from ..config import unsubscribe_settings
from ..function_url import BadRequest, BodyTooLarge, Request, html_response
from ..store import lists
from ..telemetry import issue_metrics, logger, service_metrics
from ..unsubscribe import MAX_BODY, Deps, respond

ALLOWED = "GET, HEAD, POST"
LIST_NAME_TTL = 300.0  # seconds a list's display name is reused

_list_names: dict[str, tuple[float, str | None]] = {}


def list_name(list_id: str) -> str | None:
    now = time.monotonic()
    cached = _list_names.get(list_id)
    if cached is None or cached[0] < now:
        if len(_list_names) > 100:
            _list_names.clear()
        record = lists.get_list(aws.client("dynamodb"), unsubscribe_settings().lists_table, list_id)
        _list_names[list_id] = cached = (now + LIST_NAME_TTL, (record or {}).get("name"))
    return cached[1]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _refused(status: int, outcome: str, page: str, reason: str | None = None, **headers: str) -> dict:
    logger.info("unsubscribe refused", extra={"outcome": outcome, **({"reason": reason} if reason else {})})
    return html_response(status, page, headers=headers)


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    try:
        request = Request.from_event(event)
    except BadRequest as exc:
        return _refused(400, "bad-request", pages.invalid_link(), str(exc))
    if request.method not in ("GET", "HEAD", "POST"):
        page = pages.error("Method not allowed", "This address only answers GET and POST requests.")
        return _refused(405, "method-not-allowed", page, request.method[:16], Allow=ALLOWED)
    form: dict[str, list[str]] = {}
    if request.method == "POST":
        try:
            form = request.form(MAX_BODY)
        except BodyTooLarge as exc:
            page = pages.error("Request too large", "This request is larger than an unsubscribe can be.")
            return _refused(413, "too-large", page, str(exc))
        except BadRequest as exc:
            return _refused(400, "bad-request", pages.invalid_link(), str(exc))

    settings = unsubscribe_settings()
    privacy.use_secret(lambda: aws.secret_parameter(settings.token_secret_parameter))  # keys the hashes in the logs
    deps = Deps(
        ddb=aws.client("dynamodb"),
        subscribers_table=settings.subscribers_table,
        issues_table=settings.issues_table,
        secret=lambda: aws.token_keys(settings.token_secret_parameter, settings.token_grace_days),
        list_name=list_name,
        now=_now,
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
    )
    # The outcome, the list and a hash: never the address, the token or the event.
    logger.info(
        "unsubscribe " + result.outcome,
        extra={
            "outcome": result.outcome,
            "method": request.method,
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
    return html_response(result.status, result.page, head=request.method == "HEAD")
