"""The base of oblio's PynamoDB models: their calls are counted like every other AWS call.

PynamoDB makes a botocore client of its own for each model, when the model is first used;
`CountedModel` has that client report to the running counter (`store.aws.count_calls`) as it
hands out its connection, so that only the models an invocation uses make a client (a task
creating every model's client at its start would add about a second to a cold start)."""

from __future__ import annotations

from pynamodb.connection.table import TableConnection
from pynamodb.models import Model

from oblio.store import aws


class CountedModel(Model):
    @classmethod
    def _get_connection(cls) -> TableConnection:
        conn = super()._get_connection()
        aws.count_calls(conn.connection.client)
        return conn
