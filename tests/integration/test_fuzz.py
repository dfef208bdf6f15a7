"""The fuzz suite (issue 16): Schemathesis generates requests from the OpenAPI document the
running stack serves (3.1, generated from the routes and their models), valid ones and
invalid ones, for every operation, and checks each answer: never a 5xx, never a status, a
media type or a body that the document does not describe (the one error shape included).

It runs against a tenant of its own, so that what it files, patches and deletes touches
nothing the other tests read. Bounded: `OBLIO_FUZZ_EXAMPLES` examples per operation (default
25: about 1,700 calls, under a minute on a laptop)."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
import requests as http
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("OBLIO_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
FUZZ_TENANT = "fuzz"


@pytest.fixture(scope="session")
def fuzz_key(stack: Any) -> str:
    """An admin key of a tenant made for the fuzzer alone, created as an operator would."""
    r = http.post(stack.info["api_url"] + "/v1/tenants",
                  json={"tenant_id": FUZZ_TENANT, "name": "Fuzz"}, timeout=30,
                  headers={"Authorization": f"Bearer {stack.info['operator_key']}"})
    assert r.status_code == 201, r.text
    return str(r.json()["api_key"])


def test_no_5xx_and_no_answer_outside_the_document(stack: Any, fuzz_key: str,
                                                   logs: Any) -> None:
    doc = http.get(stack.info["api_url"] + "/v1/openapi.json", timeout=30).json()
    served = schemathesis.openapi.from_dict(doc)
    failures: list[str] = []
    calls = 0
    statuses: Counter[int] = Counter()
    for result in served.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            before = len(logs.lines)

            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      derandomize=True, phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: Any) -> None:
                nonlocal calls
                calls += 1
                answered = case.call_and_validate(base_url=stack.info["api_url"],
                                       headers={"Authorization": f"Bearer {fuzz_key}"},
                                       checks=CHECKS, timeout=60)
                statuses[answered.status_code] += 1

            try:
                call()
            except Unsatisfiable:  # nothing to make invalid (no parameter, no body)
                continue
            # Schemathesis raises a group of check failures (a BaseExceptionGroup)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - each is reported
                failures.append(f"{operation.label} ({mode.value}): {exc}"[:3000])
            if any("Traceback" in line for line in logs.lines[before:]):
                failures.append(f"{operation.label} ({mode.value}): a traceback was logged")
    print(f"fuzz: {calls} calls over {len(doc['paths'])} paths, {len(failures)} failures; "
          f"statuses {dict(sorted(statuses.items()))}")
    assert not failures, "\n\n".join(failures)
