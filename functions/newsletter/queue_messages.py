"""The messages that pass between the functions, in one place: what each queue carries.

    fan-out queue   Segment     one shard of a list to page through (publish writes 16; a segment
                                short of time writes its own continuation: the same message, later page)
                    Reconcile   check a sent issue's counters against its send ledger (completion.py)
                    Judge       a rollout's verdict on its cohort, or the wait for it (rollout.py)
    send queue      Batch       up to 100 recipients of one issue (fan-out writes 50; a batch's
                                rest comes back as a Batch one attempt later)

Every message carries `"v": VERSION` and its `kind`. Messages written before versions existed
(no `v`, and no `kind` but for a reconcile job) still parse: a deployment never strands what is on
the queues. A message that cannot be read raises `Malformed`, whose text names the field and never
an address.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple

from .jsontext import loads
from .privacy import normalise_address
from .store.subscribers import SHARDS  # a list's subscribers are spread over this many partitions

VERSION = 1
MAX_RECIPIENTS = 100


class Malformed(ValueError):
    """A message no function of this stack writes: retrying cannot fix it."""


def _dumps(value: dict) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# The parts of a rolled-out issue's list (rollout.py); "" is the whole list.
PARTS = ("", "cohort", "rest")


@dataclass(frozen=True)
class Segment:
    """A shard of a list to fan out, from `page` on (`cursor`: where the last invocation stopped);
    of a rollout, only its `part` of the readers."""

    issue_id: str
    list_id: str
    shard: int
    page: int = 0
    cursor: dict | None = None
    part: str = ""

    def to_message(self) -> str:
        return _dumps(
            {
                "v": VERSION,
                "kind": "segment",
                "issue_id": self.issue_id,
                "list_id": self.list_id,
                "shard": self.shard,
                "page": self.page,
                "cursor": self.cursor,
                **({"part": self.part} if self.part else {}),
            }
        )

    def continued(self, page: int, cursor: dict | None) -> Segment:
        return Segment(self.issue_id, self.list_id, self.shard, page, cursor, self.part)


@dataclass(frozen=True)
class Reconcile:
    """Check a sent issue's counters against its send ledger."""

    issue_id: str

    def to_message(self) -> str:
        return _dumps({"v": VERSION, "kind": "reconcile", "issue_id": self.issue_id})


@dataclass(frozen=True)
class Judge:
    """Judge a rollout's cohort once its wait is over (or wait on, delayed)."""

    issue_id: str

    def to_message(self) -> str:
        return _dumps({"v": VERSION, "kind": "judge", "issue_id": self.issue_id})


def segments(issue_id: str, list_id: str, part: str = "") -> list[Segment]:
    """What publishing queues (and a rollout, for each part): one segment per shard; each
    continues itself."""
    return [Segment(issue_id, list_id, shard, part=part) for shard in range(SHARDS)]


def parse_fanout(body: str) -> Segment | Reconcile | Judge:
    data = _object(body)
    kind = data.get("kind") or "segment"
    try:
        if kind == "reconcile":
            return Reconcile(_text(data, "issue_id"))
        if kind == "judge":
            return Judge(_text(data, "issue_id"))
        if kind != "segment":
            raise Malformed(f"kind: unknown fan-out message kind {str(kind)[:40]!r}")
        shard = _int(data, "shard")
        if not 0 <= shard < SHARDS:
            raise Malformed(f"shard: {shard} outside 0..{SHARDS - 1}")
        cursor = data.get("cursor")
        if cursor is not None and not isinstance(cursor, dict):
            raise Malformed("cursor: must be an object")
        part = data.get("part") or ""
        if part not in PARTS:
            raise Malformed(f"part: {str(part)[:40]!r} is not one of {', '.join(p for p in PARTS if p)}")
        return Segment(_text(data, "issue_id"), _text(data, "list_id"), shard, _int(data, "page", 0), cursor, part)
    except (TypeError, ValueError) as exc:
        raise Malformed(f"malformed fan-out message: {exc}") from None


class Recipient(NamedTuple):
    address: str
    name: str = ""
    claim: str | None = None  # an earlier attempt's claim that never sent (its release failed): take it over


@dataclass(frozen=True)
class Batch:
    """Recipients of one issue to send to; `attempt`: how often the batch (its rest) was requeued."""

    issue_id: str
    list_id: str
    batch_id: str
    recipients: tuple[Recipient, ...]
    attempt: int = 0
    language: str | None = None  # the issue's language these readers get (None: the default)

    def __post_init__(self):
        object.__setattr__(self, "recipients", tuple(Recipient(*r) for r in self.recipients))

    def rest(self, recipients) -> Batch:
        """What comes back through the queue: the recipients left, one attempt later."""
        return Batch(self.issue_id, self.list_id, self.batch_id, tuple(recipients), self.attempt + 1, self.language)

    def to_message(self) -> str:
        people = [
            {"email": r.address, "name": r.name, **({"claim": r.claim} if r.claim else {})} for r in self.recipients
        ]
        return _dumps(
            {
                "v": VERSION,
                "kind": "batch",
                "issue_id": self.issue_id,
                "list_id": self.list_id,
                "batch_id": self.batch_id,
                "attempt": self.attempt,
                **({"language": self.language} if self.language else {}),
                "recipients": people,
            }
        )


def batch_id(shard: int, page: int, n: int, part: str = "") -> str:
    """The n-th batch of a segment's page: the same page gives the same ids, however often it is
    fanned out (a rollout's part is its first letter: `c03-000000-01`)."""
    return f"{part[:1]}{shard:02d}-{page:06d}-{n:02d}"


def parse_batch(body: str) -> Batch:
    data = _object(body)
    if (data.get("kind") or "batch") != "batch":
        raise Malformed(f"kind: a send batch, not {str(data.get('kind'))[:40]!r}")
    try:
        people = data["recipients"]
        if not isinstance(people, list):
            raise Malformed("recipients: must be a list")
        if not 0 < len(people) <= MAX_RECIPIENTS:
            raise Malformed(f"recipients: a batch holds 1 to {MAX_RECIPIENTS}, not {len(people)}")
        recipients = tuple(
            Recipient(normalise_address(p["email"]), str(p.get("name") or ""), p.get("claim") or None) for p in people
        )
        if any("@" not in r.address for r in recipients):
            raise Malformed("recipients: an address has no '@'")
        return Batch(
            _text(data, "issue_id"),
            _text(data, "list_id"),
            str(data.get("batch_id", "")),
            recipients,
            _int(data, "attempt", 0),
            _language(data),
        )
    except Malformed as exc:
        raise Malformed(f"malformed send batch: {exc}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise Malformed(f"malformed send batch: {type(exc).__name__}: {exc}") from None


def _object(body: str) -> dict:
    try:
        data = loads(body)
    except (TypeError, ValueError) as exc:
        raise Malformed(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Malformed("not a JSON object")
    version = data.get("v", VERSION)
    if not isinstance(version, int) or version > VERSION:
        raise Malformed(f"v: version {str(version)[:20]!r} is newer than this function reads ({VERSION})")
    return data


def _language(data: dict) -> str | None:
    value = data.get("language")
    if value is None:
        return None
    from .languages import check_tag

    if not isinstance(value, str):
        raise Malformed("language: must be a language tag")
    try:
        return check_tag(value)
    except ValueError as exc:
        raise Malformed(f"language: {exc}") from None


def _text(data: dict, name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise Malformed(f"{name}: must be a non-empty string")
    return value


def _int(data: dict, name: str, default: int | None = None) -> int:
    value = data.get(name, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.isdigit():
            return int(value)
        raise Malformed(f"{name}: must be a whole number")
    return value
