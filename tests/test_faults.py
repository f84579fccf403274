"""Exactly once and nothing lost, under the faults AWS guarantees will happen.

The whole pipeline (publish, fan-out, send, SES feedback) runs through the template's own Lambda
semantics (devstack) with faults injected into the functions' DynamoDB, SQS, S3 and SES calls:
transient errors above the SDK (what outlived botocore's retries) and below it (transport errors
botocore sees and retries), lost SES answers, and the instance dying at any call. After each run:
every active, unsuppressed reader mailed exactly once (an `uncertain` reader at most once), nobody
else, nothing in a DLQ, the issue `sent`, its counters equal to the ledger, feedback counted once.
`make faults` runs the bigger table (300 readers, three seeds) and every crash point.
"""

import contextlib
import io

import pytest

from devstack.faults import ROLLOUT, FaultPlan, crash_points, run_pipeline


def run(plan: FaultPlan, subscribers: int, rollout: dict | None = None):
    with contextlib.redirect_stdout(io.StringIO()):  # the functions' logs
        return run_pipeline(plan, subscribers=subscribers, rollout=rollout)


@pytest.mark.parametrize("layer", ["above", "below"])
@pytest.mark.parametrize("rate", [0.01, 0.03, 0.10])
def test_transient_faults_lose_and_duplicate_nothing(layer, rate):
    outcome = run(FaultPlan(rate=rate, seed=int(rate * 100) + (layer == "below"), layer=layer), subscribers=40)
    assert sum(outcome.plan.injected.values()) > 0, "no fault was injected: the test tests nothing"
    assert outcome.problems == []
    assert outcome.mailed + outcome.uncertain_unmailed >= outcome.expected - outcome.uncertain


@pytest.mark.parametrize("layer", ["above", "below"])
def test_a_rollout_under_transient_faults_loses_and_duplicates_nothing(layer):
    """The cohort, the wait's Judge messages, the verdict and the rest, with 5% of calls failing."""
    outcome = run(FaultPlan(rate=0.05, seed=11, layer=layer), subscribers=40, rollout=ROLLOUT)
    assert sum(outcome.plan.injected.values()) > 0
    assert outcome.problems == []
    assert outcome.mailed + outcome.uncertain_unmailed >= outcome.expected - outcome.uncertain


def test_lost_ses_answers_are_uncertain_and_never_resent():
    """A fifth of SES's answers lost after it accepted: those readers got their one copy, the ledger
    says `uncertain`, and nobody got two (botocore does not retry SendEmail; neither do we)."""
    outcome = run(FaultPlan(lose_ses_responses=0.2, seed=5), subscribers=40)
    assert outcome.problems == []
    assert outcome.uncertain >= 3 and outcome.uncertain_unmailed == 0
    assert outcome.mailed == outcome.expected  # each exactly once, the uncertain ones included


CRASH_STRIDE = 9  # `make faults` (python -m devstack.faults --crashes) tries every call


@pytest.fixture(scope="module")
def calls():
    return crash_points(subscribers=4)


@pytest.mark.parametrize("after", [False, True], ids=["before-acting", "after-acting"])
@pytest.mark.parametrize("offset", range(CRASH_STRIDE // 2, 120, CRASH_STRIDE))
def test_an_instance_dying_at_any_call_keeps_every_promise(calls, offset, after):
    """The instance dies at one AWS call (publish, fan-out, send or feedback), before or after the
    service acted on it. Lambda retries what it was doing; at most the one reader whose send was
    under way is left uncertain and unmailed (an uncertain outcome is never resent)."""
    at = offset % calls + 1
    outcome = run(FaultPlan(crash_at=at, crash_after=after), subscribers=4)
    assert outcome.plan.crashed
    assert outcome.problems == []
    assert outcome.uncertain_unmailed <= 1


@pytest.fixture(scope="module")
def rollout_calls():
    return crash_points(subscribers=4, rollout=ROLLOUT)


@pytest.mark.parametrize("after", [False, True], ids=["before-acting", "after-acting"])
@pytest.mark.parametrize("offset", range(CRASH_STRIDE // 3, 160, CRASH_STRIDE * 2))
def test_a_rollout_survives_an_instance_dying_at_any_call(rollout_calls, offset, after):
    """As above, for a staged issue: the cohort's completion, the Judge and the rest's queueing
    are repeated by whoever comes next."""
    at = offset % rollout_calls + 1
    outcome = run(FaultPlan(crash_at=at, crash_after=after), subscribers=4, rollout=ROLLOUT)
    assert outcome.plan.crashed
    assert outcome.problems == []
    assert outcome.uncertain_unmailed <= 1
