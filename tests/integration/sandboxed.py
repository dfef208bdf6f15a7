"""A local stack with Lambda sandboxes, in a process of its own (tests/integration/
test_sandboxes.py runs it: the shims and the Lambda dispatch are per process): one demo
contact erased over the API, then what is left of her in the raw table. Prints one JSON line."""

from __future__ import annotations

import json
import sys
from typing import Any

from infra.local.stack import LocalStack, free_port
from tests.client import Api

EMAIL = "contact0000003@demo.example.org"


def main() -> None:
    stack = LocalStack(api_port=free_port(), aws_port=free_port(), demo_contacts=10,
                       quiet=True, write_state=False, sandboxes=True)
    info = stack.start()
    try:
        from oblio.store import aws

        api = Api(info["api_url"], info["tenants"]["demo"]["api_key"])
        before = _contacts(aws.client("dynamodb"))
        done = api.erase({"email": EMAIL}, timeout=120)
        print(json.dumps({"status": done["status"], "before": before, "after": _contacts(aws.client("dynamodb")),
                          "sandboxes_started": stack._pool.started,
                          # the workflow's handlers, imported in this process or not
                          "here": sorted(m for m in ("plan.handler", "apply.handler",
                                                     "verify.handler", "finish.handler")
                                         if m in sys.modules)}), flush=True)
    finally:
        stack.stop()


def _contacts(ddb: Any) -> int:
    pages = ddb.get_paginator("query").paginate(
        TableName="demo-contacts", IndexName="by_email",
        KeyConditionExpression="tenant_id = :t AND email = :e",
        ExpressionAttributeValues={":t": {"S": "demo"}, ":e": {"S": EMAIL}})
    return sum(len(p["Items"]) for p in pages)


if __name__ == "__main__":
    main()
