"""Stands in for your application: creates its two tables (with the indexes it queries by)
and its photo bucket in a local AWS, and writes its data there (the items and files of
`fixtures/`). The README's walk-through starts from these "existing tables":

    .venv/bin/python examples/my-product/app_tables.py http://127.0.0.1:5000
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path

import boto3
from boto3.dynamodb.types import TypeSerializer

HERE = Path(__file__).resolve().parent
TABLES = {"my-contacts": ("contact_id", "by_email", "email"),
          "my-orders": ("order_id", "by_contact_id", "contact_id")}
BUCKET = "my-files-bucket"


def main(endpoint: str) -> None:
    kw = {"endpoint_url": endpoint, "region_name": "eu-west-1",
          "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    ddb, s3 = boto3.client("dynamodb", **kw), boto3.client("s3", **kw)
    ser = TypeSerializer()
    for table, (sort, index, attr) in TABLES.items():
        ddb.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "tenant_id", "KeyType": "HASH"},
                       {"AttributeName": sort, "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"}
                                  for a in ("tenant_id", sort, attr)],
            GlobalSecondaryIndexes=[{
                "IndexName": index, "Projection": {"ProjectionType": "ALL"},
                "KeySchema": [{"AttributeName": "tenant_id", "KeyType": "HASH"},
                              {"AttributeName": attr, "KeyType": "RANGE"}]}])
        lines = (HERE / "fixtures" / f"{table}.jsonl").read_text().splitlines()
        for line in filter(None, lines):
            item = json.loads(line, parse_float=Decimal)  # DynamoDB numbers are exact
            ddb.put_item(TableName=table, Item={k: ser.serialize(v) for k, v in item.items()})
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint":
                                                               "eu-west-1"})
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    files = HERE / "fixtures" / "s3" / BUCKET
    for path in sorted(p for p in files.rglob("*") if p.is_file()):
        s3.put_object(Bucket=BUCKET, Key=path.relative_to(files).as_posix(),
                      Body=path.read_bytes())
    print(f"your application's tables {', '.join(TABLES)} and bucket {BUCKET} are in "
          f"{endpoint}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: app_tables.py ENDPOINT_URL (e.g. http://127.0.0.1:5000)")
    main(sys.argv[1])
