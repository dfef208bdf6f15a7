"""The small fault run of `make test` (its own pytest process: it starts a local stack of its
own): 7 requests from 3 concurrent clients and a bulk job of 20 subjects at 20% task faults,
20% DynamoDB throttles (10% partial batches) and 10% S3 503s and partial deletes combined.
Every check of tests/faults/suite.py must hold; the figures are printed (pytest -s)."""

from __future__ import annotations

import logging

from tests.faults import suite


def test_every_request_ends_true_under_task_throttle_and_s3_faults() -> None:
    logging.disable(logging.WARNING)
    try:
        figures = suite.run(task=0.2, throttle=0.2, s3=0.1, requests=7, bulk=20, seed=7,
                            clients=3, bystanders=40, timeout=240, chunk_size=10)
    finally:
        logging.disable(logging.NOTSET)
    print(figures.summary())
    assert sum(figures.injected.values()) > 0, "the plan injected nothing: nothing was tested"
    assert not figures.failures(), figures.summary()
    assert figures.completed == figures.requests == 7
