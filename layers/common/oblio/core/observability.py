"""The one place that creates Powertools' Logger, Tracer and Metrics. Log a subject only as
its HMAC reference (`subject_ref`), never an identity."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

logger = Logger(service="oblio")
tracer = Tracer(service="oblio")  # disables itself outside Lambda
metrics = Metrics(namespace="oblio", service="oblio")


def count(name: str, **dimensions: str) -> None:
    """Emit one count now (EMF on stdout; CloudWatch turns it into a metric). Dimensions are
    request types and statuses, never anything about a subject."""
    with single_metric(name=name, unit=MetricUnit.Count, value=1,
                       namespace="oblio") as metric:
        for key, value in dimensions.items():
            metric.add_dimension(name=key, value=value)


def gauge(name: str, value: float) -> None:
    """Emit one measured value now, without dimensions, so that one alarm on the metric's
    Maximum covers every tenant (e.g. OverdueRequests)."""
    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace="oblio"):
        pass
