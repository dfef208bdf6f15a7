"""The one place that creates Powertools' Logger, Tracer and Metrics. Log a subject only as
its HMAC reference (`subject_ref`), never an identity."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="oblio")
tracer = Tracer(service="oblio")  # disables itself outside Lambda
metrics = Metrics(namespace="oblio", service="oblio")
