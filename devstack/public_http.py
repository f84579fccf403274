"""The public function over HTTP, locally: what its Function URL does, on an address of this machine.

The local stack server (`devstack/server.py`) runs one of these beside moto, so that the signup
form, the confirmation link and the unsubscribe link can be opened in a browser. Each request
becomes the event a Function URL sends (payload 2.0: `rawPath`, `rawQueryString`, lower-case
`headers`, `cookies`, `requestContext.http.sourceIp` = the client's address,
`requestContext.domainName` = host:port), the body base64-encoded as the Function URL encodes
anything that is not text (a form is not), and `LocalStack.invoke` runs the template's handler with
exactly the template's environment. The answer is written back as a Function URL writes it:
`statusCode`, `headers`, `cookies`, the body decoded when `isBase64Encoded`; an answer that is not
such a dict is sent as JSON with 200; a handler that raises or overruns its timeout gives 502.

Differences from AWS, all about being local and plain HTTP:

- No TLS. A Function URL is https only, and the function takes its own origin to be
  `https://<domainName>` when it checks a POST's Origin. A browser on this server's pages sends
  `Origin: http://host:port`; that one value (this server's own origin, nothing else) is passed on
  as `https://host:port`, what the browser would have sent to the real URL.
- One invocation at a time: the handler keeps per-container state (the router's current event,
  `newsletter.handlers.public.site`, the AWS clients) and `LocalStack.invoke` swaps process-wide
  state (os.environ, the clients, the clock) around it, so it is not safe to run twice at once in
  one process. Lambda gives each concurrent request a container of its own; here they queue for
  one container, behind a lock. Requests are still accepted and read concurrently (threads).
- The access log (server.log) names the method, the path (never the query: tokens are in it), the
  status and the time taken.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

FUNCTION = "UnsubscribeFunction"  # the function behind the Function URL (template.yaml)
MAX_BODY = 6 * 1024 * 1024  # a Function URL's request payload limit (BUFFERED)
# What a Function URL passes as text; every other body (a form among them) arrives base64-encoded.
TEXT_TYPES = ("application/json", "application/javascript", "application/xml")
# Set by the Function URL itself, never taken from the client.
OWN_HEADERS = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-port", "x-amzn-trace-id")


def is_text(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind.startswith("text/") or kind in TEXT_TYPES or kind.endswith(("+json", "+xml"))


def function_url_event(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    source_ip: str,
    domain: str,
    port: int,
    now: float | None = None,
) -> dict:
    """The Function URL event (payload 2.0) for one HTTP request; `target` is the request line's
    path and query, `headers` the request's headers in order (repeated names allowed)."""
    now = time.time() if now is None else now
    parts = urlsplit(target)
    path = parts.path or "/"
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        name = name.lower()
        if name == "cookie":  # payload 2.0 moves cookies out of the headers
            cookies += [c.strip() for c in value.split(";") if c.strip()]
        elif name not in OWN_HEADERS:
            joined[name] = f"{joined[name]},{value}" if name in joined else value
    joined.update(
        {
            "x-forwarded-for": source_ip,
            "x-forwarded-proto": "http",
            "x-forwarded-port": str(port),
            "x-amzn-trace-id": f"Root=1-{int(now):08x}-{uuid.uuid4().hex[:24]}",
        }
    )
    request_id = str(uuid.uuid4())
    event: dict = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": parts.query,
        **({"cookies": cookies} if cookies else {}),
        "headers": joined,
    }
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if pairs:
        params: dict[str, str] = {}
        for k, v in pairs:  # as Lambda does: repeated names joined with commas
            params[k] = f"{params[k]},{v}" if k in params else v
        event["queryStringParameters"] = params
    url_id = domain.split(".", 1)[0].split(":", 1)[0]
    event["requestContext"] = {
        "accountId": "anonymous",
        "apiId": url_id,
        "domainName": domain,
        "domainPrefix": url_id,
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": joined.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now * 1000),
    }
    if body:
        text = None
        if is_text(joined.get("content-type", "")):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        event["body"] = text if text is not None else base64.b64encode(body).decode("ascii")
        event["isBase64Encoded"] = text is None
    else:
        event["isBase64Encoded"] = False
    return event


def http_response(answer) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) for what the handler returned, as a Function URL reads it."""
    if not isinstance(answer, dict) or "statusCode" not in answer:
        # A Function URL takes any other answer as a JSON body.
        return 200, [("Content-Type", "application/json")], json.dumps(answer).encode("utf-8")
    status = int(answer["statusCode"])
    headers = [(str(k), str(v)) for k, v in (answer.get("headers") or {}).items()]
    headers += [("Set-Cookie", str(c)) for c in answer.get("cookies") or []]
    body = answer.get("body") or ""
    if answer.get("isBase64Encoded"):
        data = base64.b64decode(body)
    else:
        data = body.encode("utf-8") if isinstance(body, str) else json.dumps(body).encode("utf-8")
    return status, headers, data


class PublicServer:
    """The Function URL of one function of a LocalStack, on http://host:port.

    Made in two steps, because the stack needs the address for its links: `PublicServer(host)`
    binds a free port (`url`), `start(stack)` serves; `stop()` ends it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, logical_id: str = FUNCTION):
        self.logical_id = logical_id
        self.stack = None
        self.lock = threading.Lock()  # one container: one invocation at a time (see the docstring)
        self.httpd = _Server((host, port), _Handler)
        self.httpd.public = self  # type: ignore[attr-defined]
        self.host, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def domain(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, stack) -> PublicServer:
        self.stack = stack
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="public-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
        self.httpd.server_close()

    def invoke(self, event: dict) -> tuple[int, list[tuple[str, str]], bytes]:
        """One invocation of the function, as its Function URL makes it: the HTTP answer."""
        from .stack import FAILURES, _log_failure

        with self.lock:
            context = self.stack.context(self.logical_id)
            try:
                answer = self.stack.invoke(self.logical_id, event, context)
            except FAILURES as exc:
                _log_failure(self.logical_id, exc)
                return _bad_gateway()
            if context.get_remaining_time_in_millis() <= 0:
                _log_failure(self.logical_id, TimeoutError("Task timed out"))
                return _bad_gateway()
        try:
            return http_response(answer)
        except (TypeError, ValueError) as exc:  # an answer the Function URL could not read
            _log_failure(self.logical_id, exc)
            return _bad_gateway()


def _bad_gateway() -> tuple[int, list[tuple[str, str]], bytes]:
    return 502, [("Content-Type", "application/json")], b'{"Message":"Internal Server Error"}'


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the stdlib's 5 drops connections of a burst (a browser opens several)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as browsers expect; every answer has a length
    server_version = "newsletter-local-function-url"
    sys_version = ""

    def _serve(self) -> None:
        public: PublicServer = self.server.public  # type: ignore[attr-defined]
        started = time.monotonic()
        status, headers, data = self._answer(public)
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        path = urlsplit(self.path).path
        print(
            f"public {self.command} {path[:120]} {status} {1000 * (time.monotonic() - started):.0f} ms",
            file=sys.stderr,
            flush=True,
        )

    def _answer(self, public: PublicServer) -> tuple[int, list[tuple[str, str]], bytes]:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            self.close_connection = True
            return 411, [("Content-Type", "text/plain")], b"Length Required"
        try:
            length = int(self.headers.get("content-length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True  # the body is left unread
            return 413, [("Content-Type", "text/plain")], b"Request Entity Too Large"
        body = self.rfile.read(length) if length else b""
        headers = list(self.headers.items())
        own = f"http://{public.domain}"
        # No TLS here: this server's own origin is passed on as the https one a Function URL has.
        headers = [(k, f"https://{public.domain}" if k.lower() == "origin" and v == own else v) for k, v in headers]
        event = function_url_event(
            self.command,
            self.path,
            headers,
            body,
            source_ip=self.client_address[0],
            domain=public.domain,
            port=public.port,
        )
        return public.invoke(event)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

    def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's signature
        pass  # the stdlib's line carries the query (tokens); _serve logs without it
