"""Logging and metrics shared by the handlers (Powertools, configured by POWERTOOLS_* variables)."""

from __future__ import annotations

import sys

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from .privacy import scrub


class _Stdout:
    """sys.stdout as it is when a line is written (the local runner and tests redirect it)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


class _Scrubbed(LambdaPowertoolsFormatter):
    """Every line, as Powertools formats it, with anything that looks like an address replaced by
    its keyed hash: AWS error texts and exceptions may name a recipient; the logs never do."""

    def format(self, record) -> str:
        return scrub(super().format(record))


logger = Logger(stream=_Stdout(), logger_formatter=_Scrubbed())


def issue_metrics(issue_id: str, counts: dict[str, int]) -> None:
    """Emit counts as metrics with the issue as dimension (one EMF record per issue)."""
    counts = {k: v for k, v in counts.items() if v}
    if not counts:
        return
    metrics = EphemeralMetrics()
    metrics.add_dimension(name="issue", value=issue_id)
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    metrics.flush_metrics()


def service_metrics(counts: dict[str, int]) -> None:
    """Emit counts with no issue dimension (only Powertools' `service`): for alarms that must not
    depend on an issue id, and for events that belong to no issue."""
    counts = {k: v for k, v in counts.items() if v}
    if not counts:
        return
    metrics = EphemeralMetrics()
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    metrics.flush_metrics()
