"""Lambda Function URL requests (payload format 2.0) and HTML responses, without a web framework.

Powertools' LambdaFunctionUrlResolver would add about 55 ms to the cold start of a function that
answers two small pages (measured with `python -X importtime`); this is the little of it that the
unsubscribe endpoint needs.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import parse_qs

FORM = "application/x-www-form-urlencoded"

# Every page: never cached (it names a subscriber), never framed or sniffed, no scripts, styles
# only inline, forms post only back here, and the token never leaks in a Referer.
HTML_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
}


class BadRequest(ValueError):
    """A request that cannot be read (a body that is not what it claims to be)."""


class BodyTooLarge(BadRequest):
    pass


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case, as Function URLs deliver them
    raw_body: str
    base64_body: bool

    @classmethod
    def from_event(cls, event: dict) -> Request:
        """The request in a Function URL event; BadRequest if it cannot be read (whatever it holds)."""
        if not isinstance(event, dict):
            raise BadRequest("not a Function URL event")
        try:
            http = (event.get("requestContext") or {}).get("http") or {}
            raw_query = event.get("rawQueryString")
            if raw_query is not None:
                # The raw string, not queryStringParameters, which joins repeated names with commas.
                query = parse_qs(str(raw_query), keep_blank_values=True, max_num_fields=50)
            else:
                query = {str(k): [str(v)] for k, v in (event.get("queryStringParameters") or {}).items()}
            body = event.get("body") or ""
            return cls(
                method=str(http.get("method") or "").upper()[:16],
                path=str(http.get("path") or event.get("rawPath") or "/"),
                query=query,
                headers={str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()},
                raw_body=body if isinstance(body, str) else "",
                base64_body=bool(event.get("isBase64Encoded")),
            )
        except ValueError as exc:
            raise BadRequest("too many query parameters") from exc
        except (AttributeError, TypeError) as exc:
            raise BadRequest("not a Function URL event") from exc

    def body(self, max_bytes: int) -> bytes:
        """The body as bytes (decoded from base64 when the URL encoded it); BodyTooLarge past max_bytes."""
        raw = self.raw_body
        if self.base64_body:
            if len(raw) > (max_bytes + 2) // 3 * 4 + 4:  # checked before decoding anything
                raise BodyTooLarge(f"body over {max_bytes} bytes")
            try:
                data = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise BadRequest("body is not valid base64") from exc
        else:
            data = raw.encode("utf-8")
        if len(data) > max_bytes:
            raise BodyTooLarge(f"body over {max_bytes} bytes")
        return data

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def form(self, max_bytes: int) -> dict[str, list[str]]:
        """A form-encoded body's fields ({} for any other content type)."""
        data = self.body(max_bytes)
        if self.content_type not in (FORM, "") or not data:
            return {}
        try:
            return parse_qs(data.decode("utf-8"), keep_blank_values=True, max_num_fields=50, strict_parsing=False)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest("body is not a form") from exc


def html_response(status: int, page: str, *, head: bool = False, headers: dict[str, str] | None = None) -> dict:
    """A Function URL response carrying an HTML page (headers only for HEAD)."""
    return {
        "statusCode": status,
        "headers": {**HTML_HEADERS, **(headers or {})},
        "body": "" if head else page,
        "isBase64Encoded": False,
    }
