"""A DynamoDB endpoint on 127.0.0.1 answered by a fake (fakes/slow_dynamodb.SlowDynamoDB or a
subclass): what lets processes share one fake, as they share DynamoDB, through real boto3 clients
pointed at it with `endpoint_url` (any credentials).

The protocol is DynamoDB's JSON one: a POST whose X-Amz-Target names the operation, the request
and answer as JSON; an error answers with its HTTP status and {"__type", "message"} plus the
error's own fields (a cancelled transaction's CancellationReasons), as DynamoDB sends them, so
botocore parses them into the same ClientError. Each request is answered in a thread of its own
(ThreadingHTTPServer), after the fake's latency (time.sleep in that thread), over kept-alive
connections. Nothing is logged.

`GET /state` answers what the fake holds, as JSON: {"items": [[table, item], ...], "calls": {...},
"cpu_s": the serving process's CPU} and `state` (a callable) adds the caller's fields.

Import rule: only the standard library at module level (see fakes/__init__.py).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# X-Amz-Target's operation -> the fake's method
_METHODS = {"BatchGetItem": "batch_get_item", "PutItem": "put_item", "TransactWriteItems": "transact_write_items"}


def serve(fake, *, host: str = "127.0.0.1", port: int = 0, state: Callable[[], dict] | None = None):
    """The server, answering in a daemon thread; its endpoint is endpoint_url(server). Stop it
    with server.shutdown() and server.server_close()."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: botocore reuses its connections

        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            operation = (self.headers.get("X-Amz-Target") or "").rsplit(".", 1)[-1]
            method = getattr(fake, _METHODS.get(operation, ""), None)
            if method is None:
                self._answer(400, _error("UnknownOperationException", f"not served here: {operation[:40]}"))
                return
            try:
                self._answer(200, method(**json.loads(body)))
            except Exception as exc:  # a ClientError as the fakes raise it: sent as DynamoDB sends it
                response = getattr(exc, "response", None)
                if response is None:
                    self._answer(500, _error("InternalServerError", type(exc).__name__))
                    return
                error = response["Error"]
                extra = {k: v for k, v in response.items() if k not in ("Error", "ResponseMetadata")}
                status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400
                self._answer(status, {**_error(error["Code"], error["Message"]), **extra})

        def do_GET(self):  # noqa: N802
            if self.path != "/state":
                self._answer(404, _error("NotFound", "GET /state only"))
                return
            with fake._lock:
                items = [[key[0], item] for key, item in fake.items.items()]
                calls = dict(fake.calls)
            self._answer(
                200, {"items": items, "calls": calls, "cpu_s": time.process_time(), **(state() if state else {})}
            )

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_):  # quiet: a request line is no one's business
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="fake-dynamodb", daemon=True).start()
    return server


def endpoint_url(server) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def _error(code: str, message: str) -> dict:
    return {"__type": f"com.amazonaws.dynamodb.v20120810#{re.sub(r'[^A-Za-z]', '', code)}", "message": message}
