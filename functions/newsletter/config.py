"""Settings, parsed once per container from the environment that `template.yaml` sets.

Each function has its own small settings class naming exactly the variables the template gives
it; a missing one fails the cold start with a message that names it.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, fields
from functools import cache


class ConfigError(RuntimeError):
    pass


def _read(cls):
    env = os.environ
    values, missing = {}, []
    for f in fields(cls):
        name = f.name.upper()
        if name in env and env[name] != "":
            raw = env[name]
            values[f.name] = int(raw) if f.type in ("int", int) else float(raw) if f.type in ("float", float) else raw
        elif f.default is not MISSING:
            continue
        else:
            missing.append(name)
    if missing:
        raise ConfigError(
            f"{cls.__name__}: missing environment variable(s) {', '.join(missing)}; they are set by template.yaml"
        )
    return cls(**values)


@dataclass(frozen=True)
class PublishSettings:
    bucket_name: str
    lists_table: str
    issues_table: str
    fanout_queue_url: str
    web_base_url: str
    sender_address: str
    sender_name: str
    max_issue_bytes: int = 512 * 1024


@dataclass(frozen=True)
class FanoutSettings:
    issues_table: str
    subscribers_table: str
    suppressions_table: str
    send_queue_url: str
    fanout_queue_url: str
    sends_table: str  # a finished issue's counters are reconciled with its send ledger here


@dataclass(frozen=True)
class SendSettings:
    bucket_name: str
    issues_table: str
    subscribers_table: str
    suppressions_table: str
    sends_table: str
    send_queue_url: str
    fanout_queue_url: str  # where the batch that finishes an issue queues its reconcile job
    configuration_set: str
    unsubscribe_base_url: str
    unsubscribe_mailto: str
    token_secret_parameter: str
    # The public pages (the preference centre); empty: the unsubscribe link's origin.
    public_base_url: str = ""
    # The send queue's MaximumConcurrency: each instance paces itself to this share of the SES rate.
    send_concurrency: int = 2


@dataclass(frozen=True)
class FeedbackSettings:
    issues_table: str
    subscribers_table: str
    suppressions_table: str
    sends_table: str  # its by_message_id index ties a notification without tags to its issue
    feedback_table: str
    # Only notifications from this topic (in their SNS envelope) are acted on.
    feedback_topic_arn: str
    # The token secret keys the address hashes in the logs.
    token_secret_parameter: str
    # Transient/Undetermined bounces: suppress an address after this many within this many days.
    soft_bounce_limit: int = 3
    soft_bounce_days: int = 30
    # Pause an issue (from "sending") once its rates pass these, after at least PAUSE_MIN_SENT sends.
    pause_bounce_rate: float = 0.04
    pause_complaint_rate: float = 0.0008
    pause_min_sent: int = 500


@cache
def publish_settings() -> PublishSettings:
    return _read(PublishSettings)


@cache
def fanout_settings() -> FanoutSettings:
    return _read(FanoutSettings)


@cache
def send_settings() -> SendSettings:
    return _read(SendSettings)


@cache
def feedback_settings() -> FeedbackSettings:
    return _read(FeedbackSettings)


def clear_settings() -> None:
    """Forget every function's parsed settings (for a process that plays several functions)."""
    for read in (publish_settings, fanout_settings, send_settings, feedback_settings, public_settings):
        read.cache_clear()


def env_names(cls) -> set[str]:
    """The variables a settings class reads (the template must set at least the required ones)."""
    return {f.name.upper() for f in fields(cls)}


@dataclass(frozen=True)
class PublicSettings:
    """The public pages: unsubscribing, and signing up with double opt-in."""

    subscribers_table: str
    issues_table: str
    lists_table: str
    suppressions_table: str
    limits_table: str
    token_secret_parameter: str
    sender_address: str
    sender_name: str
    configuration_set: str
    # The pages' address for links in confirmation mails; empty: this Function URL.
    public_base_url: str = ""
    # How long after a rotation links signed with the replaced secret still work (keys.py).
    token_grace_days: float = 365
    signup_per_client_per_hour: int = 10
    signup_per_list_per_hour: int = 1000
    signup_per_address_per_day: int = 3
    # The bot check's proof of work: key derivations per attempt, and the attempts, at most.
    altcha_cost: int = 5000
    altcha_max_number: int = 10000


@cache
def public_settings() -> PublicSettings:
    return _read(PublicSettings)
