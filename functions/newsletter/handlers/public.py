"""Function URL → the unsubscribe confirmation page (GET, HEAD) or the unsubscribe (POST, RFC 8058).

Kept light for a fast cold start: no Jinja2, no pydantic, no web framework (see function_url).
"""

from __future__ import annotations

from .. import aws, privacy
from ..config import unsubscribe_settings
from ..function_url import html_response
from ..telemetry import logger
from ..unsubscribe import Endpoint

# What this container keeps between invocations; the local stack and tests configure or reset it.
endpoint = Endpoint()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    settings = unsubscribe_settings()
    privacy.use_secret(lambda: aws.secret_parameter(settings.token_secret_parameter))  # keys the hashes in the logs
    reply = endpoint.answer(event, settings)
    return html_response(reply.status, reply.page, head=reply.head, headers=reply.headers)
