"""The one place that creates Powertools' Logger and Tracer, and emits oblio's metrics. Log a
subject only as its HMAC reference (`subject_ref`), never an identity.

- `logger`: JSON lines; the task boundary adds the ids of the request, job or sweep.
- `tracer`: X-Ray in Lambda (it disables itself elsewhere, the local stack included). Every
  task handler is one `capture_lambda_handler` subsegment around the task boundary, so that
  an error is recorded only once it is scrubbed; the AWS calls inside are subsegments of it
  (Powertools patches botocore), and the boundary annotates it with the ids of the request,
  job or sweep and the step's action, never anything about a subject.
- metrics: `count` and `gauge` emit one EMF line each, with their own dimensions (request
  types and statuses, never anything about a subject). No shared `Metrics` set: its metrics
  and dimensions are shared by every thread of the process, and the local stack runs many
  invocations at once on threads of one process. A step that counts many things of one kind
  (a bulk chunk's erasures) emits one line with the number, not one line each.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

logger = Logger(service="oblio")
tracer = Tracer(service="oblio")  # disables itself outside Lambda


def count(name: str, value: int = 1, **dimensions: str) -> None:
    """Emit one count now (EMF on stdout; CloudWatch turns it into a metric). Dimensions are
    request types and statuses, never anything about a subject."""
    with single_metric(name=name, unit=MetricUnit.Count, value=value,
                       namespace="oblio") as metric:
        for key, dimension in dimensions.items():
            metric.add_dimension(name=key, value=dimension)


def gauge(name: str, value: float) -> None:
    """Emit one measured value now, without dimensions, so that one alarm on the metric's
    Maximum covers every tenant (e.g. OverdueRequests)."""
    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace="oblio"):
        pass


def annotate(**values: str | None) -> None:
    """Annotate the current trace (searchable in X-Ray) with ids of the work, not of a
    subject: request, job or sweep ids, tenant, action. Nothing when tracing is off."""
    for key, value in values.items():
        if value:
            tracer.put_annotation(key=key, value=value)
