"""The infra suite: the CloudFormation template that `make synth` writes, synthesized once per
session (about 10 s) and checked by CDK `Template` assertions, cfn-lint, cdk-nag and moto's
ASL parser.

The session's synth takes the deployment's optional settings too (an SES sender, an alarm
address, tenant leading keys) so that the resources they add are checked as well, and
`layer_deps=none`: the layer's third-party wheels come from PyPI and change no line of the
template beyond an asset hash. The synth leaves os.environ, sys.path and the working
directory as it found them (this suite shares its process with tests/unit)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

CONTEXT = {
    "layer_deps": "none",
    "ses_sender": "privacy@example.com",
    "alarm_email": "ops@example.com",
    "tenant_leading_keys": "acme,acme-*",
    "shadow_stream_arns": "arn:aws:dynamodb:eu-west-1:123456789012:table/acme-contacts/stream/2026-01-01T00:00:00.000",
}
PREFIX = "oblio"


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    environ = dict(os.environ)
    try:
        from infra.cdk.synth import synthesize

        out = synthesize(CONTEXT, outdir=tmp_path_factory.mktemp("cdk") / "cdk.out")
    finally:
        os.environ.clear()
        os.environ.update(environ)
    yield out


@pytest.fixture(scope="session")
def template_json(synthesized: Any) -> dict[str, Any]:
    return synthesized.template


@pytest.fixture(scope="session")
def template(synthesized: Any) -> Any:
    from aws_cdk.assertions import Template

    return Template.from_json(synthesized.template)


@pytest.fixture(scope="session")
def resources(template_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return template_json["Resources"]
