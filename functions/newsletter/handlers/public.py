"""Function URL → the public pages: the unsubscribe link of every email (a confirmation page on
GET, the unsubscribe on POST and RFC 8058 one-click), and signup, its confirmation and the
preference centre.

The routing and the pages live in `public`, a table of routes: what only the signup pages need
(their modules, email-validator, altcha) loads when one of them is asked for.
"""

from __future__ import annotations

from .. import aws, privacy
from ..config import public_settings
from ..public import Site, handle
from ..telemetry import logger

# What this container keeps between invocations; the local stack and tests configure or reset it.
site = Site()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    settings = public_settings()
    privacy.use_secret(lambda: aws.secret_parameter(settings.token_secret_parameter))  # keys the hashes in the logs
    return handle(site, event, settings)
