"""API Gateway's own answers (no route for a path or method, a media type, a limit) are in the
one error shape, and none repeats the request (API Gateway's default answer to an unknown
path quotes the Authorization header, the API key, back)."""

from __future__ import annotations

import json
from typing import Any


def _responses(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["Properties"]["ResponseType"]: r["Properties"] for r in resources.values()
            if r["Type"] == "AWS::ApiGateway::GatewayResponse"}


def test_an_unknown_path_or_method_is_404_in_the_one_error_shape(resources: dict[str, Any]
                                                                  ) -> None:
    got = _responses(resources)
    # MISSING_AUTHENTICATION_TOKEN: no route; INCOMPLETE_SIGNATURE: the same with a bearer key
    for kind in ("MISSING_AUTHENTICATION_TOKEN", "INCOMPLETE_SIGNATURE"):
        props = got[kind]
        assert props["StatusCode"] == "404"
        body = json.loads(props["ResponseTemplates"]["application/json"])
        assert body["error"]["code"] == "not_found"
        assert set(body["error"]) == {"code", "message", "details"}
        assert props["ResponseParameters"]["gatewayresponse.header.Content-Type"] == \
            "'application/json'"


def test_every_gateway_response_is_the_one_shape_and_repeats_nothing(
        resources: dict[str, Any]) -> None:
    got = _responses(resources)
    assert {"UNSUPPORTED_MEDIA_TYPE", "THROTTLED", "DEFAULT_4XX", "DEFAULT_5XX"} <= set(got)
    for kind, props in got.items():
        text = props["ResponseTemplates"]["application/json"]
        # no $context.error.message, no $input, no header: nothing of the request comes back
        assert "$" not in text and "Authorization" not in text, kind
        body = json.loads(text)
        assert set(body) == {"error"} and body["error"]["message"], kind


def test_a_throttled_request_says_when_to_retry(resources: dict[str, Any]) -> None:
    props = _responses(resources)["THROTTLED"]
    assert props["StatusCode"] == "429"
    assert props["ResponseParameters"]["gatewayresponse.header.Retry-After"] == "'1'"
