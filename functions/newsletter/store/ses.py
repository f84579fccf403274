"""SES v2: the only module that calls SES, and the one that says what its answers mean.

`send_email` sends one raw message and returns an `Answer`, never a botocore exception: the send
loop decides on outcomes, not on error codes. What an answer means for the recipient:

    SENT        SES took it (its message id).
    REJECTED    SES refused this message or address: retrying cannot help.
    THROTTLED   too fast for the account: nothing was sent; slow down.
    RETRY       SES answered with an error that passes, or no connection was made: nothing was sent.
    UNCERTAIN   the request may have reached SES and the answer was lost: it may have been sent.
    STOPPED     nothing was sent, and nothing will be for a while: the account's sending is paused,
                its daily quota is used up, or SES refuses the sender (`pause`: no retry can fix it).

An exception that is not botocore's (raised outside the HTTP exchange) is raised as it is: the
request was not made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from botocore.exceptions import ClientError

from .. import retry

SENT, REJECTED, THROTTLED, RETRY, UNCERTAIN, STOPPED = "sent", "rejected", "throttled", "retry", "uncertain", "stopped"

THROTTLE_CODES = frozenset({"TooManyRequestsException", "ThrottlingException", "Throttling", "LimitExceededException"})
PAUSED_CODES = frozenset({"SendingPausedException", "AccountSuspendedException"})
# Refusals of this one message or address: retrying cannot help.
REJECT_CODES = frozenset({"MessageRejected", "BadRequestException", "InvalidParameterValue"})
QUOTA_WAIT_S = 900


@dataclass(frozen=True)
class Answer:
    kind: str
    message_id: str = ""
    code: str = ""  # SES's error code, or the exception's name
    detail: str = ""  # SES's error text (it may name an address: log lines are scrubbed)
    pause: bool = False  # STOPPED by a refusal no retry can fix: the issue should pause
    wait_s: int | None = None  # STOPPED for this long at least

    @property
    def reason(self) -> str:
        return f"{self.kind} ({self.code})" if self.code else self.kind


def send_email(ses, raw: bytes, address: str, *, configuration_set: str, tags: dict[str, str], sender: str) -> Answer:
    """One message to one address (`sender`: the From address, to tell a refused sender from a
    refused recipient)."""
    try:
        response = ses.send_email(
            Destination={"ToAddresses": [address]},
            Content={"Raw": {"Data": raw}},
            ConfigurationSetName=configuration_set,
            EmailTags=[{"Name": k, "Value": v} for k, v in tags.items()],
        )
    except ClientError as exc:
        return refusal(exc, sender)
    except Exception as exc:
        if retry.reached(exc) and retry.transient(exc):
            # SES may have accepted it and the answer was lost: resending could mail twice.
            return Answer(UNCERTAIN, code=type(exc).__name__)
        if retry.transient(exc):
            return Answer(RETRY, code=retry.describe(exc))  # no connection was made
        raise
    return Answer(SENT, message_id=response["MessageId"])


def refusal(exc: ClientError, sender: str) -> Answer:
    """SES answered with an error, so it did not send. Whose problem is it?"""
    code, text = retry.error_code(exc), _message(exc)
    if code in REJECT_CODES and not sender_refused(text, sender):
        return Answer(REJECTED, code=code, detail=text)
    if code in THROTTLE_CODES:
        return Answer(THROTTLED, code=code)
    if retry.transient(exc):
        return Answer(RETRY, code=code)  # out of order for a moment, and said so
    if code in PAUSED_CODES:
        return Answer(STOPPED, code=code, detail="sending paused for the account")
    if code in REJECT_CODES and quota_used_up(text):
        return Answer(STOPPED, code=code, detail="sending quota used up", wait_s=QUOTA_WAIT_S)
    # Not this recipient: the sender, the account, the stack. Rejecting would use up the whole
    # list on a configuration mistake; the issue pauses instead, saying why.
    what = "SES refused the sender" if code in REJECT_CODES else "SES refuses to send"
    return Answer(STOPPED, code=code, detail=f"{what} ({code}): {text[:200]}", pause=True)


def sender_refused(text: str, sender: str) -> bool:
    """A rejection that is about the sender or the account, not about the recipient: the From
    identity unverified or not authorised (SES names it in the message), or a quota used up."""
    text, sender = text.lower(), sender.lower()
    domain = sender.rpartition("@")[2]
    named = sender in text or re.search(r"(?<![\w.@-])" + re.escape(domain) + r"(?![\w.-])", text) is not None
    return named or quota_used_up(text) or "not authorized to send" in text


def quota_used_up(text: str) -> bool:
    return "quota" in text.lower()


@dataclass(frozen=True)
class Account:
    max_send_rate: float
    sending_enabled: bool


def account(ses, default_rate: float) -> Account:
    """The account's send rate and whether it may send (GetAccount); errors are raised."""
    answer = ses.get_account()
    rate = float(answer.get("SendQuota", {}).get("MaxSendRate") or default_rate)
    return Account(rate, bool(answer.get("SendingEnabled", True)))


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))
