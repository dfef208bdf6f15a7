"""The CDK app: `python -m infra.cdk.app` (what `cdk deploy --app ...` runs, from the repo
root). Reads the context values (infra/cdk/config.py), refuses a catalogue that could not
deploy, builds the stack and runs the cdk-nag AwsSolutions checks on it."""

from __future__ import annotations

import os
from typing import Any

_QUIET = ("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION",
          "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION")
# jsii prints a banner when it starts on a Node it calls old; Node 20 synthesizes fine. The
# runtime starts (and reads these) on the first import of aws_cdk: set them for that moment
# only, so that a test process importing this module keeps its environment as it was.
_saved = {v: os.environ.get(v) for v in _QUIET}
os.environ.update({v: os.environ.get(v) or "18,20" for v in _QUIET})
try:
    import aws_cdk  # noqa: F401
finally:
    for _var, _value in _saved.items():
        if _value is None:
            os.environ.pop(_var, None)
        else:
            os.environ[_var] = _value

from aws_cdk import App, Aspects  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from infra.catalogue import CATALOGUE, Catalogue  # noqa: E402
from infra.cdk.config import DeployConfig  # noqa: E402
from infra.cdk.stack import OblioStack  # noqa: E402
from infra.cdk.validate import validate  # noqa: E402

STACK_ID = "Oblio"
#: CDK feature flags this app relies on (a cdk.json would carry them otherwise)
FEATURE_FLAGS = {
    # server access logs are delivered through a bucket policy, not the LogDeliveryWrite ACL
    # (which the bucket-owner-enforced object ownership of the log bucket forbids)
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
    # one IAM statement per resource set instead of one per grant
    "@aws-cdk/aws-iam:minimizePolicies": True,
}


def build(context: dict[str, Any] | None = None, catalogue: Catalogue = CATALOGUE,
          outdir: str | None = None) -> tuple[App, OblioStack]:
    """The app and its one stack. Raises ValueError, naming the entry or value at fault,
    for a catalogue or a context value that could not deploy."""
    app = App(context={**FEATURE_FLAGS, **(context or {})},
              outdir=outdir or os.environ.get("CDK_OUTDIR") or "cdk.out")
    config = DeployConfig.from_context(app.node.try_get_context)
    validate(catalogue, config.prefix, config.schedules)
    stack = OblioStack(app, STACK_ID, config=config, catalogue=catalogue,
                       stack_name=config.prefix)
    Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return app, stack


def main() -> None:
    app, _stack = build()
    app.synth()


if __name__ == "__main__":
    main()
