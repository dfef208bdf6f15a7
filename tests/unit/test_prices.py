"""The one price table: every price says its unit, its page and whether a stored copy of a
page confirmed it; S3 operations fall in the class AWS bills them in."""

from __future__ import annotations

import re

from oblio.core import prices


def test_every_price_names_its_unit_source_and_check():
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", prices.AS_OF) and prices.REGION == "us-east-1"
    for name, p in prices.PRICES.items():
        assert p.usd > 0 and p.unit, name
        assert p.source.startswith("https://aws.amazon.com/"), name
        assert p.checked is None or p.checked.startswith("https://"), name
    checked = {r["name"] for r in prices.table() if r["checked"] != "unchecked"}
    assert {"dynamodb.write_unit", "stepfunctions.standard_transition", "lambda.request",
            "kms.request"} <= checked


def test_s3_operations_are_billed_in_their_class():
    assert prices.s3_class("PutObject") == "s3.put_class"
    assert prices.s3_class("ListObjectVersions") == "s3.put_class"
    assert prices.s3_class("GetObject") == "s3.get_class"
    assert prices.s3_class("HeadObject") == "s3.get_class"
    assert prices.s3_class("DeleteObject") is None


def test_a_million_write_units_cost_what_the_page_says():
    assert round(prices.usd("dynamodb.write_unit", 1_000_000), 6) == 0.625
    assert round(prices.usd("stepfunctions.standard_transition", 13), 6) == 0.000325
