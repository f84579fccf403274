"""The one-time schedules that start scheduled issues: EventBridge Scheduler, in the stack's group.

One schedule per scheduled issue, named by its issue id (issue ids are 1 to 64 letters, digits,
'-' and '_', which Scheduler's names allow), so that creating it again is a ConflictException, not a
second schedule. Each invokes the publish function (asynchronously, as Scheduler invokes Lambda)
through the stack's scheduler role, and deletes itself once it has (ActionAfterCompletion DELETE).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from botocore.exceptions import ClientError

# Scheduler retries an invocation Lambda refused (throttled, say) for up to an hour, then the
# event goes to the dead-letter queue, whose alarm says so: a send an hour late is a decision
# for the operator, not for a retry loop.
RETRY_POLICY = {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 20}


@dataclass(frozen=True)
class Wiring:
    """Where a schedule lives and what it invokes, as the stack deploys them."""

    group: str  # the stack's schedule group
    role_arn: str  # the role Scheduler assumes to invoke the function
    function_arn: str  # the publish function (unqualified)
    dead_letter_arn: str  # what Scheduler could not deliver


def name_for(issue_id: str) -> str:
    return issue_id


def request(wiring: Wiring, issue_id: str, *, expression: str, time_zone: str, payload: dict) -> dict:
    """The CreateSchedule (and UpdateSchedule: it replaces every field) request for an issue."""
    return {
        "Name": name_for(issue_id),
        "GroupName": wiring.group,
        "ScheduleExpression": expression,
        "ScheduleExpressionTimezone": time_zone,
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "ActionAfterCompletion": "DELETE",
        "State": "ENABLED",
        "Description": f"Starts the send of issue {issue_id}"[:512],
        "Target": {
            "Arn": wiring.function_arn,
            "RoleArn": wiring.role_arn,
            "Input": json.dumps(payload, separators=(",", ":")),
            "RetryPolicy": dict(RETRY_POLICY),
            "DeadLetterConfig": {"Arn": wiring.dead_letter_arn},
        },
    }


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def create(scheduler, schedule: dict) -> bool:
    """Create the schedule; False if one of that name is already there (a retry, or another writer)."""
    try:
        scheduler.create_schedule(**schedule)
        return True
    except ClientError as exc:
        if _code(exc) == "ConflictException":
            return False
        raise


def update(scheduler, schedule: dict) -> bool:
    """Replace the schedule's fields; False if there is no such schedule."""
    try:
        scheduler.update_schedule(**schedule)
        return True
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return False
        raise


def put(scheduler, schedule: dict, *, tries: int = 3) -> None:
    """The schedule as given, whether it existed or not (update, else create; another writer's
    create in between is overwritten by updating again)."""
    for _ in range(tries):
        if update(scheduler, schedule) or create(scheduler, schedule):
            return
    raise RuntimeError(f"schedule {schedule['Name']} kept appearing and disappearing; try again")


def delete(scheduler, group: str, issue_id: str) -> bool:
    """Delete the issue's schedule; False if there was none (it ran, or was deleted already)."""
    try:
        scheduler.delete_schedule(Name=name_for(issue_id), GroupName=group)
        return True
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return False
        raise


def get(scheduler, group: str, issue_id: str) -> dict | None:
    try:
        return scheduler.get_schedule(Name=name_for(issue_id), GroupName=group)
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return None
        raise


def names(scheduler, group: str) -> list[str]:
    """Every schedule's name in the group."""
    found, token = [], None
    while True:
        page = scheduler.list_schedules(GroupName=group, **({"NextToken": token} if token else {}))
        found += [s["Name"] for s in page.get("Schedules", [])]
        token = page.get("NextToken")
        if not token:
            return found


def payload(schedule: dict) -> dict | None:
    """The input the schedule invokes its target with (None if it is not JSON)."""
    try:
        return json.loads(schedule.get("Target", {}).get("Input") or "")
    except ValueError:
        return None
