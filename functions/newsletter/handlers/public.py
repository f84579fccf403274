"""Function URL → the public pages: signup and its confirmation, and the unsubscribe link of
every email (a confirmation page on GET, the unsubscribe on POST and RFC 8058 one-click).

The router (Powertools' LambdaFunctionUrlResolver) and the pages live in `public`; the signup
form's libraries (email-validator, altcha) load only when a form is posted or a challenge asked.
"""

from __future__ import annotations

from .. import aws, privacy
from ..config import public_settings
from ..public import Site, build_app, handle
from ..telemetry import logger

# What this container keeps between invocations; the local stack and tests configure or reset it.
site = Site()
app = build_app(site, public_settings)


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    settings = public_settings()
    privacy.use_secret(lambda: aws.secret_parameter(settings.token_secret_parameter))  # keys the hashes in the logs
    return handle(app, site, event, context, settings)
